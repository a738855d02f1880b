"""Attention maps on the patch grid, computed from raw per-layer attention tensors.

Every function takes numpy arrays (or tensors converted by the caller) with the shapes the model
adapters return: attentions per layer (B, H, T, T), token order [prefix tokens..., patches...].
"""

from __future__ import annotations

import numpy as np

HEAD_FUSIONS = ("mean", "max", "min")


def cls_attention(attentions: list[np.ndarray], layers: list[int], n_prefix: int,
                  grid: tuple[int, int]) -> np.ndarray:
    """CLS→patch attention (B, L_kept, H, gh, gw), raw (not renormalised after dropping prefix)."""
    gh, gw = grid
    rows = [attentions[layer][:, :, 0, n_prefix:] for layer in layers]
    stacked = np.stack(rows, axis=1)
    batch, n_layers, heads, patches = stacked.shape
    if patches != gh * gw:
        raise ValueError(f"attention has {patches} patch tokens, grid {gh}x{gw} needs {gh * gw}")
    return stacked.reshape(batch, n_layers, heads, gh, gw)


def mean_received_attention(attentions: list[np.ndarray], layers: list[int], n_prefix: int,
                            grid: tuple[int, int]) -> np.ndarray:
    """Attention each patch receives, averaged over heads and all query tokens: (B, L_kept, gh, gw).

    For models without a CLS token there is no single query to read; the mean over queries says which
    patches the whole image attends to.
    """
    gh, gw = grid
    maps = [attentions[layer].mean(axis=(1, 2))[:, n_prefix:] for layer in layers]
    stacked = np.stack(maps, axis=1)
    return stacked.reshape(stacked.shape[0], len(layers), gh, gw)


def rollout(attentions: list[np.ndarray], n_prefix: int, grid: tuple[int, int],
            start_layer: int = 0, head_fusion: str = "mean") -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020): CLS row of prod_l (A_l + I) / rowsum, (B, gh, gw).

    Register tokens stay inside the product (information flows through them) and are dropped only
    when the CLS row is read at the end.
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if not 0 <= start_layer < len(attentions):
        raise ValueError(f"start_layer {start_layer} outside 0..{len(attentions) - 1}")
    fuse = {"mean": np.mean, "max": np.max, "min": np.min}[head_fusion]
    batch, _, tokens, _ = attentions[0].shape
    result = np.broadcast_to(np.eye(tokens), (batch, tokens, tokens)).astype(np.float64)
    identity = np.eye(tokens)
    for layer in range(start_layer, len(attentions)):
        fused = fuse(attentions[layer].astype(np.float64), axis=1) + identity
        fused = fused / fused.sum(axis=-1, keepdims=True)
        result = fused @ result
    gh, gw = grid
    return result[:, 0, n_prefix:].reshape(batch, gh, gw).astype(np.float32)
