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


# ---- per-layer reducers: the same maps, computed as each layer's attention is produced ----------
class LayerReducer:
    """What one map method keeps of each layer's attention while the forward pass runs.

    Extraction calls `layer(index, attention)` once per layer in forward order, with that layer's
    (B, H, T, T) softmax attention in the dtype the model ran in, on its device, and reads `result()`
    (the batch's maps, on the device) once the pass is over. A reducer keeps only what its method
    stores, so no list of every layer's T x T attention is ever held (`extract.run`).
    """

    def layer(self, index: int, attention: torch.Tensor) -> None:
        raise NotImplementedError

    def result(self) -> torch.Tensor:
        raise NotImplementedError


class ClsRows(LayerReducer):
    """`cls_attention` layer by layer: the kept layers' CLS→patch rows, in the storage dtype."""

    def __init__(self, layers: list[int], n_prefix: int, grid: tuple[int, int], dtype: torch.dtype):
        self.layers, self.n_prefix, self.grid, self.dtype = list(layers), n_prefix, grid, dtype
        self.rows: dict[int, torch.Tensor] = {}

    def layer(self, index, attention):
        if index in self.layers:
            # float32 first, as the full path does, then one rounding to the storage dtype; a copy
            # either way, so that no view keeps the layer's (B, H, T, T) attention alive
            self.rows[index] = attention[:, :, 0, self.n_prefix:].float().to(self.dtype, copy=True)

    def result(self):
        missing = sorted(set(self.layers) - set(self.rows))
        if missing:
            raise RuntimeError(f"CLS attention: layers {missing} never reported their attention")
        stacked = torch.stack([self.rows[layer] for layer in self.layers], dim=1)  # (B, L_kept, H, P)
        batch, n_layers, heads, patches = stacked.shape
        gh, gw = self.grid
        if patches != gh * gw:
            raise ValueError(f"attention has {patches} patch tokens, grid {gh}x{gw} needs {gh * gw}")
        return stacked.reshape(batch, n_layers, heads, gh, gw)


class MeanReceivedRows(LayerReducer):
    """`mean_received_attention` layer by layer: the kept layers' mean received vectors."""

    def __init__(self, layers: list[int], n_prefix: int, grid: tuple[int, int], dtype: torch.dtype):
        self.layers, self.n_prefix, self.grid, self.dtype = list(layers), n_prefix, grid, dtype
        self.rows: dict[int, torch.Tensor] = {}

    def layer(self, index, attention):
        if index in self.layers:
            self.rows[index] = attention.mean(dim=(1, 2), dtype=torch.float32)[:, self.n_prefix:].to(self.dtype)

    def result(self):
        missing = sorted(set(self.layers) - set(self.rows))
        if missing:
            raise RuntimeError(f"mean received attention: layers {missing} never reported their attention")
        maps = torch.stack([self.rows[layer] for layer in self.layers], dim=1)
        return maps.reshape(maps.shape[0], len(self.layers), *self.grid)


class RolloutProduct(LayerReducer):
    """`rollout` layer by layer: the running product P_l = N_l P_(l-1) of the normalised, head-fused
    layers from `start_layer` on, one (B, T, T) matrix, read at the CLS row at the end. Same dtype rule
    as `rollout` (float64 on the CPU, float32 on accelerators); equal to it up to the order of the
    sums (the full path carries the CLS row from the last layer down, this one the matrix upwards)."""

    def __init__(self, n_layers: int, n_prefix: int, grid: tuple[int, int], start_layer: int = 0,
                 head_fusion: str = "mean", dtype: torch.dtype | None = None):
        if head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
        if not 0 <= start_layer < n_layers:
            raise ValueError(f"start_layer {start_layer} outside 0..{n_layers - 1}")
        self.n_layers, self.n_prefix, self.grid = n_layers, n_prefix, grid
        self.start_layer, self.head_fusion, self.dtype = start_layer, head_fusion, dtype
        self.product: torch.Tensor | None = None
        self.seen = 0

    def layer(self, index, attention):
        if index < self.start_layer:
            return
        dtype = self.dtype or (torch.float64 if attention.device.type == "cpu" else torch.float32)
        # the hooks run inside the forward pass's autocast, which would run bmm in half precision
        with torch.autocast(attention.device.type, enabled=False):
            if self.head_fusion == "mean":
                fused = attention.mean(dim=1, dtype=torch.float32)
            else:
                fused = _fuse_heads(attention, self.head_fusion).float()
            fused = fused.to(dtype)
            fused.diagonal(dim1=-2, dim2=-1).add_(1.0)
            fused.div_(fused.sum(dim=-1, keepdim=True))
            self.product = fused if self.product is None else torch.bmm(fused, self.product)
        self.seen += 1

    def result(self):
        if self.product is None or self.seen != self.n_layers - self.start_layer:
            raise RuntimeError(f"rollout: {self.seen} of {self.n_layers - self.start_layer} layers reported "
                               f"their attention")
        batch = self.product.shape[0]
        return self.product[:, 0, self.n_prefix:].reshape(batch, *self.grid).float()
