"""Fine-tuning throughput (training images/s) of each strategy, through the training loop the
workflow runs (`encoderlens.finetune.training.train`): forward, cross-entropy, backward, gradient
clipping, AdamW and scheduler steps. Pixels are pre-decoded tensors, so the figure is the model's
training speed (the job caches decoded images the same way when they fit in memory); validation
time is excluded.

    python benchmarks/finetune_throughput.py                          # the tiny demo models, CPU
    python benchmarks/finetune_throughput.py --threads 2
    python benchmarks/finetune_throughput.py --vit-b --device cuda    # ViT-B/16 LoRA, bf16 autocast
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from encoderlens.extract.run import resolve_device
from encoderlens.finetune.strategies import STRATEGIES, count_parameters, prepare
from encoderlens.finetune.training import TrainingSettings, train
from encoderlens.models.registry import FAMILIES, build_tiny, load_adapter

VIT_B = {"hidden_size": 768, "num_layers": 12, "num_heads": 12, "image_size": 224, "patch_size": 16}


def throughput(family: str, folder: Path, strategy: str, images: int, epochs: int, batch_size: int,
               device: torch.device) -> dict:
    adapter = load_adapter(family, folder)
    if strategy == "lora" and not adapter.lora_target_modules:
        return {"family": family, "strategy": strategy, "skipped": "no attention projections"}
    prepared = prepare(adapter, strategy, n_classes=4, last_blocks=2)
    adapter.to(device)
    prepared.head.to(device)
    size = adapter.info.image_size
    pixels = torch.randn(images, 3, size, size, generator=torch.Generator().manual_seed(0))
    labels = np.arange(images) % 4
    val = np.arange(4)
    with tempfile.TemporaryDirectory() as work:
        result = train(prepared, lambda rows: pixels[rows], labels, lambda rows: pixels[rows], val,
                       TrainingSettings(epochs=epochs, batch_size=batch_size, patience=epochs), work, device)
    return {"family": family, "strategy": strategy, "image_size": size,
            "trainable_parameters": count_parameters(prepared.trainable_parameters()),
            "images_per_second": round(result.train_images_seen / result.train_seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="+", default=list(FAMILIES))
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vit-b", action="store_true", help="a ViT-B/16-sized DINOv2 at 224 px, LoRA only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    rows = []
    with tempfile.TemporaryDirectory() as root:
        families = ["dinov2"] if args.vit_b else args.families
        strategies = ["lora"] if args.vit_b else args.strategies
        for family in families:
            folder = Path(root) / family
            build_tiny(family, folder, seed=0, **(VIT_B if args.vit_b else {}))
            for strategy in strategies:
                row = throughput(family, folder, strategy, args.images, args.epochs, args.batch_size, device)
                row |= {"device": str(device), "threads": args.threads,
                        "autocast": "bf16" if device.type == "cuda" else "none"}
                print(json.dumps(row), flush=True)
                rows.append(row)


if __name__ == "__main__":
    main()
