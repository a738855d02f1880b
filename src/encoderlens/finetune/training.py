"""The supervised training loop shared by the strategies: AdamW, cosine decay after a linear warm-up,
gradient clipping, early stopping on validation accuracy, bf16 autocast on CUDA only.

Determinism and resume: the order of training images in epoch e is a permutation drawn from
`seed` and e alone, and dropout draws from the global torch RNG, whose state goes into the
checkpoint written (atomically) after every epoch with the tuned tensors, the head, the optimiser,
the scheduler, the history and the early-stopping state. A killed run restarts after its last
finished epoch and ends with the same weights, bit for bit, as an uninterrupted run.

The weights kept at the end are those of the epoch with the best validation accuracy (the first
such epoch on ties). History rows: epoch, train_loss (mean over the epoch's images), val_loss,
val_accuracy, lr (at the epoch's end, of the backbone's or LoRA's parameter group; the head's for
linear).
"""

from __future__ import annotations

import math
import pickle
import sys
import zipfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from encoderlens.tables import durable_write

from .strategies import Prepared

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = ("model", "head", "optimiser", "scheduler", "torch_rng", "history", "best",
                   "since_best", "epoch", "seconds", "seen")


@dataclass(frozen=True)
class TrainingSettings:
    epochs: int = 10
    batch_size: int = 32
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    grad_clip: float = 1.0
    patience: int = 3
    seed: int = 0


