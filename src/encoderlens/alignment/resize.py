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
    antialias=False): output pixel centre i samples the input at (i + 0.5) * gh / H - 0.5, clamped to the
    border, so corner pixels align with corner cells, not with the image corners. Written as two small
    matrix products (rows, then columns), which is several times faster than interpolate on the CPU and
    keeps torch out of the analysis jobs. The weights are convex, so non-negative maps stay non-negative
    and a constant map stays constant.
    """
    height, width = as_size(size)
    maps = np.asarray(maps)
    if maps.ndim < 2:
        raise ValueError(f"maps must have shape (..., gh, gw), got {maps.shape}")
    lead, (grid_h, grid_w) = maps.shape[:-2], maps.shape[-2:]
    rows = _bilinear_weights(grid_h, height)
    columns = _bilinear_weights(grid_w, width)
    flat = np.ascontiguousarray(maps, dtype=np.float32).reshape(-1, grid_h, grid_w)
    # columns first as one large product (M*gh, gw) @ (gw, W), then rows per map
    wide = (flat.reshape(-1, grid_w) @ columns.T).reshape(-1, grid_h, width)
    return (rows @ wide).reshape(*lead, height, width)


def _bilinear_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) float32 interpolation weights of PyTorch's align_corners=False rule."""
    source = (np.arange(size_out, dtype=np.float64) + 0.5) * (size_in / size_out) - 0.5
    source = np.maximum(source, 0.0)
    lower = np.minimum(np.floor(source).astype(int), size_in - 1)
    upper = np.minimum(lower + 1, size_in - 1)
    fraction = source - lower
    weights = np.zeros((size_out, size_in), dtype=np.float64)
    np.add.at(weights, (np.arange(size_out), lower), 1.0 - fraction)
    np.add.at(weights, (np.arange(size_out), upper), fraction)
    return weights.astype(np.float32)


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
