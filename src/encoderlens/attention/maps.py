"""Attention maps on the patch grid, computed from raw per-layer attention tensors.

Every function takes the attentions the model adapters return (per layer (B, H, T, T) torch tensors,
token order [prefix tokens..., patches...]) and runs on their device, so that only the small maps,
never the T x T matrices, are copied off a GPU.
"""

from __future__ import annotations

import torch

HEAD_FUSIONS = ("mean", "max", "min")


def cls_attention(attentions: list[torch.Tensor], layers: list[int], n_prefix: int,
                  grid: tuple[int, int]) -> torch.Tensor:
    """CLS→patch attention (B, L_kept, H, gh, gw), raw (not renormalised after dropping prefix)."""
    gh, gw = grid
    stacked = torch.stack([attentions[layer][:, :, 0, n_prefix:] for layer in layers], dim=1)
    batch, n_layers, heads, patches = stacked.shape
    if patches != gh * gw:
        raise ValueError(f"attention has {patches} patch tokens, grid {gh}x{gw} needs {gh * gw}")
    return stacked.reshape(batch, n_layers, heads, gh, gw)


def mean_received_attention(attentions: list[torch.Tensor], layers: list[int], n_prefix: int,
                            grid: tuple[int, int]) -> torch.Tensor:
    """Attention each patch receives, averaged over heads and all query tokens: (B, L_kept, gh, gw).

    For models without a CLS token there is no single query to read; the mean over queries says which
    patches the whole image attends to.
    """
    gh, gw = grid
    maps = torch.stack([attentions[layer].mean(dim=(1, 2))[:, n_prefix:] for layer in layers], dim=1)
    return maps.reshape(maps.shape[0], len(layers), gh, gw)


def rollout(attentions: list[torch.Tensor], n_prefix: int, grid: tuple[int, int],
            start_layer: int = 0, head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout (Abnar & Zuidema 2020): CLS row of prod_l (A_l + I) / rowsum, (B, gh, gw).

    The product runs from the last layer down to `start_layer`. Register tokens stay inside it
    (information flows through them) and are dropped only when the CLS row is read at the end. Only
    the CLS row is needed, so it is carried as a row vector through the layers: O(L T^2), not O(L T^3).
    """
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    if not 0 <= start_layer < len(attentions):
        raise ValueError(f"start_layer {start_layer} outside 0..{len(attentions) - 1}")
    first = attentions[0]
    # float64 is free on the CPU at O(L T^2); accelerators (MPS has no float64) use float32
    dtype = torch.float64 if first.device.type == "cpu" else torch.float32
    batch, _, tokens, _ = first.shape
    identity = torch.eye(tokens, dtype=dtype, device=first.device)
    row = None
    for layer in range(len(attentions) - 1, start_layer - 1, -1):
        # fusing heads before the cast keeps the float64 work to one (B, T, T) matrix per layer
        fused = _fuse_heads(attentions[layer], head_fusion).to(dtype) + identity
        row_sums = fused.sum(dim=-1)
        if row is None:
            row = fused[:, 0] / row_sums[:, :1]
        else:
            # row @ (diag(1/r) F) == (row / r) @ F
            row = torch.bmm((row / row_sums).unsqueeze(1), fused).squeeze(1)
    gh, gw = grid
    return row[:, n_prefix:].reshape(batch, gh, gw).float()


def _fuse_heads(attention: torch.Tensor, head_fusion: str) -> torch.Tensor:
    if head_fusion == "mean":
        return attention.mean(dim=1)
    if head_fusion == "max":
        return attention.amax(dim=1)
    return attention.amin(dim=1)
