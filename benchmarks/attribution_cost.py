"""Per-image cost of every map method relative to the plain forward (issue #17 §4).

For each model: the plain forward (`adapter.encode` without attentions, no gradients, the embedding
alone), the forward with attentions (what the forward-pass maps share), and each map method that
applies to the family (`methods_for(family, "all")`). A forward-pass method costs the forward with
attentions plus its own compute on it; a gradient method (ResNet Grad-CAM, ViT Grad-CAM, Chefer, IG)
costs its own pass(es). Each is timed `--repeats` times on the same batch, the fastest kept; CPU time
(process time, all threads) beside wall time, since the machine is shared. Models: the demo's tiny
models (config.yaml: 64 px ViTs, the ResNet at 128 px) and, with --vit-b, a random-weight CLIP
ViT-B/16 (hidden 768, 12 layers, 12 heads, patch 16, 224 px: the real architecture).

    python benchmarks/attribution_cost.py --threads 1 --batch 16 --vit-b --vit-b-batch 8

--demo-extraction instead times what the demo config adds: the extraction of the demo churches' 100
images (JPEG files, batch 16 as configured) by the demo models that enable the gradient methods
(--models) with the default map methods and with `map_methods: all`, CPU seconds of each whole `extract` call.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from encoderlens.attention.methods import ForwardPass, methods_for
from encoderlens.extract.run import ExtractionSettings
from encoderlens.models.registry import build_tiny, load_adapter

DEMO = {"tiny_dinov2": ("dinov2", {}), "tiny_dinov3": ("dinov3", {}), "tiny_mae": ("mae", {}),
        "tiny_clip": ("clip", {}), "tiny_siglip": ("siglip", {}), "tiny_resnet": ("resnet", {"image_size": 128})}
VIT_B = {"vitb16_random": ("clip", {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "patch_size": 16,
                                    "image_size": 224})}


def timed(function, repeats: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the fastest of `repeats` calls."""
    best = None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        result = (time.perf_counter() - wall, time.process_time() - cpu)
        best = result if best is None or result[1] < best[1] else best
    return best


def measure(name: str, family: str, dims: dict, folder: Path, batch: int, repeats: int, ig_steps: int) -> list[dict]:
    build_tiny(family, folder / name, seed=0, **dims)
    adapter = load_adapter(family, folder / name)
    size = adapter.info.image_size
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    settings = ExtractionSettings(batch_size=batch, ig_steps=ig_steps)
    layers = list(range(adapter.info.num_layers))
    with torch.no_grad():
        plain = timed(lambda: adapter.encode(pixels, attentions=False), repeats)
        with_attention = timed(lambda: adapter.encode(pixels, attentions=adapter.info.num_layers > 0), repeats)
        forward = ForwardPass(pixels, adapter.encode(pixels, attentions=adapter.info.num_layers > 0))
    rows = [{"model": name, "method": "forward", "wall": plain[0], "cpu": plain[1]},
            {"model": name, "method": "forward+attentions", "wall": with_attention[0], "cpu": with_attention[1]}]
    for method_class in methods_for(family, "all"):
        method = method_class(adapter, settings, layers)
        own = timed(lambda: method.compute(forward), repeats)
        shared = with_attention if method_class.needs_attentions or method_class.name == "map_probe" else (0.0, 0.0)
        label = f"{method_class.name} ({'forward' if shared[1] else 'own pass'})"
        rows.append({"model": name, "method": label, "wall": own[0] + shared[0], "cpu": own[1] + shared[1]})
    for row in rows:
        row.update(batch=batch, per_image_ms_cpu=1000 * row["cpu"] / batch, per_image_ms_wall=1000 * row["wall"] / batch,
                   x_forward_cpu=row["cpu"] / plain[1], x_forward_wall=row["wall"] / plain[0])
    return rows


def demo_extraction(folder: Path, images: int, repeats: int, models: list[str]) -> list[dict]:
    import numpy as np
    from PIL import Image

    from encoderlens.extract.run import extract

    rng = np.random.default_rng(0)
    paths = []
    for index in range(images):
        path = folder / f"{index:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(str(path))
    ids = [Path(p).stem for p in paths]
    rows = []
    for name in models:
        family, dims = DEMO[name]
        build_tiny(family, folder / name, seed=0, **dims)
        adapter = load_adapter(family, folder / name)
        for choice in (None, "all"):
            out = folder / f"{name}-{choice}"
            settings = ExtractionSettings(batch_size=16, map_methods=choice)

            def run():
                extract(ids, paths, adapter, out / "embeddings.h5", out / "attention.h5", settings, {"model": name})
                for path in out.glob("*.h5"):
                    path.unlink()

            wall, cpu = timed(run, repeats)
            rows.append({"model": name, "map_methods": choice or "default", "images": images, "wall": wall, "cpu": cpu})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ig-steps", type=int, default=32)
    parser.add_argument("--vit-b", action="store_true", help="also a random-weight ViT-B/16 (CLIP)")
    parser.add_argument("--vit-b-batch", type=int, default=8)
    parser.add_argument("--vit-b-repeats", type=int, default=1)
    parser.add_argument("--demo-extraction", action="store_true", help="time the demo config's extraction instead")
    parser.add_argument("--models", nargs="+", default=["tiny_mae", "tiny_siglip"], choices=sorted(DEMO),
                        help="--demo-extraction: the demo models timed")
    parser.add_argument("--out", type=Path, default=None, help="write the rows as JSON lines here too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.demo_extraction:
        with tempfile.TemporaryDirectory() as tmp:
            rows = demo_extraction(Path(tmp), 100, args.repeats, args.models)
        print("| model | map_methods | images | CPU s | wall s |\n|---|---|---|---|---|")
        for row in rows:
            print(f"| {row['model']} | {row['map_methods']} | {row['images']} | {row['cpu']:.2f} | {row['wall']:.2f} |")
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (family, dims) in DEMO.items():
            rows += measure(name, family, dims, Path(tmp), args.batch, args.repeats, args.ig_steps)
        if args.vit_b:
            for name, (family, dims) in VIT_B.items():
                rows += measure(name, family, dims, Path(tmp), args.vit_b_batch, args.vit_b_repeats, args.ig_steps)
    print(f"threads {args.threads}, IG steps {args.ig_steps}; per image, fastest of the repeats")
    print("| model | method | batch | CPU ms/image | × forward (CPU) | wall ms/image | × forward (wall) |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['model']} | {row['method']} | {row['batch']} | {row['per_image_ms_cpu']:.2f} | "
              f"{row['x_forward_cpu']:.1f} | {row['per_image_ms_wall']:.2f} | {row['x_forward_wall']:.1f} |")
    if args.out:
        args.out.write_text("".join(json.dumps(row) + "\n" for row in rows))


if __name__ == "__main__":
    main()
