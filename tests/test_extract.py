"""The extraction job and its HDF5 files: contract, atomic writes and resume after a crash."""

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from encoderlens.extract.h5 import atomic_h5, read_ids
from encoderlens.extract.run import ExtractionSettings, extract, resolve_layers
from encoderlens.models.registry import build_tiny, load_adapter

N_IMAGES = 10


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(N_IMAGES):
        pixels = rng.integers(0, 256, size=(40 + index, 70, 3), dtype=np.uint8)  # non-square
        path = folder / f"img{index}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return [f"id{index}" for index in range(N_IMAGES)], paths


@pytest.fixture(scope="module")
def model_folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    folders = {}
    for family in ("dinov2", "siglip", "resnet"):
        build_tiny(family, root / family, seed=0)
        folders[family] = root / family
    return folders


def run(tmp_path, family, model_folders, images, settings=None, name="out"):
    ids, paths = images
    adapter = load_adapter(family, model_folders[family])
    out = tmp_path / name
    extract(ids, paths, adapter, out / "embeddings.h5", out / "attention.h5",
            settings or ExtractionSettings(batch_size=3), {"model": f"tiny_{family}"})
    return adapter, out


def read_all(path):
    with h5py.File(path, "r") as handle:
        arrays = {}
        handle.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                          if isinstance(obj, h5py.Dataset) else None)
        return arrays, dict(handle.attrs)


def assert_same_files(reference, out):
    """Both HDF5 files hold the same datasets with bit-identical arrays and the same attributes."""
    for name in ("embeddings.h5", "attention.h5"):
        want, want_attributes = read_all(reference / name)
        got, got_attributes = read_all(out / name)
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        assert got_attributes.keys() == want_attributes.keys()