@dataclass
class TrainingResult:
    history: list[dict]
    best_epoch: int
    best_val_accuracy: float
    stopped_early: bool
    train_seconds: float
    train_images_seen: int


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def warmup_cosine(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    """LR multiplier: linear from 1/warmup to 1 over the warm-up steps, then cosine down to 0."""
    warmup = max(1, math.ceil(warmup_fraction * total_steps))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor


def _autocast(device: torch.device):
    # bf16 autocast on CUDA only: CPU bf16 matmuls are slow and change the numbers the tests pin
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def logits_of(prepared: Prepared, pixels: torch.Tensor, device: torch.device) -> torch.Tensor:
    with _autocast(device):
        if prepared.strategy == "linear":
            with torch.no_grad():
                features = prepared.adapter.pooled(pixels)
        else:
            features = prepared.adapter.pooled(pixels)
        return prepared.head(features.float())


@torch.no_grad()
def evaluate(prepared: Prepared, load: Callable[[np.ndarray], torch.Tensor], labels: np.ndarray,
             batch_size: int, device: torch.device) -> tuple[float, float, np.ndarray]:
    """(mean cross-entropy, accuracy, predicted labels) over the given images, in eval mode."""
    prepared.set_eval_mode()
    if len(labels) == 0:
        return float("nan"), float("nan"), np.array([], dtype=int)
    losses, predictions = [], []
    for start in range(0, len(labels), batch_size):
        rows = np.arange(start, min(start + batch_size, len(labels)))
        logits = logits_of(prepared, load(rows).to(device), device).float()
        target = torch.as_tensor(labels[rows], device=device)
        losses.append(float(F.cross_entropy(logits, target, reduction="sum")))
        predictions.append(logits.argmax(dim=1).cpu().numpy())
    predicted = np.concatenate(predictions)
    return sum(losses) / len(labels), float((predicted == labels).mean()), predicted


def save_checkpoint(payload: dict, path: Path) -> None:
    """torch.save to a temporary sibling, flushed to disk (fsync), then renamed: neither a kill nor a
    power loss leaves half a checkpoint under the final name."""
    durable_write(path, lambda handle: torch.save(payload, handle), "checkpoint")


def load_checkpoint(path: Path, required: tuple[str, ...], map_location="cpu") -> dict | None:
    """The checkpoint at `path`, or None when there is none or it cannot be used: an empty, truncated
    or corrupt file, or one lacking a `required` key, is deleted with a log line naming it, and the
    training starts over (with the same seed it ends with the same weights, only later)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with zipfile.ZipFile(path) as archive:  # torch's zip format; its reader skips the CRCs
            damaged = archive.testzip()
        state = torch.load(path, map_location=map_location, weights_only=True)
        missing = [key for key in required if key not in state]
        problem = (f"member {damaged} fails its CRC check" if damaged
                   else f"lacks {missing}" if missing else None)
    except (EOFError, RuntimeError, ValueError, TypeError, AttributeError, pickle.UnpicklingError,
            zipfile.BadZipFile) as error:
        problem = f"unreadable ({type(error).__name__}: {error})"
    if problem is None:
        return state
    print(f"{path}: checkpoint {problem}; discarded, training restarts from epoch 0", file=sys.stderr)
    path.unlink()
    return None


def _restore(prepared: Prepared, state: dict) -> None:
    own = prepared.adapter.model.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ValueError(f"checkpoint holds tensors the model lacks, e.g. {unknown[:3]}")
    prepared.adapter.model.load_state_dict(state, strict=False)


def train(prepared: Prepared, load_train: Callable[[np.ndarray], torch.Tensor], train_labels: np.ndarray,
          load_val: Callable[[np.ndarray], torch.Tensor], val_labels: np.ndarray,
          settings: TrainingSettings, workdir: str | Path, device: torch.device = torch.device("cpu"),
          on_epoch_end: Callable[[int], None] | None = None) -> TrainingResult:
    """Train (or resume) in `workdir`; leaves the best epoch's weights in `prepared`.

    `load_train(rows)` returns the pixels of those positions of the training set (same for val).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    n_train = len(train_labels)
    if n_train == 0 or len(val_labels) == 0:
        raise ValueError(f"fine-tuning needs training and validation images, got {n_train} and {len(val_labels)}")
    parameters = prepared.trainable_parameters()
    groups = [{"params": g["params"], "lr": g["lr"]} for g in prepared.param_groups]
    optimiser = torch.optim.AdamW(groups, weight_decay=settings.weight_decay)
    steps_per_epoch = math.ceil(n_train / settings.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, warmup_cosine(settings.epochs * steps_per_epoch, settings.warmup_fraction))

    history: list[dict] = []
    best = {"accuracy": -1.0, "epoch": 0, "model": prepared.tuned_state(),
            "head": {k: v.clone() for k, v in prepared.head.state_dict().items()}}
    since_best, start, seconds, seen = 0, 0, 0.0, 0
    checkpoint = workdir / CHECKPOINT
    saved = load_checkpoint(checkpoint, CHECKPOINT_KEYS)
    if saved is not None:
        try:
            _restore(prepared, saved["model"])
        except ValueError as error:
            raise ValueError(f"{checkpoint}: {error}") from error
        prepared.head.load_state_dict(saved["head"])
        optimiser.load_state_dict(saved["optimiser"])
        scheduler.load_state_dict(saved["scheduler"])
        torch.set_rng_state(saved["torch_rng"])
        if saved.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        history, best, since_best = saved["history"], saved["best"], saved["since_best"]
        start, seconds, seen = saved["epoch"], saved["seconds"], saved["seen"]
        print(f"resuming fine-tuning after epoch {start}", file=sys.stderr)

    stopped_early = start > 0 and since_best >= settings.patience
    for epoch in range(start, settings.epochs if not stopped_early else start):
        began = time.perf_counter()
        prepared.set_train_mode()
        order = epoch_order(n_train, settings.seed, epoch)
        total_loss = 0.0
        for first in range(0, n_train, settings.batch_size):
            rows = order[first:first + settings.batch_size]
            pixels = load_train(rows).to(device)
            target = torch.as_tensor(train_labels[rows], device=device)
            loss = F.cross_entropy(logits_of(prepared, pixels, device).float(), target)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip)
            optimiser.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(rows)
        seconds += time.perf_counter() - began
        seen += n_train
        lr = [group["lr"] for group in optimiser.param_groups]
        val_loss, val_accuracy, _ = evaluate(prepared, load_val, val_labels, settings.batch_size, device)
        history.append({"epoch": epoch + 1, "train_loss": total_loss / n_train, "val_loss": val_loss,
                        "val_accuracy": val_accuracy, "lr": lr[-1]})
        if val_accuracy > best["accuracy"]:
            best = {"accuracy": val_accuracy, "epoch": epoch + 1, "model": prepared.tuned_state(),
                    "head": {k: v.detach().cpu().clone() for k, v in prepared.head.state_dict().items()}}
            since_best = 0
        else:
            since_best += 1
        print(f"epoch {epoch + 1}/{settings.epochs}: train loss {history[-1]['train_loss']:.4f}, "
              f"val loss {val_loss:.4f}, val accuracy {val_accuracy:.3f}", file=sys.stderr)
        save_checkpoint({
            "model": prepared.tuned_state(), "head": prepared.head.state_dict(),
            "optimiser": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
            "history": history, "best": best, "since_best": since_best, "epoch": epoch + 1,
            "seconds": seconds, "seen": seen,
        }, checkpoint)
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1)
        if since_best >= settings.patience:
            stopped_early = epoch + 1 < settings.epochs
            print(f"early stop: no validation gain for {settings.patience} epochs", file=sys.stderr)
            break

    _restore(prepared, best["model"])
    prepared.head.load_state_dict(best["head"])
    prepared.set_eval_mode()
    return TrainingResult(history, best["epoch"], best["accuracy"], stopped_early, seconds, seen)
