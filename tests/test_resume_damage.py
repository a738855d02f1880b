"""Resuming after a power loss (issue #21 item 4): a shard or checkpoint that exists but is empty,
truncated or corrupt is discarded with a log line naming it and recomputed, and the run ends with the
same arrays or weights as an uninterrupted one. Before the fix the first resume failed with
`EOFError: No data left in file` (shards) or `EOFError` / `RuntimeError` from torch.load (checkpoints),
naming no file, and so did every later one."""

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from encoderlens.extract.run import ExtractionSettings, extract
from encoderlens.extract.shards import ShardStore
from encoderlens.finetune.job import run_finetune
from encoderlens.models.registry import load_adapter
from test_calibrated_tuning import _run as run_calibration
from test_extract import assert_same_files, images, model_folders, run  # noqa: F401 (fixtures)
from test_finetune import churches, settings, tiny_models  # noqa: F401 (fixtures)


def damage(path, how):
    data = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(data[:len(data) // 2])
    else:  # one byte flipped in the middle: the length is right, the content is not
        middle = len(data) // 2
        path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:])


@pytest.fixture(scope="module")
def reference(tmp_path_factory, model_folders, images):  # noqa: F811
    _, out = run(tmp_path_factory.mktemp("reference"), "dinov2", model_folders, images)
    return out


@pytest.mark.parametrize("how", ["empty", "flipped"])
def test_a_damaged_shard_is_discarded_and_recomputed(tmp_path, model_folders, images, reference,  # noqa: F811
                                                     how, capsys):
    ids, paths = images
    settings = ExtractionSettings(batch_size=3)  # 4 batches for 10 images
    adapter = load_adapter("dinov2", model_folders["dinov2"])
    encode, calls = adapter.encode, {"n": 0}

    def crash_on_fourth_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt("power loss")
        return encode(*args, **kwargs)

    adapter.encode = crash_on_fourth_batch
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        extract(ids, paths, adapter, out / "embeddings.h5", out / "attention.h5", settings, {"model": "tiny_dinov2"})
    shards = out / ".extract_shards"
    damage(shards / "batch_0000001.npz", how)  # batches 0 and 2 are fine

    calls["n"] = 100
    capsys.readouterr()
    extract(ids, paths, adapter, out / "embeddings.h5", out / "attention.h5", settings, {"model": "tiny_dinov2"})
    logged = capsys.readouterr().err
    assert f"{shards / 'batch_0000001.npz'}: unreadable shard" in logged
    assert "discarded with 1 later shard(s), recomputing from batch 1" in logged
    assert calls["n"] - 100 == 3  # batches 1, 2 and 3; batch 0 was kept
    assert_same_files(reference, out)


def test_reading_a_damaged_shard_names_it(tmp_path):
    store = ShardStore(tmp_path / "shards", {"run": 1})
    assert store.open() == 0
    store.write(0, {"cls": np.ones((2, 4), dtype=np.float32)})
    np.testing.assert_array_equal(store.read(0)["cls"], np.ones((2, 4)))
    damage(store.path(0), "truncated")
    with pytest.raises(ValueError, match=r"batch_0000000\.npz: unreadable shard"):
        store.read(0)
    (tmp_path / "shards" / "fingerprint.json").write_text("")  # an empty stamp: start over
    assert store.open() == 0 and not store.path(0).exists()


@pytest.mark.parametrize("how", ["empty", "flipped"])
def test_a_damaged_fine_tuning_checkpoint_restarts_to_the_same_weights(churches, tiny_models, tmp_path,  # noqa: F811
                                                                       how, capsys):
    job = settings(epochs=2)
    manifest, model = churches / "manifest.parquet", tiny_models / "dinov2"
    run_finetune(manifest, model, "dinov2", "linear", job, tmp_path / "reference" / "linear")

    def killed_after_first_epoch(epoch):
        if epoch == 1:
            raise KeyboardInterrupt("power loss")

    out = tmp_path / "damaged" / "linear"
    with pytest.raises(KeyboardInterrupt):
        run_finetune(manifest, model, "dinov2", "linear", job, out, on_epoch_end=killed_after_first_epoch)
    checkpoint = out.with_name("linear.work") / "checkpoint.pt"
    damage(checkpoint, how)
    capsys.readouterr()
    metrics = run_finetune(manifest, model, "dinov2", "linear", job, out)
    assert f"{checkpoint}: checkpoint" in capsys.readouterr().err
    assert metrics["epochs_run"] == 2
    a, b = load_file(tmp_path / "reference" / "linear" / "head.safetensors"), load_file(out / "head.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    pd.testing.assert_frame_equal(pd.read_csv(out / "history.csv"),
                                  pd.read_csv(tmp_path / "reference" / "linear" / "history.csv"))


@pytest.mark.parametrize("how", ["truncated", "flipped"])
def test_a_damaged_calibration_checkpoint_restarts_to_the_same_weights(tmp_path, how, capsys):
    whole, history = run_calibration(tmp_path / "whole")
    run_calibration(tmp_path / "killed", stop_after_epoch=3)
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    damage(checkpoint, how)
    capsys.readouterr()
    resumed, resumed_history = run_calibration(tmp_path / "killed")
    assert f"{checkpoint}: checkpoint" in capsys.readouterr().err
    for a, b in zip(whole.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert resumed_history["loss"].tolist() == history["loss"].tolist()
