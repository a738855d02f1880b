"""The extraction input path on its own, with a null model (issue 16 §1): decode, resize, batch, write.

The loader is extraction's own (`extract.loading`): Pillow decode, RGB conversion and square bicubic
resize to a ViT-B/16's 224 px with its normalisation (`decode: cpu`), or the bytes read by the workers
and `torchvision.io.decode_jpeg` + the tensor resize in the main process (`decode: gpu`'s code, here on
the CPU: the nvjpeg rate needs a GPU). The null model turns each batch into a (B, 768) float32 array,
written as extraction writes its shards (`ShardStore.write`). Images are synthetic JPEGs (quality 90)
with photograph-like smoothness at the given sizes.

Per core: `--workers 0` runs everything in the main process, on one core; more workers add one core
each (the main process then only batches and writes).

    python benchmarks/input_path.py                            # 640x480 and 1024x768, 0 and 1 workers
    python benchmarks/input_path.py --sizes 1024x768 --workers 0 7 --device cuda --decode gpu
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from encoderlens.extract.loading import DevicePreprocess, EncodedFiles, ImageFiles, collate_encoded
from encoderlens.extract.shards import ShardStore
from encoderlens.models.base import FamilyAdapter, ModelInfo
from encoderlens.models.hf_vit import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


def make_images(folder: Path, count: int, width: int, height: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        coarse = rng.integers(0, 256, size=(height // 16, width // 16, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
        image = np.clip(image + rng.normal(0, 6, size=image.shape), 0, 255).astype(np.uint8)  # sensor noise
        path = folder / f"{index:05d}.jpg"
        Image.fromarray(image).save(path, quality=90)
        paths.append(str(path))
    return paths


class NullAdapter(FamilyAdapter):
    """The preprocessing of a CLIP ViT-B/16 at 224 px, no model."""

    def __init__(self):
        info = ModelInfo(family="clip", image_size=224, patch_size=16, grid_h=14, grid_w=14, n_prefix_tokens=1,
                         num_layers=12, num_heads=12, hidden_size=768, has_cls=True)
        self.info, self.model = info, None
        self.mean = torch.tensor(OPENAI_CLIP_MEAN).view(3, 1, 1)
        self.std = torch.tensor(OPENAI_CLIP_STD).view(3, 1, 1)


def rate(paths: list[str], workers: int, decode: str, device: str, batch: int, folder: Path) -> float:
    adapter = NullAdapter()
    if decode == "gpu":
        files = EncodedFiles(paths, adapter.preprocess)
        to_device = DevicePreprocess(files, 224, adapter.mean, adapter.std, torch.device(device))
        loader = DataLoader(files, batch_size=batch, num_workers=workers, collate_fn=collate_encoded)
    else:
        loader = DataLoader(ImageFiles(paths, adapter.preprocess), batch_size=batch, num_workers=workers)
        to_device = lambda pixels: pixels.to(device)  # noqa: E731
    shards = ShardStore(folder / f"shards_{workers}_{decode}", {"bench": True})
    shards.open()
    start = time.perf_counter()
    for index, items in enumerate(loader):
        pixels = to_device(items)
        null = torch.zeros(len(pixels), 768) + pixels.mean()  # the null model: reads every batch
        shards.write(index, {"cls": null.cpu().numpy()})
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    shards.remove()
    return len(paths) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1024x768"])
    parser.add_argument("--images", type=int, default=192)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--decode", nargs="+", default=["cpu", "gpu"], help="gpu: its code on --device")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for size in args.sizes:
            width, height = (int(x) for x in size.split("x"))
            images = folder / size
            images.mkdir()
            paths = make_images(images, args.images, width, height)
            megabytes = sum(Path(p).stat().st_size for p in paths) / len(paths) / 1e6
            for decode in args.decode:
                for workers in args.workers:
                    rate(paths[:args.batch], workers, decode, args.device, args.batch, folder)  # warm-up
                    images_per_s = rate(paths, workers, decode, args.device, args.batch, folder)
                    cores = max(1, workers)
                    print(json.dumps({"size": size, "jpeg_mb": round(megabytes, 3), "decode": decode,
                                      "device": args.device, "workers": workers,
                                      "images_per_s": round(images_per_s, 1),
                                      "per_core": round(images_per_s / cores, 1),
                                      "ms_per_image_core": round(1000 * cores / images_per_s, 1)}), flush=True)


if __name__ == "__main__":
    main()
