"""One distance-calibration job: frozen embeddings, manifest and checkpoint in; a LoRA adapter of the
image tower, its training history and the target curve out.

The target curve is fitted on the frozen embeddings of the gallery images only (pairs sampled as in
the geometry study), and only gallery images train, so the kNN queries stay unseen.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from encoderlens.extract.run import ImageFiles, resolve_device
from encoderlens.finetune.lora import LoraSettings, save_lora_adapter, wrap_with_lora
from encoderlens.models.registry import load_adapter
from encoderlens.tables import atomic_folder, write_table

from .calibrated_tuning import CalibrationSettings, train
from .calibration import fit_target_curve
from .geometry import binned_cosine, pair_cosine_distance
from .knn import split_gallery_queries
from .study import aligned_manifest, read_features


def differentiable_features(adapter, pixels: torch.Tensor, feature: str) -> torch.Tensor:
    """The named embedding (cls, mean, cls_raw) with gradients."""
    value = getattr(adapter.encode_with_grad(pixels), feature)
    if value is None:
        raise ValueError(f"{adapter.family} has no {feature!r} embedding to calibrate")
    return value


def target_curve_for(embeddings: np.ndarray, latlon: np.ndarray, n_pairs: int, seed: int, bins_km):
    _, _, cosine, distance = pair_cosine_distance(embeddings, latlon, n_pairs=n_pairs, seed=seed)
    return fit_target_curve(binned_cosine(cosine, distance, bins_km))


def calibrate(manifest_path, frozen_embeddings, model_folder, family: str, image_size: int | None,
              settings: dict, out_folder, threads: int = 1, device: str = "cpu") -> None:
    """Train the adapter; writes `adapter/` (peft, safetensors), `history.csv`, `target_curve.parquet`."""
    torch.set_num_threads(max(1, threads))
    out_folder = Path(out_folder)
    feature = settings["feature"]
    ids, features = read_features(frozen_embeddings, [feature])
    if feature not in features:
        raise ValueError(f"{frozen_embeddings} has no /{feature} embeddings to calibrate")
    table = aligned_manifest(pd.read_parquet(manifest_path), ids)
    gallery, _ = split_gallery_queries(len(table), settings["query_fraction"], settings["seed"])
    latlon = table[["latitude", "longitude"]].to_numpy(dtype=float)[gallery]
    n_pairs = min(settings["curve_pairs"], len(gallery) * (len(gallery) - 1) // 2)
    curve = target_curve_for(features[feature][gallery], latlon, n_pairs, settings["seed"],
                             settings["distance_bins_km"])
    print(f"{len(gallery)} gallery images train; target cosine {np.round(curve.cosine, 4).tolist()} "
          f"at {np.round(curve.distance_km, 1).tolist()} km", file=sys.stderr)

    torch.manual_seed(settings["seed"])
    adapter = load_adapter(family, model_folder, image_size=image_size)
    run_device = resolve_device(device)
    wrap_with_lora(adapter, LoraSettings(rank=settings["lora_rank"], alpha=settings["lora_alpha"],
                                         dropout=settings["lora_dropout"]))
    adapter.to(run_device)
    adapter.model.train()
    images = ImageFiles(table["path"].to_numpy()[gallery].tolist(), adapter.preprocess)
    trainable = [p for p in adapter.model.parameters() if p.requires_grad]
    work = out_folder.with_name(out_folder.name + ".work")
    bf16 = run_device.type == "cuda" and settings.get("precision") == "bf16"

    def embed(pixels):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            return differentiable_features(adapter, pixels, feature)

    history = train(embed, trainable,
                    lambda rows: torch.stack([images[int(r)] for r in rows]), latlon, curve,
                    CalibrationSettings(epochs=settings["epochs"], batch_size=settings["batch_size"],
                                        lr=settings["lr"], seed=settings["seed"]),
                    work, device=run_device)

    with atomic_folder(out_folder) as staging:
        save_lora_adapter(adapter.model, staging / "adapter")
        write_table(history, staging / "history.csv")
        curve.to_table().to_parquet(staging / "target_curve.parquet")
        (staging / "training.json").write_text(json.dumps(
            {"feature": feature, "train_images": int(len(gallery)),
             "trainable_parameters": int(sum(p.numel() for p in trainable)),
             **{k: settings[k] for k in ("epochs", "batch_size", "lr", "lora_rank", "lora_alpha", "lora_dropout",
                                         "seed")}},
            indent=1))
    shutil.rmtree(work, ignore_errors=True)
