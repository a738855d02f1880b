"""Extraction at scale (issue 16 §1): shards in the stored dtype, batch_size auto, the input path
(loader workers, GPU JPEG decoding with its CPU fallback)."""

import io

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from encoderlens.extract import batch_size as auto
from encoderlens.extract.loading import DevicePreprocess, EncodedFiles, ImageFiles, loader_workers
from encoderlens.extract.run import ExtractionSettings, extract
from encoderlens.models.base import ModelInfo
from encoderlens.models.registry import build_tiny, load_adapter

N_IMAGES = 7


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    """Smooth photographs-like JPEGs of different sizes, a greyscale JPEG, a CMYK JPEG and a PNG."""
    folder = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    paths = []
    for index in range(N_IMAGES):
        small = rng.integers(0, 256, size=(6 + index, 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((90 + 7 * index, 70), Image.BICUBIC)
        path = folder / f"img{index}.jpg"
        if index == 4:
            image = image.convert("L")
        if index == 5:
            image = image.convert("CMYK")
        if index == 6:
            path = path.with_suffix(".png")
        image.save(path, **({} if index == 6 else {"quality": 92}))
        paths.append(str(path))
    return [f"id{index}" for index in range(N_IMAGES)], paths


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scale_models") / "clip"
    build_tiny("clip", folder, seed=0)
    return folder


def run(tmp_path, clip_folder, jpegs, name, settings, adapter=None):
    ids, paths = jpegs
    adapter = adapter or load_adapter("clip", clip_folder)
    out = tmp_path / name
    log = io.StringIO()
    extract(ids, paths, adapter, out / "embeddings.h5", out / "attention.h5", settings, {"model": "m"}, log=log)
    return out, log.getvalue()


def read_all(path):
    with h5py.File(path, "r") as handle:
        arrays = {}
        handle.visititems(lambda name, obj: arrays.__setitem__(name, obj[()])
                          if isinstance(obj, h5py.Dataset) else None)
        return arrays, dict(handle.attrs)


def test_shards_hold_the_stored_dtypes_and_float32_shards_still_resume(tmp_path, clip_folder, jpegs, monkeypatch):
    reference, _ = run(tmp_path, clip_folder, jpegs, "reference", ExtractionSettings(batch_size=3))
    import encoderlens.extract.run as run_module
    monkeypatch.setattr(run_module, "_gather", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, clip_folder, jpegs, "killed", ExtractionSettings(batch_size=3))
    monkeypatch.undo()
    shards = sorted((tmp_path / "killed" / ".extract_shards").glob("batch_*.npz"))
    assert len(shards) == 3
    with np.load(shards[0]) as shard:
        dtypes = {key: shard[key].dtype for key in shard.files}
    assert dtypes["att_cls"] == np.float16 and dtypes["att_rollout"] == np.float32
    assert dtypes["cls"] == np.float32
    # a shard written before this change (every array float32) resumes to the same files
    with np.load(shards[1]) as shard:
        arrays = {key: shard[key].astype(np.float32) for key in shard.files}
    np.savez(shards[1], **arrays)
    out, _ = run(tmp_path, clip_folder, jpegs, "killed", ExtractionSettings(batch_size=3))
    for name in ("embeddings.h5", "attention.h5"):
        want, _ = read_all(reference / name)
        got, _ = read_all(out / name)
        assert want.keys() == got.keys()
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_batch_size_auto_on_cpu_follows_the_rule_is_recorded_and_reused_on_resume(
        tmp_path, clip_folder, jpegs, monkeypatch):
    monkeypatch.setattr(auto, "cpu_batch_size", lambda info, available, limit: 2)
    out, log = run(tmp_path, clip_folder, jpegs, "auto", ExtractionSettings(batch_size="auto"))
    assert "batch_size auto: 2" in log
    for name in ("embeddings.h5", "attention.h5"):
        _, attributes = read_all(out / name)
        assert attributes["batch_size"] == 2
    fixed, _ = run(tmp_path, clip_folder, jpegs, "fixed", ExtractionSettings(batch_size=2))
    np.testing.assert_array_equal(read_all(out / "attention.h5")[0]["cls"],
                                  read_all(fixed / "attention.h5")[0]["cls"])
    assert read_all(fixed / "embeddings.h5")[1]["batch_size"] == 2

    # a run killed after its first shard resumes with the batch size it started with, whatever the
    # probe would say now
    adapter = load_adapter("clip", clip_folder)
    real = adapter.encode
    calls = []
    adapter.encode = lambda *a, **k: (calls.append(1), real(*a, **k) if len(calls) < 2 else
                                      (_ for _ in ()).throw(KeyboardInterrupt()))[1]
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, clip_folder, jpegs, "resumed", ExtractionSettings(batch_size="auto"), adapter)
    monkeypatch.setattr(auto, "cpu_batch_size", lambda info, available, limit: 4)
    adapter.encode = real
    out, log = run(tmp_path, clip_folder, jpegs, "resumed", ExtractionSettings(batch_size="auto"), adapter)
    assert "batch_size auto: 2, as the finished shards" in log
    assert read_all(out / "attention.h5")[1]["batch_size"] == 2


def test_cpu_batch_size_rule():
    info = ModelInfo(family="clip", image_size=336, patch_size=14, grid_h=24, grid_w=24, n_prefix_tokens=1,
                     num_layers=24, num_heads=16, hidden_size=1024, has_cls=True)
    per_image = 4 * (3 * 16 * 577 ** 2 + 16 * 577 * 1024)  # ViT-L/14-336: about 102 MiB
    assert auto.image_bytes(info) == per_image
    assert auto.cpu_batch_size(info, 16 * 2**30, 10_000) == 32  # a quarter of 16 GiB: 40 images -> 32
    assert auto.cpu_batch_size(info, 2**30, 10_000) == 2
    assert auto.cpu_batch_size(info, 10**6, 10_000) == 1  # never 0
    assert auto.cpu_batch_size(info, 2**40, 10_000) == auto.CPU_MAX_BATCH
    assert auto.cpu_batch_size(info, 2**40, 5) == 4


@pytest.mark.parametrize("capacity, limit, want", [(37, 1024, 36), (64, 1024, 64), (1000, 100, 100),
                                                   (1, 1024, 1), (5, 3, 3)])
def test_largest_fitting_doubles_then_bisects(capacity, limit, want):
    tried = []

    def fits(batch):
        tried.append(batch)
        return batch <= capacity

    assert auto.largest_fitting(fits, limit) == want
    assert max(tried) <= max(limit, 2 * capacity)


def test_largest_fitting_refuses_when_nothing_fits():
    with pytest.raises(RuntimeError, match="not even one image"):
        auto.largest_fitting(lambda batch: False, 64)


def test_loader_workers_follow_the_job_cores():
    assert loader_workers("auto", 8, torch.device("cuda")) == 7
    assert loader_workers("auto", 1, torch.device("cuda")) == 0
    assert loader_workers("auto", 8, torch.device("cpu")) == 0
    assert loader_workers(3, 8, torch.device("cpu")) == 3


def test_gpu_decode_without_cuda_falls_back_to_pillow_with_a_log_line(tmp_path, clip_folder, jpegs):
    cpu, _ = run(tmp_path, clip_folder, jpegs, "cpu", ExtractionSettings(batch_size=3, device="cpu"))
    gpu, log = run(tmp_path, clip_folder, jpegs, "gpu",
                   ExtractionSettings(batch_size=3, device="cpu", decode="gpu"))
    assert "decode: gpu needs a CUDA device, the model runs on cpu: decoding on the CPU (Pillow)" in log
    for name in ("embeddings.h5", "attention.h5"):
        want, _ = read_all(cpu / name)
        got, _ = read_all(gpu / name)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_the_device_decode_path_matches_pillow_and_routes_other_files_to_it(clip_folder, jpegs):
    """The GPU path's code (decode_jpeg, resize on the tensor) run on the CPU against the Pillow path."""
    _, paths = jpegs
    adapter = load_adapter("clip", clip_folder)
    files = EncodedFiles(paths, adapter.preprocess)
    kinds = [files[index][0] for index in range(len(paths))]
    assert kinds == ["jpeg"] * 5 + ["pixels", "pixels"]  # the CMYK JPEG and the PNG go to Pillow
    to_device = DevicePreprocess(files, adapter.info.image_size, adapter.mean, adapter.std, torch.device("cpu"))
    pixels = to_device([files[index] for index in range(len(paths))])
    want = torch.stack([ImageFiles(paths, adapter.preprocess)[index] for index in range(len(paths))])
    std = adapter.std.view(1, 3, 1, 1)
    levels = ((pixels - want) * std * 255).abs()  # in 8-bit levels
    assert levels[5:].max() < 1e-4  # Pillow's own result
    assert levels[:5].mean() < 1.0 and levels[:5].max() <= 12  # decoder and resampling rounding
    assert not torch.allclose(pixels[:5], torch.zeros_like(pixels[:5]))
