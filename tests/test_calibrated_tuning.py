"""The distance-calibration training loop on a toy encoder: it fits the curve, and resumes exactly."""

import numpy as np
import pandas as pd
import pytest
import torch

from encoderlens.geo.calibrated_tuning import (CalibrationSettings, _batches, calibration_loss,
                                               pair_targets, train)
from encoderlens.geo.calibration import fit_target_curve
from encoderlens.geo.distance import haversine_km


def test_loss_is_the_mean_squared_error_over_distinct_pairs():
    embeddings = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    targets = torch.full((3, 3), 0.5)
    # cosines: (0,1) = 0, (0,2) = (1,2) = 1/sqrt(2)
    expected = ((0 - 0.5) ** 2 + 2 * (2 ** -0.5 - 0.5) ** 2) / 3
    assert float(calibration_loss(embeddings, targets)) == pytest.approx(expected, rel=1e-6)


def test_pair_targets_follow_the_curve_at_haversine_distances():
    bins = pd.DataFrame({"lo_km": [0, 100, 1000], "hi_km": [100, 1000, 10000], "count": [1, 1, 1],
                         "cosine_mean": [0.9, 0.5, 0.1]})
    curve = fit_target_curve(bins)
    latlon = np.array([[48.8566, 2.3522], [51.5074, -0.1278], [40.7128, -74.0060]])
    targets = pair_targets(latlon, curve)
    d = haversine_km(latlon[0, 0], latlon[0, 1], latlon[2, 0], latlon[2, 1])
    assert float(targets[0, 2]) == pytest.approx(float(curve(d)), rel=1e-6)
    assert float(targets[0, 0]) == pytest.approx(0.9)
    assert torch.equal(targets, targets.T)


def test_batches_cover_every_row_once_and_never_leave_a_lone_image():
    batches = _batches(9, 4, seed=3)
    assert sorted(np.concatenate(batches).tolist()) == list(range(9))
    assert min(len(b) for b in batches) >= 2
    assert [b.tolist() for b in _batches(9, 4, seed=3)] == [b.tolist() for b in batches]


def _toy_problem(seed=0):
    """"Images" are a location's unit vector on the sphere plus distractor features; a linear encoder
    with dropout has to learn to embed them so that cosine follows the curve."""
    rng = np.random.default_rng(seed)
    latlon = np.column_stack([rng.uniform(-60, 70, 48), rng.uniform(-180, 180, 48)])
    lat, lon = np.radians(latlon[:, 0]), np.radians(latlon[:, 1])
    xyz = np.column_stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    pixels = torch.from_numpy(np.column_stack([xyz, rng.normal(size=(48, 9))])).float()
    bins = pd.DataFrame({"lo_km": [0, 1000, 5000], "hi_km": [1000, 5000, 20100], "count": [1, 1, 1],
                         "cosine_mean": [0.9, 0.4, -0.2]})
    return latlon, pixels, fit_target_curve(bins)


def _run(workdir, stop_after_epoch=None, epochs=8):
    latlon, pixels, curve = _toy_problem()
    torch.manual_seed(0)
    encoder = torch.nn.Sequential(torch.nn.Dropout(0.1), torch.nn.Linear(12, 8))
    settings = CalibrationSettings(epochs=epochs, batch_size=16, lr=5e-2, seed=0)
    history = train(encoder, list(encoder.parameters()), lambda rows: pixels[rows], latlon, curve, settings,
                    workdir, stop_after_epoch=stop_after_epoch)
    return encoder, history


def test_training_lowers_the_loss(tmp_path):
    _, history = _run(tmp_path / "run")
    assert list(history["epoch"]) == list(range(1, 9))
    assert history["loss"].iloc[-1] < 0.6 * history["loss"].iloc[0]


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    whole, history = _run(tmp_path / "whole")
    _run(tmp_path / "killed", stop_after_epoch=3)
    resumed, resumed_history = _run(tmp_path / "killed")
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert resumed_history["loss"].tolist() == history["loss"].tolist()
