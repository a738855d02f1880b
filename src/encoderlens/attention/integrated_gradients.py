"""Integrated Gradients (Sundararajan et al. 2017) through captum, for every family.

Explained scalar: the run's `attention.targets.ExplainedScalar` of the adapter's pooled embedding
(each image's projection onto its own unperturbed embedding direction, or a fine-tuned head's
predicted-class logit).

Baseline, in the model's normalised input space: `mean` (zeros: the normalisation's mean colour, a flat
grey image; the default) or `black` (pixel value 0 in every channel, i.e. -mean/std per channel).

Path integral: captum's `IntegratedGradients` with its default Gauss-Legendre rule over `steps`
points (default 32, config `ig.steps`); the interpolated images of a batch are run
`IG_ROWS_PER_PASS` rows at a time (whole steps of the batch per pass).

Map: the attributions (B, 3, S, S) are signed and satisfy completeness (their sum is s(x) - s(baseline),
up to the quadrature error); the stored map is their absolute value summed over the three channels and
over each patch's pixels, (B, gh, gw): the magnitude of each patch's contribution (the maps the
alignment scores must be non-negative). One patch is `patch_size` pixels square (32 for ResNets).
"""

from __future__ import annotations

import numpy as np
import torch
from captum.attr import IntegratedGradients

from encoderlens.attention.targets import ExplainedScalar
from encoderlens.models.base import FamilyAdapter

IG_BASELINES = ("mean", "black")
IG_ROWS_PER_PASS = 32


def ig_baseline(adapter: FamilyAdapter, pixels: torch.Tensor, baseline: str) -> torch.Tensor:
    """The baseline images (B, 3, S, S) in normalised input space."""
    if baseline == "mean":
        return torch.zeros_like(pixels)
    if baseline == "black":
        black = (-adapter.mean / adapter.std).to(pixels.device, pixels.dtype)  # (3, 1, 1)
        return black.expand_as(pixels).contiguous()
    raise ValueError(f"IG baseline must be one of {IG_BASELINES}, got {baseline!r}")


def target_function(adapter: FamilyAdapter, scalar):
    """pixels (k*B, 3, S, S) -> (k*B,) scores: image i of the batch at rows i, i+B, ... (captum's order)."""
    return lambda images: scalar(adapter.pooled(images))


def ig_attributions(adapter: FamilyAdapter, pixels: torch.Tensor, steps: int = 32, baseline: str = "mean",
                    target: ExplainedScalar | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(attributions (B, 3, S, S), baselines (B, 3, S, S)) of preprocessed `pixels`, float32."""
    if steps < 1:
        raise ValueError(f"IG needs at least one step, got {steps}")
    pixels = pixels.detach().to(adapter.device, torch.float32)
    with torch.no_grad():
        reference = adapter.pooled(pixels)
    baselines = ig_baseline(adapter, pixels, baseline)
    ig = IntegratedGradients(target_function(adapter, (target or ExplainedScalar())(reference)))
    try:
        with torch.enable_grad():
            attributions = ig.attribute(pixels, baselines=baselines, n_steps=steps,
                                        internal_batch_size=max(len(pixels), IG_ROWS_PER_PASS))
    finally:
        adapter.model.zero_grad(set_to_none=True)
    return attributions.detach(), baselines


def patch_sums(attributions: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, 3, S, S) -> (B, gh, gw): |attribution| summed over channels and each patch's pixels."""
    batch, _, height, width = attributions.shape
    gh, gw = grid
    if height % gh or width % gw:
        raise ValueError(f"a {height}x{width} input does not split into a {gh}x{gw} patch grid")
    magnitude = attributions.abs().sum(dim=1)
    return magnitude.reshape(batch, gh, height // gh, gw, width // gw).sum(dim=(2, 4))


def ig_maps(adapter: FamilyAdapter, pixels: torch.Tensor, steps: int = 32, baseline: str = "mean",
            target: ExplainedScalar | None = None) -> np.ndarray:
    """(B, gh, gw) float32 Integrated Gradients maps of preprocessed `pixels` (see the module doc)."""
    attributions, _ = ig_attributions(adapter, pixels, steps, baseline, target)
    info = adapter.info
    return patch_sums(attributions, (info.grid_h, info.grid_w)).float().cpu().numpy()
