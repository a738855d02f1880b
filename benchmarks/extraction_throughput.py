"""Extraction throughput against the bare model forward on the same device, batch and model.

The bare forward runs the adapter's encode (eager attention, output_attentions=True: the same model
work extraction needs) on tensors already in memory. Extraction runs the whole job from JPEG files:
decoding, square resize, the forward, attention maps and rollout, shards and the HDF5 files. Their ratio
is the share of time the pipeline spends on the model; the target is at least 0.85.

    python benchmarks/extraction_throughput.py                      # ViT-S/16-sized DINOv2, CPU
    python benchmarks/extraction_throughput.py --device cuda --precision bf16 --hidden 768 --heads 12
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from PIL import Image

from encoderlens.extract.run import ExtractionSettings, _autocast, extract, resolve_device
from encoderlens.models.registry import build_tiny, load_adapter


def make_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        pixels = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(str(path))
    return paths


def bare_forward(adapter, pixels: torch.Tensor, batch_size: int, precision: str) -> float:
    """Images per second of the model alone on preprocessed pixels already on the device."""
    start = time.perf_counter()
    with torch.no_grad(), _autocast(adapter.device, precision):
        for first in range(0, len(pixels), batch_size):
            output = adapter.encode(pixels[first:first + batch_size], attentions=True)
    if adapter.device.type == "cuda":
        torch.cuda.synchronize()
    return len(pixels) / (time.perf_counter() - start)


def full_extraction(adapter, paths: list[str], folder: Path, settings: ExtractionSettings) -> float:
    """Images per second of the whole job, from JPEG files to both HDF5 files."""
    start = time.perf_counter()
    extract([Path(p).stem for p in paths], paths, adapter, folder / "embeddings.h5",
            folder / "attention.h5", settings, {"model": "bench"})
    return len(paths) / (time.perf_counter() - start)


def bytes_per_image(path: Path) -> dict:
    with h5py.File(path) as handle:
        n = handle["ids"].shape[0]
        raw = {name: handle[name].dtype.itemsize * int(np.prod(handle[name].shape[1:]))
               for name in ("cls", "rollout", "mean", "map_probe") if name in handle}
    return {"images": n, "uncompressed_bytes_per_image": raw,
            "file_bytes_per_image": round(path.stat().st_size / n)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", default="dinov2")
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating runs of each; the medians are compared (machine noise)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_tiny(args.family, tmp / "model", seed=0, hidden_size=args.hidden, num_layers=args.layers,
                   num_heads=args.heads, image_size=args.image_size, patch_size=args.patch)
        (tmp / "images").mkdir()
        paths = make_images(tmp / "images", args.images)
        adapter = load_adapter(args.family, tmp / "model").to(resolve_device(args.device))
        pixels = torch.stack([adapter.preprocess(Image.open(p)) for p in paths]).to(adapter.device)
        bare_forward(adapter, pixels[: args.batch], args.batch, args.precision)  # warm-up
        settings = ExtractionSettings(batch_size=args.batch, num_workers=args.workers,
                                      device=args.device, precision=args.precision)
        bare_runs, pipeline_runs = [], []
        for repeat in range(args.repeats):
            bare_runs.append(bare_forward(adapter, pixels, args.batch, args.precision))
            pipeline_runs.append(full_extraction(adapter, paths, tmp / f"out{repeat}", settings))
        bare, pipeline = statistics.median(bare_runs), statistics.median(pipeline_runs)
        info = adapter.info
        bound = info.num_layers * info.num_heads * info.grid_h * info.grid_w * 2
        result = {
            "device": str(adapter.device), "precision": args.precision, "threads": args.threads,
            "family": args.family, "hidden": args.hidden, "layers": args.layers, "heads": args.heads,
            "image_size": args.image_size, "patch": args.patch, "batch": args.batch,
            "workers": args.workers, "images": args.images,
            "bare_forward_images_per_s": round(bare, 2),
            "extraction_images_per_s": round(pipeline, 2),
            "ratio": round(pipeline / bare, 3),
            "bare_runs": [round(x, 2) for x in bare_runs],
            "extraction_runs": [round(x, 2) for x in pipeline_runs],
            "attention_h5": bytes_per_image(tmp / "out0/attention.h5"),
            "L_H_P_2_bytes": bound,
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
