"""Peak memory of one extraction step against the bare forward with the same batch (issue 16 §1).

Real architectures with random weights (transformers CLIPVisionModel configs, eager attention, the
adapter the workflow uses): CLIP ViT-B/16 at 224 px and ViT-L/14 at 336 px. Three modes, each measured
in a fresh process so that one's peak cannot hide another's:

- bare: `adapter.encode(pixels, attentions=False)`, the embeddings only;
- full: the extraction step with every layer's attention returned (`output_attentions`) and read by
  the map methods (the path before issue 16, kept as the fallback);
- layerwise: the extraction step with each layer's attention reduced as the layer finishes.

The step stores the preset's maps (`presets/osv5m.yaml`: CLS attention of the last layer, rollout, the
last layer's embedding). On the CPU the peak is the process's peak RSS (`ru_maxrss`), reported whole and
as the increase over the RSS just before the step (weights and libraries loaded, pixels made); on
CUDA it is `torch.cuda.max_memory_allocated` (whole, and over what was allocated before the step).

    python benchmarks/extraction_memory.py                         # CPU: both models, small batches
    python benchmarks/extraction_memory.py --device cuda --precision bf16 --batch vitb16=64 vitl14_336=64
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ARCHITECTURES = {
    "vitb16": {"image_size": 224, "patch_size": 16, "hidden_size": 768, "intermediate_size": 3072,
               "num_hidden_layers": 12, "num_attention_heads": 12},
    "vitl14_336": {"image_size": 336, "patch_size": 14, "hidden_size": 1024, "intermediate_size": 4096,
                   "num_hidden_layers": 24, "num_attention_heads": 16},
}
MODES = ("bare", "full", "layerwise")


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def measure(architecture: str, mode: str, batch: int, device: str, precision: str,
            attention_layers: list[int] | str, embedding_layers: list[int]) -> dict:
    """One measurement, in this process (run it in a fresh one)."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from encoderlens.attention.methods import methods_for
    from encoderlens.extract.run import ExtractionSettings, ExtractionStep, _autocast, resolve_layers
    from encoderlens.models.clip import ClipAdapter
    from encoderlens.models.hf_vit import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

    torch.manual_seed(0)
    config = CLIPVisionConfig(**ARCHITECTURES[architecture])
    config._attn_implementation = "eager"
    model = CLIPVisionModel(config).eval()
    adapter = ClipAdapter(model, ClipAdapter.describe(model), OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    adapter.to(torch.device(device))
    settings = ExtractionSettings(batch_size=batch, attention_layers=attention_layers,
                                  embedding_layers=embedding_layers, device=device, precision=precision)
    layers = resolve_layers(attention_layers, adapter.info.num_layers)
    kept = resolve_layers(embedding_layers, adapter.info.num_layers)
    size = adapter.info.image_size
    pixels = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    cuda = device.startswith("cuda")
    if mode == "bare":
        def step():
            with torch.no_grad(), _autocast(pixels.device, precision):
                output = adapter.encode(pixels, attentions=False)
            return output.cls.float().cpu()
    else:
        methods = [method(adapter, settings, layers) for method in methods_for(adapter.traits)]
        run = ExtractionStep(adapter, methods, settings, kept, layerwise=(mode == "layerwise"))

        def step():
            return run(pixels)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    rss_before = rss_bytes()
    start = time.perf_counter()
    step()
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    result = {"architecture": architecture, "mode": mode, "batch": batch, "device": device,
              "precision": precision, "seconds": round(seconds, 2),
              "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
              "rss_before_mib": rss_before / 2**20}
    if cuda:
        result |= {"cuda_peak_mib": torch.cuda.max_memory_allocated() / 2**20,
                   "cuda_before_mib": before / 2**20, "gpu": torch.cuda.get_device_name()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--batch", nargs="+", default=["vitb16=16", "vitl14_336=4"],
                        help="architecture=batch pairs")
    parser.add_argument("--attention-layers", default="-1", help="'all' or comma-separated indices")
    parser.add_argument("--embedding-layers", default="-1")
    parser.add_argument("--mmap-threshold", type=int, default=None,
                        help="bytes: run each measurement with glibc's MALLOC_MMAP_THRESHOLD_ fixed (no dynamic "
                             "threshold, so freed large tensors return to the OS and RSS tracks live memory)")
    parser.add_argument("--one", nargs=2, metavar=("ARCH", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--one-batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    attention = "all" if args.attention_layers == "all" else [int(x) for x in args.attention_layers.split(",")]
    embedding = [int(x) for x in args.embedding_layers.split(",") if x]
    if args.one:
        print(json.dumps(measure(args.one[0], args.one[1], args.one_batch, args.device, args.precision,
                                 attention, embedding)))
        return
    rows = []
    for pair in args.batch:
        architecture, batch = pair.split("=")
        for mode in MODES:
            command = [sys.executable, __file__, "--one", architecture, mode, "--one-batch", batch,
                       "--device", args.device, "--precision", args.precision,
                       "--attention-layers", args.attention_layers, "--embedding-layers", args.embedding_layers]
            environment = dict(os.environ)
            if args.mmap_threshold:
                environment["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
            done = subprocess.run(command, capture_output=True, text=True, env=environment)
            if done.returncode:
                print(done.stderr[-3000:], file=sys.stderr)
                raise SystemExit(f"{architecture} {mode} failed")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    key = "cuda_peak_mib" if args.device.startswith("cuda") else "peak_rss_mib"
    base = "cuda_before_mib" if args.device.startswith("cuda") else "rss_before_mib"
    print(f"\n| architecture | batch | mode | peak MiB | x bare | step's own MiB (peak - before) | x bare | s |")
    print("|---|---|---|---|---|---|---|---|")
    bare = {}
    for row in rows:
        own = row[key] - row[base]
        if row["mode"] == "bare":
            bare[row["architecture"]] = (row[key], own)
        whole, bare_own = bare[row["architecture"]]
        print(f"| {row['architecture']} | {row['batch']} | {row['mode']} | {row[key]:,.0f} | "
              f"{row[key] / whole:.2f} | {own:,.0f} | {own / bare_own:.2f} | {row['seconds']} |")


if __name__ == "__main__":
    main()
