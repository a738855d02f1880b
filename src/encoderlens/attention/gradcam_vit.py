"""Grad-CAM for ViT encoders through pytorch-grad-cam, with its `reshape_transform`.

Target layer: the last transformer block's first norm (the input of its attention: `norm1`,
`layernorm_before` or `layer_norm1` by family), the choice of pytorch-grad-cam's ViT tutorial
(`model.blocks[-1].norm1`). Not the block's output: with CLS pooling only the CLS token of the last
block's output reaches the embedding, so the patch tokens' gradients there are zero; through the last
attention every patch token still reaches it.

reshape_transform: the activations and gradients (B, T, D) lose their prefix tokens (CLS, registers)
and the patch tokens become a (B, D, gh, gw) grid, as the package's tutorial does for ViTs.

Target: the run's `attention.targets.ExplainedScalar` of the adapter's pooled embedding (each image's
projection onto its own unperturbed embedding direction, or a fine-tuned head's predicted-class logit),
as a pytorch-grad-cam target object: the package calls a target with one image's model output (D,).

Maps: the package's channel weights (gradients averaged over the grid), weighted sum, ReLU and min-max
scaling per image, kept at the grid resolution (gh, gw) as for ResNets (`attention.gradcam`); stored
as /gradcam, the same dataset as the ResNet Grad-CAM.
"""

from __future__ import annotations

import numpy as np
import torch

from encoderlens.attention.gradcam import grid_gradcam
from encoderlens.attention.targets import ExplainedScalar, SelfSimilarity
from encoderlens.models.base import FamilyAdapter

# the first norm of a transformer block, by the names the families' layers give it
BLOCK_NORMS = ("norm1", "layernorm_before", "layer_norm1")


class PooledEmbedding(torch.nn.Module):
    """pixels -> (B, D) the adapter's pooled embedding, with gradients: the model pytorch-grad-cam runs."""

    def __init__(self, adapter: FamilyAdapter):
        super().__init__()
        self.adapter = adapter
        self.model = adapter.model  # registered, so that zero_grad reaches the parameters

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.adapter.pooled(pixels)


class ScalarTarget:
    """A pytorch-grad-cam target: one image's explained scalar, built for that image alone (batch of 1)."""

    def __init__(self, scalar):
        self.scalar = scalar

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return self.scalar(model_output[None])[0]


class SelfSimilarityTarget(ScalarTarget):
    """One image's projection onto its unperturbed embedding `reference` (D,)."""

    def __init__(self, reference: torch.Tensor):
        super().__init__(SelfSimilarity(reference[None]))


def last_block_norm(adapter: FamilyAdapter) -> torch.nn.Module:
    block = adapter.blocks()[-1]
    for name in BLOCK_NORMS:
        if hasattr(block, name):
            return getattr(block, name)
    raise AttributeError(f"{adapter.info.family}: the last block has none of {BLOCK_NORMS}: no Grad-CAM target layer")


def token_grid(n_prefix: int, grid: tuple[int, int]):
    """The reshape_transform: (B, T, D) tokens -> (B, D, gh, gw) patch tokens, prefix tokens dropped."""
    gh, gw = grid

    def reshape(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, n_prefix:]
        if patches.shape[1] != gh * gw:
            raise RuntimeError(f"{patches.shape[1]} patch tokens for a {gh}x{gw} grid")
        return patches.reshape(patches.shape[0], gh, gw, patches.shape[2]).permute(0, 3, 1, 2)

    return reshape


def vit_gradcam_maps(adapter: FamilyAdapter, pixels: torch.Tensor,
                     target: ExplainedScalar | None = None) -> np.ndarray:
    """(B, gh, gw) float32 Grad-CAM maps in [0, 1] of preprocessed `pixels` (B, 3, S, S), explaining
    each image's `target` (default: its self-similarity). A pass of its own with gradients; parameter gradients are cleared."""
    info = adapter.info
    pixels = pixels.detach().to(adapter.device, torch.float32).clone().requires_grad_(True)
    model = PooledEmbedding(adapter)
    with torch.no_grad():
        references = model(pixels)
    explained = target or ExplainedScalar()
    targets = [ScalarTarget(explained(reference[None])) for reference in references]
    grid = (info.grid_h, info.grid_w)
    return grid_gradcam(model, [last_block_norm(adapter)], pixels, targets, grid,
                        reshape_transform=token_grid(info.n_prefix_tokens, grid))
