"""Deletion/insertion curves: encoderlens.faithfulness against Quantus' RegionPerturbation, side by side in
one run on the same model, images, maps and steps.

Workload: a tiny CLIP (the demo's, random weights, `--image-size` px, patch 8) on `--images` random
images with one random map each on the patch grid. The explained scalar is the same for both: the
projection of the image embedding onto the image's own unperturbed embedding (`attention.targets`).
Steps: one cell per step over every cell (Quantus' region = one patch of `patch_size` pixels, its
`regions_evaluation` = all of them), perturbation: fill with 0 (the normalisation mean).

- quantus: three RegionPerturbation calls, orders morf, lerf and random (deletion curves only: the
  metric has no insertion), each on all images at once (its `batch_size` = the number of images, so it
  batches the images of one step);
- ours: one `deletion_insertion` call per order, deletion AND insertion curves of the three orders
  (the inputs two orders share evaluated once), batch 64, and the same with the default 16 steps.
Curves are checked equal (deletion, map order) before timing counts. Wall and CPU seconds, medians of
`--repeats`, torch on `--threads` threads.

    python benchmarks/faithfulness_speed.py
    python benchmarks/faithfulness_speed.py --image-size 128 --images 16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import numpy as np
import torch


def timed(function, repeats):
    walls, cpus, result = [], [], None
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import quantus

    from encoderlens.faithfulness.curves import deletion_insertion, rank_cells, target_scorer
    from encoderlens.models.registry import build_tiny, load_adapter

    folder = tempfile.mkdtemp(prefix="faithfulness_speed_")
    build_tiny("clip", folder, seed=0, image_size=args.image_size)
    adapter = load_adapter("clip", folder)
    info = adapter.info
    grid, cells = (info.grid_h, info.grid_w), info.grid_h * info.grid_w
    size = info.image_size
    pixels = torch.randn(args.images, 3, size, size, generator=torch.Generator().manual_seed(1))
    maps = np.random.default_rng(0).random((args.images, *grid))
    encode = lambda batch: adapter.encode(batch, attentions=False).cls  # noqa: E731
    with torch.no_grad():
        reference = encode(pixels)
    direction = reference / reference.norm(dim=-1, keepdim=True)

    class Projection(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = adapter.model

        def forward(self, batch):
            return (encode(batch) * direction[: len(batch)]).sum(-1, keepdim=True)

    model = Projection().eval()
    pixel_maps = np.kron(maps, np.ones((info.patch_size, info.patch_size)))[:, None].astype(np.float32)

    def run_quantus():
        curves = {}
        for order in ("morf", "lerf", "random"):
            metric = quantus.RegionPerturbation(patch_size=info.patch_size, order=order, regions_evaluation=cells,
                                                perturb_baseline=0.0, normalise=False, abs=False,
                                                disable_warnings=True)
            curves[order] = np.array(metric(model=model, x_batch=pixels.numpy(), y_batch=np.zeros(args.images, int),
                                            a_batch=pixel_maps, softmax=False, device="cpu",
                                            batch_size=args.images))
        return curves

    scorer = target_scorer(encode, reference, relative=False)
    seeds = list(range(args.images))

    def run_ours(steps):
        rankings = np.concatenate([rank_cells(maps, "map"), rank_cells(maps, "inverse"),
                                   rank_cells(maps, "random", seeds)])
        images = np.tile(np.arange(args.images), 3)
        return deletion_insertion(pixels, rankings, images, scorer, grid, steps=steps, batch_size=64)

    theirs = run_quantus()
    ours = run_ours(cells)
    deletion_map = ours.deletion[:args.images]
    error = np.abs(deletion_map[:, 1:] - (deletion_map[:, :1] - theirs["morf"])).max()
    print(f"max |ours - quantus| on the map-order deletion curves: {error:.2e}", file=sys.stderr)
    assert error < 1e-4

    quantus_wall, quantus_cpu, _ = timed(run_quantus, args.repeats)
    ours_wall, ours_cpu, _ = timed(lambda: run_ours(cells), args.repeats)
    default_wall, default_cpu, _ = timed(lambda: run_ours(16), args.repeats)
    forwards_quantus = 3 * cells * args.images
    print(f"tiny CLIP {size} px, grid {grid[0]}x{grid[1]} ({cells} cells), {args.images} images, "
          f"torch threads {args.threads}")
    print(f"quantus RegionPerturbation morf+lerf+random, {cells} steps (deletion only, "
          f"{forwards_quantus} image forwards): wall {quantus_wall:.2f} s, cpu {quantus_cpu:.2f} s")
    print(f"ours map+inverse+random, {cells} steps (deletion and insertion): wall {ours_wall:.2f} s, "
          f"cpu {ours_cpu:.2f} s; quantus / ours {quantus_wall / ours_wall:.1f}x wall, "
          f"{quantus_cpu / ours_cpu:.1f}x cpu")
    print(f"ours map+inverse+random, 16 steps (the default): wall {default_wall:.2f} s, cpu {default_cpu:.2f} s; "
          f"quantus ({cells} steps) / ours {quantus_wall / default_wall:.1f}x wall")


if __name__ == "__main__":
    main()
