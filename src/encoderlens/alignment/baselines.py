"""Baseline maps, scored through the same `score_maps` as the attention methods.

Every baseline has the same signature, `baseline(image, size, seed=0, draws=1) -> (R, H, W) float32`,
and is registered by name in BASELINES so that the config can name it and tests can loop over it:
- "random": R maps of i.i.d. uniform [0, 1) pixels at the analysis resolution (seeded); their scores
  are averaged over the R draws (`score_baseline`).
- "gaussian": one centred isotropic Gaussian, sigma = max(H, W) / 4 pixels.
- "sobel": one Sobel edge-magnitude map of the image: luma, resized to (H, W) as the models resize,
  then sqrt(sobel_x^2 + sobel_y^2) (scipy.ndimage.sobel, reflecting borders). A featureless image
  has no edges: its map is all zero and is flagged unscorable, not scored.
"""

from __future__ import annotations

import hashlib
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage

from .resize import as_size, resize_gray, to_gray
from .scores import DEFAULT_TOLERANCE, Scores, score_maps
from .thresholds import DEFAULT_THRESHOLDS

DEFAULT_DRAWS = 16


def uniform_random(image: np.ndarray | None, size, seed: int = 0, draws: int = DEFAULT_DRAWS) -> np.ndarray:
    """`draws` maps of i.i.d. uniform [0, 1) values; the image is not used."""
    if draws < 1:
        raise ValueError(f"draws must be at least 1, got {draws}")
    return np.random.default_rng(seed).random((draws, *as_size(size)), dtype=np.float32)


def centred_gaussian(image: np.ndarray | None, size, seed: int = 0, draws: int = 1) -> np.ndarray:
    """exp(-d^2 / (2 sigma^2)), d the distance of each pixel centre from the image centre."""
    height, width = as_size(size)
    sigma = max(height, width) / 4
    rows = np.arange(height) + 0.5 - height / 2
    cols = np.arange(width) + 0.5 - width / 2
    squared = rows[:, None] ** 2 + cols[None, :] ** 2
    return np.exp(-squared / (2 * sigma**2)).astype(np.float32)[None]


def sobel_edges(image: np.ndarray, size, seed: int = 0, draws: int = 1) -> np.ndarray:
    """Sobel gradient magnitude of the image's luma at the analysis resolution."""
    if image is None:
        raise ValueError("the sobel baseline needs the image")
    gray = resize_gray(to_gray(image), size).astype(np.float64)
    magnitude = np.hypot(ndimage.sobel(gray, axis=0), ndimage.sobel(gray, axis=1))
    return magnitude.astype(np.float32)[None]


BaselineFn = Callable[..., np.ndarray]
BASELINES: dict[str, BaselineFn] = {
    "random": uniform_random,
    "gaussian": centred_gaussian,
    "sobel": sobel_edges,
}


def baseline_maps(name: str, image: np.ndarray | None, size, seed: int = 0,
                  draws: int = DEFAULT_DRAWS) -> np.ndarray:
    """(R, H, W) maps of the baseline called `name`."""
    try:
        baseline = BASELINES[name]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}") from None
    return baseline(image, size, seed=seed, draws=draws)


def score_baseline(name: str, mask: np.ndarray, image: np.ndarray | None = None, seed: int = 0,
                   draws: int = DEFAULT_DRAWS, thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
                   tolerance: float = DEFAULT_TOLERANCE) -> Scores:
    """One row of scores: the baseline's maps at the mask's resolution, scored, averaged over draws."""
    maps = baseline_maps(name, image, np.shape(mask), seed=seed, draws=draws)
    return score_maps(maps, mask, thresholds, tolerance).average()


def image_seed(seed: int, image_id: str) -> int:
    """A per-image seed that does not depend on the process or the order images are scored in."""
    digest = hashlib.sha256(f"{seed}:{image_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")
