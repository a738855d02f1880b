"""One fine-tuning job: manifest and checkpoint folder in; the variant's weights, `history.csv`,
`metrics.json` and `split.csv` out (in `results/{dataset}/{model}/finetune/{variant}/`).

Weights on disk, all safetensors:
- `head.safetensors` — the classification head (every strategy), class names in its metadata;
- `adapter/` — peft's LoRA folder, adapter tensors only (`lora`);
- `backbone.safetensors` — the unfrozen blocks and the modules after them, named as in the
  backbone's state_dict (`full`).
`encoderlens.models.tuned.apply_tuned_weights` reads this layout back for extraction.

The epoch checkpoints live in a sibling `<folder>.work/`, kept when a job dies (so the next attempt
resumes) and removed after success; a checkpoint written under other settings is discarded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors.torch import save_file

from encoderlens.extract.run import ImageFiles, resolve_device
from encoderlens.models.registry import load_adapter
from encoderlens.models.tuned import BACKBONE, HEAD
from encoderlens.tables import write_table

from .lora import LoraSettings, save_lora_adapter
from .strategies import LearningRates, count_parameters, prepare
from .task import MIN_POOL_IMAGES, class_counts, require_pool, style_task
from .training import TrainingSettings, evaluate, train

FINGERPRINT = "settings.json"
CACHE_LIMIT_BYTES = 2 * 1024**3  # decoded images kept in memory below this size


def image_loader(paths: list[str], preprocess) -> Callable[[np.ndarray], torch.Tensor]:
    """rows -> (B, 3, S, S) pixels; decoded once and kept when the set is small enough."""
    files = ImageFiles(paths, preprocess)
    cache: dict[int, torch.Tensor] = {}
    keep = None

    def load(rows: np.ndarray) -> torch.Tensor:
        nonlocal keep
        batch = []
        for row in np.asarray(rows, dtype=int):
            pixels = cache.get(row)
            if pixels is None:
                pixels = files[row]
                if keep is None:
                    keep = pixels.numel() * pixels.element_size() * len(files) <= CACHE_LIMIT_BYTES
                if keep:
                    cache[row] = pixels
            batch.append(pixels)
        return torch.stack(batch)

    return load


def _fingerprint(settings: dict, model_folder, strategy: str) -> str:
    payload = {"settings": settings, "strategy": strategy, "model_folder": str(model_folder)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _read_marker(marker: Path) -> str | None:
    """The settings hash a work folder was made for; None when missing or unreadable (a power loss
    can leave it empty): the folder is then discarded like one made under other settings."""
    try:
        return json.loads(marker.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _prepare_workdir(work: Path, fingerprint: str) -> None:
    marker = work / FINGERPRINT
    if work.exists() and _read_marker(marker) != fingerprint:
        print(f"discarding checkpoints in {work}: written under other settings", file=sys.stderr)
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"sha256": fingerprint}))


def run_finetune(manifest_path, model_folder, family: str, strategy: str, settings: dict, out_folder,
                 image_size: int | None = None, threads: int = 1, device: str = "cpu",
                 on_epoch_end: Callable[[int], None] | None = None) -> dict:
    """Train `strategy` on the style task of the manifest; returns the metrics written."""
    torch.set_num_threads(max(1, threads))
    out_folder = Path(out_folder)
    classes = settings["classes"]
    manifest = pd.read_parquet(manifest_path)
    require_pool(manifest, classes, manifest_path, f"fine-tuning ({strategy})",
                 settings.get("min_pool_images", MIN_POOL_IMAGES))
    try:
        task = style_task(manifest, classes, settings["val_fraction"], settings["seed"])
    except ValueError as error:
        raise ValueError(f"{manifest_path}: {error}") from None
    names = list(dict.fromkeys(classes.values()))
    parts = {role: task[task["role"] == role].reset_index(drop=True) for role in ("train", "val", "heldout")}
    print(f"style task ({strategy}): " + ", ".join(f"{r} {len(p)}" for r, p in parts.items())
          + f", excluded {int((task['role'] == 'excluded').sum())}", file=sys.stderr)

    run_device = resolve_device(device)
    torch.manual_seed(settings["seed"])
    adapter = load_adapter(family, model_folder, image_size=image_size)
    total_parameters = count_parameters(adapter.model.parameters())
    lora = LoraSettings(**settings["lora"])
    rates = LearningRates(head=settings["head_lr"], lora=settings["lora_lr"], backbone=settings["backbone_lr"])
    prepared = prepare(adapter, strategy, len(names), last_blocks=settings["last_blocks"], lora=lora,
                       rates=rates, seed=settings["seed"])
    adapter.to(run_device)
    prepared.head.to(run_device)
    loaders = {role: image_loader(part["path"].tolist(), adapter.preprocess) for role, part in parts.items()}
    labels = {role: part["label"].to_numpy() for role, part in parts.items()}

    training = TrainingSettings(**{key: settings[key] for key in (
        "epochs", "batch_size", "weight_decay", "warmup_fraction", "grad_clip", "patience", "seed")})
    work = out_folder.with_name(out_folder.name + ".work")
    _prepare_workdir(work, _fingerprint(settings, model_folder, strategy))
    result = train(prepared, loaders["train"], labels["train"], loaders["val"], labels["val"], training,
                   work, device=run_device, on_epoch_end=on_epoch_end)
    heldout_loss, heldout_accuracy, _ = evaluate(prepared, loaders["heldout"], labels["heldout"],
                                                 training.batch_size, run_device)

    metrics = {
        "strategy": strategy, "family": family, "classes": names,
        "val_accuracy": result.best_val_accuracy, "heldout_accuracy": heldout_accuracy,
        "heldout_loss": heldout_loss, "best_epoch": result.best_epoch, "epochs_run": len(result.history),
        "stopped_early": result.stopped_early, "chance_accuracy": 1.0 / len(names),
        "heldout_majority_accuracy": _majority_share(labels["train"], labels["heldout"]),
        "trainable_parameters": count_parameters(prepared.trainable_parameters()),
        "head_parameters": count_parameters(prepared.head.parameters()),
        "backbone_parameters": total_parameters, "unfrozen_blocks": prepared.unfrozen_blocks,
        "images": class_counts(task),
        "train_seconds": result.train_seconds,
        "train_images_per_second": result.train_images_seen / max(result.train_seconds, 1e-9),
        "device": str(run_device), "autocast": "bf16" if run_device.type == "cuda" else "none",
    }
    print(f"best epoch {result.best_epoch}: val accuracy {result.best_val_accuracy:.3f}, "
          f"held-out accuracy {heldout_accuracy:.3f}", file=sys.stderr)
    _write_outputs(prepared, result.history, metrics, task, out_folder)
    shutil.rmtree(work, ignore_errors=True)
    return metrics


def _majority_share(train_labels: np.ndarray, other: np.ndarray) -> float:
    if len(other) == 0 or len(train_labels) == 0:
        return float("nan")
    return float((other == np.bincount(train_labels).argmax()).mean())


def _write_outputs(prepared, history, metrics, task, out_folder: Path) -> None:
    """Everything into a staging folder, then one rename: a half-written variant never looks done."""
    staging = out_folder.with_name(out_folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    head = {key: value.detach().cpu().contiguous() for key, value in prepared.head.state_dict().items()}
    save_file(head, staging / HEAD, metadata={"classes": json.dumps(metrics["classes"]),
                                              "input": "pooled embedding (cls)"})
    if prepared.strategy == "lora":
        save_lora_adapter(prepared.adapter.model, staging / "adapter")
    elif prepared.strategy == "full":
        save_file({k: v.contiguous() for k, v in prepared.tuned_state().items()}, staging / BACKBONE)
    write_table(pd.DataFrame(history, columns=["epoch", "train_loss", "val_loss", "val_accuracy", "lr"]),
                staging / "history.csv")
    write_table(task[["image_id", "church_id", "class_name", "role"]], staging / "split.csv")
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, default=float) + "\n")
    shutil.rmtree(out_folder, ignore_errors=True)
    os.replace(staging, out_folder)
