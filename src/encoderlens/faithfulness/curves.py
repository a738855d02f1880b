"""Deletion and insertion curves (Petsiuk et al. 2018, RISE), batched.

A map ranks the cells of the model's patch grid. **Deletion** perturbs the top-ranked cells step by
step and records the explained scalar after each step; **insertion** starts from the fully perturbed
image and restores the top-ranked cells step by step. With `steps` S, step k (0..S) covers
n_k = round(k * C / S) of the C cells (duplicates dropped when S > C), so curve k sits at the fraction
n_k / C and both curves have their end points at fractions 0 and 1. The area under each curve is the
trapezoid rule over those fractions (0..1). Deletion: lower is more faithful (the scalar falls as soon
as the cells the map ranks first are gone); insertion: higher is more faithful.

Orders: `map` (descending map value), `inverse` (ascending), `random` (a seeded permutation per
image, independent of the map: the same for every map of the image). Ties keep the cells' row-major
order (stable sort), as do NaN-free constant maps.

Perturbation (`perturbation`): `mean` (default) fills a cell with the normalisation mean, which is
zero in the normalised pixel space every adapter feeds the model (`FamilyAdapter.preprocess`); `blur`
replaces it by the image blurred with a Gaussian of `blur_sigma` pixels (torchvision's
`gaussian_blur`, kernel 2*ceil(3 sigma)+1, reflect padding), so only high frequencies are removed.

A cell of the grid (gh, gw) covers the pixels [floor(i S/gh), floor((i+1) S/gh)) of an S-pixel
image (a patch of the ViT exactly; a ResNet's feature-map cell likewise). Maps on another grid are
brought to the model's grid first: average pooling where they are finer, nearest where coarser.

Batching: every distinct perturbed input of a chunk of images (all steps of all orders of all maps
of those images; the two end points, and inputs two orders share, such as insertion in the inverse
order and deletion in the map order, are evaluated once) goes through the model in batches of
`batch_size`; building a batch costs one `torch.where` over its pixels. No pass per cell.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

ORDERS = ("map", "random", "inverse")
PERTURBATIONS = ("mean", "blur")
CURVES = ("deletion", "insertion")
DEFAULT_STEPS = 16
DEFAULT_BATCH_SIZE = 64

# Scorer: perturbed pixels (N, 3, S, S) and the index of the image each row perturbs (N,) -> (N,) values
Scorer = Callable[[torch.Tensor, np.ndarray], torch.Tensor]


@dataclass
class Curves:
    """Per curve r (a map and order of one image): deletion and insertion values at `fractions`."""

    fractions: np.ndarray  # (K+1,) removed (deletion) or restored (insertion) share of the cells
    deletion: np.ndarray   # (R, K+1)
    insertion: np.ndarray  # (R, K+1)

    @property
    def deletion_auc(self) -> np.ndarray:
        return area_under(self.deletion, self.fractions)

    @property
    def insertion_auc(self) -> np.ndarray:
        return area_under(self.insertion, self.fractions)


def area_under(values: np.ndarray, fractions: np.ndarray) -> np.ndarray:
    """The trapezoid rule over the fractions, per row."""
    values = np.asarray(values, dtype=np.float64)
    widths = np.diff(np.asarray(fractions, dtype=np.float64))
    return ((values[..., 1:] + values[..., :-1]) * 0.5 * widths).sum(axis=-1)


def step_counts(n_cells: int, steps: int) -> np.ndarray:
    """Cells covered at each step: round(k C / S) for k = 0..S, without repeats."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if n_cells < 1:
        raise ValueError("the grid has no cells")
    return np.unique(np.rint(np.arange(steps + 1) * n_cells / steps).astype(int))


def random_order(n_cells: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n_cells)


def rank_cells(maps: np.ndarray, order: str, seeds: Sequence[int] | None = None) -> np.ndarray:
    """(M, C) cell indices, first-perturbed first, for M maps flattened row-major over the grid."""
    maps = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)
    if order == "map":
        return np.argsort(-maps, axis=1, kind="stable")
    if order == "inverse":
        return np.argsort(maps, axis=1, kind="stable")
    if order == "random":
        if seeds is None or len(seeds) != len(maps):
            raise ValueError("the random order needs one seed per map")
        return np.stack([random_order(maps.shape[1], seed) for seed in seeds]) if len(maps) else \
            np.zeros((0, maps.shape[1]), dtype=int)
    raise ValueError(f"unknown order {order!r}; known: {', '.join(ORDERS)}")


