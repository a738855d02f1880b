"""Bringing maps and images to the analysis resolution.

Every map is scored at one analysis resolution (H, W), by default the model's input size, so that a
14x14 ViT map, a 16x16 one and a 7x7 Grad-CAM are compared on the same pixels as the expert boxes.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """An int `s` means (s, s); a pair is (H, W)."""
    height, width = (size, size) if np.isscalar(size) else size
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return int(height), int(width)


def upsample(maps: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(..., gh, gw) maps -> (..., H, W) float32 by bilinear interpolation.

    The same numbers as torch.nn.functional.interpolate(mode="bilinear", align_corners=False,
    antialias=False) up to float32 rounding: output pixel centre i samples the input at
    (i + 0.5) * gh / H - 0.5, clamped to the border, so corner pixels align with corner cells, not with
    the image corners. Columns first, then rows; each output value is w0 * a + w1 * b of its two taps
    in float32, one rounding per operation, which the compiled scoring kernel (`kernel.py`)
    reproduces bit for bit when it upsamples maps itself. The weights are convex, so non-negative maps
    stay non-negative and a map already at (H, W) comes back unchanged.
    """
    height, width = as_size(size)
    maps = np.asarray(maps)
    if maps.ndim < 2:
        raise ValueError(f"maps must have shape (..., gh, gw), got {maps.shape}")
    lead, (grid_h, grid_w) = maps.shape[:-2], maps.shape[-2:]
    col_lo, col_hi, col_w0, col_w1 = bilinear_taps(grid_w, width)
    row_lo, row_hi, row_w0, row_w1 = bilinear_taps(grid_h, height)
    flat = np.ascontiguousarray(maps, dtype=np.float32).reshape(-1, grid_h, grid_w)
    wide = flat[:, :, col_lo] * col_w0 + flat[:, :, col_hi] * col_w1                 # (M, gh, W)
    out = np.empty((len(flat), height, width), dtype=np.float32)  # C order, whatever the indexing gives
    np.multiply(wide[:, row_lo, :], row_w0[:, None], out=out)
    out += wide[:, row_hi, :] * row_w1[:, None]
    return out.reshape(*lead, height, width)


def bilinear_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, lower weight, upper weight) per output position, PyTorch's
    align_corners=False rule; weights float32. Where both taps hit the same input (the clamped border)
    the lower one carries the whole weight, 1.0 exactly, and the upper one 0."""
    source = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
    source = np.maximum(source, 0.0)
    lower = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    upper = np.minimum(lower + 1, size_in - 1)
    fraction = source - lower
    same = upper == lower
    lower_weight = np.where(same, 1.0, 1.0 - fraction).astype(np.float32)
    upper_weight = np.where(same, 0.0, fraction).astype(np.float32)
    return lower, upper, lower_weight, upper_weight


def to_gray(image: np.ndarray) -> np.ndarray:
    """(h, w, 3) RGB or (h, w) gray -> (h, w) float32 luma (ITU-R 601-2, PIL's "L" weights)."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (h, w, 3) RGB or (h, w) gray, got {image.shape}")
    return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def resize_gray(gray: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """(h, w) float image -> (H, W) float32 with PIL's bicubic filter, as the models' preprocessing.

    The resize runs on float values (PIL mode "F"), so no rounding to 8 bits; like the models, the
    whole image is resized to the square without cropping.
    """
    height, width = as_size(size)
    image = Image.fromarray(np.ascontiguousarray(gray, dtype=np.float32))  # 2-D float32: mode "F"
    resized = image.resize((width, height), Image.BICUBIC)
    return np.asarray(resized, dtype=np.float32)
