"""Chefer et al. 2021, "Generic Attention-model Explainability for Interpreting Bi-Modal and
Encoder-Decoder Transformers" (ICCV), for ViT encoders with a CLS token.

Rules 5 and 6 of the paper, as its reference code writes them (hila-chefer/Transformer-MM-
Explainability, `avg_heads` and `apply_self_attention_rules`): per layer the gradient-weighted
attention A_bar = mean over heads of relu(dS/dA ⊙ A), and the relevance R = I, then R <- R + A_bar R
from the first layer to the last; the map is the CLS row of R over the patch tokens (prefix tokens,
CLS and registers, stay inside the product and are dropped when the row is read, as in `rollout`).

The explained scalar S is the run's `attention.targets.ExplainedScalar` of the adapter's pooled
embedding (the image's projection onto its own unperturbed embedding direction, or a fine-tuned
head's predicted-class logit); the gradients dS/dA of every
layer's softmax attention come from one backward pass per batch (images are independent, so the
gradient of the batch's summed scores is each image's own).

Only the CLS row is needed: R_L = (I + A_L) ... (I + A_1), so e_cls^T R_L is carried as a row vector
from the last layer down, O(L T^2) per image instead of O(L T^3); `relevance_reference` is the plain
matrix loop of the paper, kept for the tests.
"""

from __future__ import annotations

import numpy as np
import torch

from encoderlens.attention.targets import ExplainedScalar
from encoderlens.models.base import FamilyAdapter


def gradient_weighted(attention: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """Rule 5: (B, H, T, T) attention and its gradient -> (B, T, T) mean over heads of relu(grad * A)."""
    return (gradient * attention).clamp(min=0).mean(dim=1)


def relevance_cls_row(attentions: list[torch.Tensor], gradients: list[torch.Tensor], n_prefix: int,
                      grid: tuple[int, int]) -> torch.Tensor:
    """(B, gh, gw) the CLS row of R = prod_l (I + A_bar_l) over the patch tokens (float32)."""
    if len(attentions) != len(gradients) or not attentions:
        raise ValueError(f"{len(attentions)} attention tensors and {len(gradients)} gradients")
    first = attentions[0]
    dtype = torch.float64 if first.device.type == "cpu" else torch.float32
    batch = first.shape[0]
    row = None
    for attention, gradient in zip(reversed(attentions), reversed(gradients)):
        weighted = gradient_weighted(attention.to(dtype), gradient.to(dtype))   # (B, T, T)
        if row is None:
            row = weighted[:, 0].clone()
            row[:, 0] += 1.0                                      # e_cls^T (I + A_bar_L)
        else:
            row = row + torch.bmm(row.unsqueeze(1), weighted).squeeze(1)  # row (I + A_bar_l)
    gh, gw = grid
    return row[:, n_prefix:].reshape(batch, gh, gw).float()


def relevance_reference(attentions: list[torch.Tensor], gradients: list[torch.Tensor]) -> torch.Tensor:
    """The paper's loop for one image ((H, T, T) per layer): R = I; R += mean_h relu(grad * A) @ R.
    Returns the full (T, T) relevance; the tests compare its CLS row."""
    tokens = attentions[0].shape[-1]
    relevance = torch.eye(tokens, dtype=torch.float64)
    for attention, gradient in zip(attentions, gradients):
        cam = (gradient.double() * attention.double()).clamp(min=0).mean(dim=0)
        relevance = relevance + cam @ relevance
    return relevance


def chefer_maps(adapter: FamilyAdapter, pixels: torch.Tensor,
                target: ExplainedScalar | None = None) -> np.ndarray:
    """(B, gh, gw) float32 Chefer relevance of preprocessed `pixels` (B, 3, S, S), explaining each
    image's `target` (default: its self-similarity). A pass of its own in float32 with gradients (even inside no_grad)."""
    info = adapter.info
    if not info.has_cls:
        raise ValueError(f"{info.family}: Chefer's relevance is read at the CLS row; the model has no CLS")
    pixels = pixels.detach().to(adapter.device, torch.float32)
    with torch.enable_grad():
        output = adapter.encode_with_grad(pixels, attentions=True)
        scalar = (target or ExplainedScalar())(output.cls)
        gradients = torch.autograd.grad(scalar(output.cls).sum(), output.attentions)
    attentions = [a.detach() for a in output.attentions]
    return relevance_cls_row(attentions, list(gradients), info.n_prefix_tokens,
                             (info.grid_h, info.grid_w)).cpu().numpy()