def to_grid(maps: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(M, h, w) maps on the model's grid (M, gh, gw): average pooling from a finer grid, nearest from
    a coarser one; unchanged when already there."""
    maps = np.asarray(maps, dtype=np.float32)
    if maps.shape[1:] == tuple(grid):
        return maps
    tensor = torch.from_numpy(maps)[:, None]
    if maps.shape[1] >= grid[0] and maps.shape[2] >= grid[1]:
        out = torch.nn.functional.adaptive_avg_pool2d(tensor, grid)
    else:
        out = torch.nn.functional.interpolate(tensor, size=grid, mode="nearest")
    return out[:, 0].numpy()


def cell_of_pixel(grid: tuple[int, int], size: int) -> torch.Tensor:
    """(S, S) long: the cell index (row-major) each pixel belongs to."""
    gh, gw = grid
    rows = (torch.arange(size) * gh) // size
    cols = (torch.arange(size) * gw) // size
    return rows[:, None] * gw + cols[None, :]


def perturbed_reference(pixels: torch.Tensor, perturbation: str = "mean", blur_sigma: float = 4.0) -> torch.Tensor:
    """The fully perturbed images (B, 3, S, S) in normalised pixel space."""
    if perturbation == "mean":
        return torch.zeros_like(pixels)
    if perturbation == "blur":
        from torchvision.transforms.functional import gaussian_blur
        if blur_sigma <= 0:
            raise ValueError(f"blur_sigma must be positive, got {blur_sigma}")
        kernel = 2 * math.ceil(3 * blur_sigma) + 1
        kernel = min(kernel, 2 * (min(pixels.shape[-2:]) // 2) - 1)  # reflect padding needs kernel < size
        return gaussian_blur(pixels, [kernel, kernel], [blur_sigma, blur_sigma])
    raise ValueError(f"unknown perturbation {perturbation!r}; known: {', '.join(PERTURBATIONS)}")


class _Inputs:
    """The distinct perturbed inputs of a chunk: (image, set of perturbed cells) -> one row."""

    def __init__(self):
        self.index: dict[tuple[int, bytes], int] = {}
        self.images: list[int] = []
        self.masks: list[np.ndarray] = []

    def add(self, image: int, removed: np.ndarray) -> int:
        key = (image, np.packbits(removed).tobytes())
        row = self.index.get(key)
        if row is None:
            row = self.index[key] = len(self.images)
            self.images.append(image)
            self.masks.append(removed)
        return row


def _evaluate(inputs: _Inputs, pixels: torch.Tensor, reference: torch.Tensor, cells: torch.Tensor,
              scorer: Scorer, batch_size: int) -> np.ndarray:
    values = np.empty(len(inputs.images), dtype=np.float64)
    device = pixels.device
    for first in range(0, len(values), batch_size):
        images = np.asarray(inputs.images[first:first + batch_size])
        removed = torch.from_numpy(np.stack(inputs.masks[first:first + batch_size])).to(device)  # (N, C)
        pixel_mask = removed[:, cells][:, None]                                               # (N, 1, S, S)
        index = torch.from_numpy(images).to(device)
        batch = torch.where(pixel_mask, reference[index], pixels[index])
        with torch.no_grad():
            values[first:first + len(images)] = scorer(batch, images).detach().double().cpu().numpy()
    return values


def deletion_insertion(pixels: torch.Tensor, rankings: np.ndarray, image_of_ranking: np.ndarray,
                       scorer: Scorer, grid: tuple[int, int], steps: int = DEFAULT_STEPS,
                       perturbation: str = "mean", blur_sigma: float = 4.0,
                       batch_size: int = DEFAULT_BATCH_SIZE) -> Curves:
    """Deletion and insertion curves of R rankings of the cells of B images.

    pixels: (B, 3, S, S) preprocessed images. rankings: (R, C) cell indices, first-perturbed first
    (`rank_cells`); image_of_ranking: (R,) which image each ranking belongs to. scorer: the explained
    scalar of a batch of perturbed images (`target_scorer`).
    """
    rankings = np.asarray(rankings)
    image_of_ranking = np.asarray(image_of_ranking, dtype=int)
    n_cells = grid[0] * grid[1]
    if rankings.ndim != 2 or rankings.shape[1] != n_cells:
        raise ValueError(f"rankings must be (R, {n_cells}) for grid {grid}, got {rankings.shape}")
    counts = step_counts(n_cells, steps)
    reference = perturbed_reference(pixels, perturbation, blur_sigma)
    cells = cell_of_pixel(grid, pixels.shape[-1]).to(pixels.device)
    if pixels.shape[-2] != pixels.shape[-1]:
        raise ValueError("images must be square (adapters resize without crop to a square)")
    inputs = _Inputs()
    deletion_rows = np.empty((len(rankings), len(counts)), dtype=int)
    insertion_rows = np.empty_like(deletion_rows)
    for r, (ranking, image) in enumerate(zip(rankings, image_of_ranking)):
        rank = np.empty(n_cells, dtype=int)
        rank[ranking] = np.arange(n_cells)
        for k, count in enumerate(counts):
            top = rank < count
            deletion_rows[r, k] = inputs.add(image, top)
            insertion_rows[r, k] = inputs.add(image, ~top)
    values = _evaluate(inputs, pixels, reference, cells, scorer, batch_size)
    return Curves(counts / n_cells, values[deletion_rows], values[insertion_rows])


def target_scorer(encode: Callable[[torch.Tensor], torch.Tensor], reference_embeddings: torch.Tensor,
                  target: str = "self_similarity", head: torch.nn.Module | None = None,
                  relative: bool = True) -> Scorer:
    """The explained scalar (`attention.targets`) of perturbed images, each row against its own image's
    unperturbed embedding: `self_similarity` (relative: divided by its value at the image, so curves
    start at 1) or `class_score` (a linear head's logit of the image's predicted class)."""
    from encoderlens.attention.targets import ClassScore, SelfSimilarity

    reference_embeddings = reference_embeddings.detach()
    if target == "class_score":
        if head is None:
            raise ValueError("target class_score needs a classification head")
        classes = ClassScore(head, reference_embeddings).classes
    elif target != "self_similarity":
        raise ValueError(f"unknown target {target!r}; known: self_similarity, class_score")

    def score(batch: torch.Tensor, images: np.ndarray) -> torch.Tensor:
        embeddings = encode(batch)
        rows = torch.as_tensor(images, dtype=torch.long, device=reference_embeddings.device)
        if target == "class_score":
            return ClassScore(head, reference_embeddings[rows], classes[rows.cpu()].tolist())(embeddings)
        return SelfSimilarity(reference_embeddings[rows], relative=relative)(embeddings)

    return score