def test_dinov2_files_follow_the_contract(tmp_path, model_folders, images):
    settings = ExtractionSettings(batch_size=3, attention_layers=[0, -1], embedding_layers=[-1])
    adapter, out = run(tmp_path, "dinov2", model_folders, images, settings)
    info = adapter.info
    embeddings, attributes = read_all(out / "embeddings.h5")
    attention, _ = read_all(out / "attention.h5")
    with h5py.File(out / "attention.h5") as handle:
        assert read_ids(handle) == images[0]
        assert handle["cls"].chunks == (1, 2, info.num_heads, info.grid_h, info.grid_w)
        assert handle["cls"].compression == "gzip"
    for key in ("family", "image_size", "patch_size", "grid_h", "grid_w", "n_prefix_tokens",
                "model", "encoderlens_version"):
        assert key in attributes
    assert attributes["n_prefix_tokens"] == info.n_prefix_tokens > 1  # CLS + registers

    # the stored arrays are what the model itself computes for the same preprocessed images
    pixels = torch.stack([adapter.preprocess(Image.open(p)) for p in images[1]])
    direct = adapter.encode(pixels, attentions=True, hidden_states=True)
    np.testing.assert_allclose(embeddings["cls"], direct.cls.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(embeddings["mean"], direct.mean.numpy(), rtol=1e-4, atol=1e-5)
    last = info.num_layers - 1
    np.testing.assert_array_equal(attention["layers"], [0, last])
    assert attention["cls"].dtype == np.float16
    assert attention["cls"].shape == (N_IMAGES, 2, info.num_heads, info.grid_h, info.grid_w)
    want = direct.attentions[last][:, :, 0, info.n_prefix_tokens:].numpy()
    np.testing.assert_allclose(attention["cls"][:, 1].reshape(want.shape), want, atol=2e-3)
    assert attention["rollout"].shape == (N_IMAGES, info.grid_h, info.grid_w)
    assert f"layers/{last}" in embeddings
    states = direct.hidden_states[-1].numpy()
    np.testing.assert_allclose(embeddings[f"layers/{last}"], states[:, 0], rtol=1e-4, atol=1e-5)
    assert not (out / ".extract_shards").exists()


def test_siglip_stores_mean_received_and_map_probe(tmp_path, model_folders, images):
    adapter, out = run(tmp_path, "siglip", model_folders, images)
    attention, attributes = read_all(out / "attention.h5")
    info = adapter.info
    assert "cls" not in attention and "rollout" not in attention
    assert attention["mean"].shape == (N_IMAGES, info.num_layers, info.grid_h, info.grid_w)
    assert attention["map_probe"].shape == (N_IMAGES, info.num_heads, info.grid_h, info.grid_w)
    np.testing.assert_allclose(attention["map_probe"].astype(np.float32).sum(axis=(-2, -1)), 1.0,
                               atol=1e-2)
    assert attributes["n_prefix_tokens"] == 0


def test_resnet_has_embeddings_and_gradcam_maps(tmp_path, model_folders, images):
    from encoderlens.attention.gradcam import gradcam_maps

    adapter, out = run(tmp_path, "resnet", model_folders, images)
    embeddings, _ = read_all(out / "embeddings.h5")
    attention, _ = read_all(out / "attention.h5")
    assert embeddings["cls"].shape[0] == N_IMAGES
    assert set(attention) == {"ids", "layers", "gradcam"}
    info = adapter.info
    assert attention["gradcam"].shape == (N_IMAGES, info.grid_h, info.grid_w)
    pixels = torch.stack([adapter.preprocess(Image.open(p)) for p in images[1][:3]])
    np.testing.assert_allclose(attention["gradcam"][:3], gradcam_maps(adapter, pixels), atol=1e-5)


def test_a_crashed_run_resumes_and_equals_an_uninterrupted_one(tmp_path, model_folders, images):
    _, reference = run(tmp_path, "dinov2", model_folders, images, name="reference")
    ids, paths = images
    settings = ExtractionSettings(batch_size=3)
    adapter = load_adapter("dinov2", model_folders["dinov2"])
    real_encode = adapter.encode
    calls = {"n": 0}

    def crash_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("killed")
        return real_encode(*args, **kwargs)

    adapter.encode = crash_on_third_batch
    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        extract(ids, paths, adapter, out / "embeddings.h5", out / "attention.h5", settings,
                {"model": "tiny_dinov2"})
    assert not (out / "embeddings.h5").exists() and not (out / "attention.h5").exists()
    assert sorted(p.name for p in (out / ".extract_shards").glob("batch_*")) == [
        "batch_0000000.npz", "batch_0000001.npz"]

    calls["n"] = 100  # no more crashes; count the batches the resumed run computes
    extract(ids, paths, adapter, out / "embeddings.h5", out / "attention.h5", settings,
            {"model": "tiny_dinov2"})
    assert calls["n"] - 100 == 2  # 4 batches of 3 for 10 images, 2 were already done
    assert_same_files(reference, out)


def test_shards_from_other_settings_are_discarded(tmp_path, model_folders, images):
    ids, paths = images
    adapter = load_adapter("dinov2", model_folders["dinov2"])
    out = tmp_path / "x"
    shards = out / ".extract_shards"
    shards.mkdir(parents=True)
    (shards / "fingerprint.json").write_text('{"other": "run"}')
    np.savez(shards / "batch_0000000.npz", cls=np.zeros((3, 1)))
    extract(ids, paths, adapter, out / "embeddings.h5", out / "attention.h5",
            ExtractionSettings(batch_size=3), {"model": "m"})
    embeddings, _ = read_all(out / "embeddings.h5")
    assert embeddings["cls"].shape[1] == adapter.info.hidden_size  # not the stale (3, 1) shard


def test_atomic_h5_leaves_no_file_when_writing_fails(tmp_path):
    target = tmp_path / "a.h5"
    with pytest.raises(RuntimeError):
        with atomic_h5(target) as handle:
            handle["x"] = np.arange(3)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_extract_rejects_duplicate_ids(tmp_path, model_folders, images):
    adapter = load_adapter("dinov2", model_folders["dinov2"])
    with pytest.raises(ValueError, match="unique"):
        extract(["a", "a"], images[1][:2], adapter, tmp_path / "e.h5", tmp_path / "a.h5",
                ExtractionSettings(), {})


def test_resolve_layers():
    assert resolve_layers("all", 3) == [0, 1, 2]
    assert resolve_layers([-1, 0, 2], 3) == [0, 2]
    with pytest.raises(ValueError, match="has 3 layers"):
        resolve_layers([3], 3)


KILLABLE_EXTRACTION = """
import json, sys, time
from encoderlens.extract.run import ExtractionSettings, extract
from encoderlens.models.registry import load_adapter

job = json.load(open(sys.argv[1]))
adapter = load_adapter("dinov2", job["model"])
encode = adapter.encode

def slow_encode(*args, **kwargs):  # leaves time to kill the process between batches
    time.sleep(0.3)
    return encode(*args, **kwargs)

adapter.encode = slow_encode
extract(job["ids"], job["paths"], adapter, job["out"] + "/embeddings.h5", job["out"] + "/attention.h5",
        ExtractionSettings(batch_size=2), {"model": "tiny_dinov2"})
"""


def test_a_killed_process_resumes_to_the_same_files(tmp_path, model_folders, images):
    import json
    import signal
    import subprocess
    import sys
    import time

    ids, paths = images
    settings = ExtractionSettings(batch_size=2)
    adapter = load_adapter("dinov2", model_folders["dinov2"])
    reference = tmp_path / "reference"
    extract(ids, paths, adapter, reference / "embeddings.h5", reference / "attention.h5", settings,
            {"model": "tiny_dinov2"})

    out = tmp_path / "killed"
    job = tmp_path / "job.json"
    job.write_text(json.dumps({"model": str(model_folders["dinov2"]), "ids": ids, "paths": paths,
                               "out": str(out)}))
    process = subprocess.Popen([sys.executable, "-c", KILLABLE_EXTRACTION, str(job)])
    deadline = time.monotonic() + 120
    while len(list((out / ".extract_shards").glob("batch_*.npz"))) < 2:
        assert process.poll() is None, "the extraction ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "embeddings.h5").exists() and not (out / "attention.h5").exists()
    finished = sorted((out / ".extract_shards").glob("batch_*.npz"))
    assert 2 <= len(finished) < 5

    extract(ids, paths, adapter, out / "embeddings.h5", out / "attention.h5", settings,
            {"model": "tiny_dinov2"})
    assert_same_files(reference, out)
