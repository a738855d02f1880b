"""Distance-calibrated fine-tuning: LoRA on the image tower, trained so that the cosine of every pair
of images in a batch approaches the target curve's value at the pair's great-circle distance.

The loss is the mean squared difference between pair cosine and target over the B(B−1)/2 pairs of a
batch. Only gallery images train (the kNN queries are held out with the same split as the retrieval
study), so the before/after GeoScore is measured on images the tuning never saw.

Determinism and resume: data order comes from a generator seeded per epoch (seed + epoch), dropout
from the global torch RNG whose state is saved with every epoch checkpoint; a killed run restarts at
the first unfinished epoch and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from encoderlens.finetune.training import load_checkpoint, save_checkpoint, warmup_cosine

from .calibration import TargetCurve
from .distance import haversine_km

CHECKPOINT = "checkpoint.pt"
CHECKPOINT_KEYS = ("parameters", "optimiser", "scheduler", "torch_rng", "history", "epoch")


@dataclass(frozen=True)
class CalibrationSettings:
    epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    seed: int = 0
    grad_clip: float = 1.0


def pair_targets(latlon: np.ndarray, curve: TargetCurve) -> torch.Tensor:
    """(B, B) target cosine for every pair of a batch's locations."""
    lat, lon = latlon[:, 0], latlon[:, 1]
    distance = haversine_km(lat[:, None], lon[:, None], lat[None, :], lon[None, :])
    return torch.from_numpy(curve(distance)).float()


def calibration_loss(embeddings: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between pair cosine and target over the strict upper triangle."""
    unit = F.normalize(embeddings.float(), dim=1)
    cosine = unit @ unit.T
    i, j = torch.triu_indices(len(unit), len(unit), offset=1, device=unit.device)
    return ((cosine[i, j] - targets.to(unit.device)[i, j]) ** 2).mean()


def _batches(n: int, batch_size: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    # a batch of one has no pair; fold a lone last image into the previous batch
    cuts = list(range(0, n, batch_size))
    batches = [order[c:c + batch_size] for c in cuts]
    if len(batches) > 1 and len(batches[-1]) < 2:
        lone = batches.pop()
        batches[-1] = np.concatenate([batches[-1], lone])
    return batches


def train(embed: Callable[[torch.Tensor], torch.Tensor], parameters: Sequence[torch.nn.Parameter],
          load_pixels: Callable[[np.ndarray], torch.Tensor], latlon: np.ndarray, curve: TargetCurve,
          settings: CalibrationSettings, workdir: Path, device: torch.device = torch.device("cpu"),
          stop_after_epoch: int | None = None) -> pd.DataFrame:
    """Run (or resume) the calibration; returns the history (epoch, loss, lr).

    `embed` maps a pixel batch to embeddings with gradients; `parameters` are the trainable tensors
    (the checkpoint stores exactly these, in order); `load_pixels(rows)` returns the images of those
    training rows. `stop_after_epoch` ends the run early, as a kill would (tests).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    parameters = list(parameters)
    if len(latlon) < 2:
        raise ValueError(f"distance calibration needs at least 2 training images, got {len(latlon)}")
    optimiser = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = len(_batches(len(latlon), settings.batch_size, settings.seed))
    total = settings.epochs * steps_per_epoch
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, warmup_cosine(total, warmup_fraction=0.1))
    history, start = [], 0
    checkpoint = workdir / CHECKPOINT
    state = load_checkpoint(checkpoint, CHECKPOINT_KEYS, map_location=None)
    if state is not None:
        if len(state["parameters"]) != len(parameters):
            raise ValueError(f"{checkpoint}: holds {len(state['parameters'])} tensors, the model trains "
                             f"{len(parameters)}")
        with torch.no_grad():
            for parameter, saved in zip(parameters, state["parameters"]):
                parameter.copy_(saved)
        optimiser.load_state_dict(state["optimiser"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        history, start = state["history"], state["epoch"]
        print(f"resuming distance calibration after epoch {start}", file=sys.stderr)
    for epoch in range(start, settings.epochs):
        losses = []
        for rows in _batches(len(latlon), settings.batch_size, settings.seed + epoch):
            loss = calibration_loss(embed(load_pixels(rows).to(device)), pair_targets(latlon[rows], curve))
            optimiser.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip)
            optimiser.step()
            scheduler.step()
            losses.append(float(loss.detach()))
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)),
                        "lr": float(scheduler.get_last_lr()[0])})
        print(f"epoch {epoch + 1}/{settings.epochs}: loss {history[-1]['loss']:.5f}", file=sys.stderr)
        save_checkpoint({"parameters": [p.detach().cpu().clone() for p in parameters],
                          "optimiser": optimiser.state_dict(), "scheduler": scheduler.state_dict(),
                          "torch_rng": torch.get_rng_state(),
                          "cuda_rng": torch.cuda.get_rng_state_all() if device.type == "cuda" else None,
                          "history": history, "epoch": epoch + 1},
                         checkpoint)
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch:
            break
    return pd.DataFrame(history)
