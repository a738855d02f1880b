"""Attention methods: thin readers of attention.h5, registered by name.

Each reader takes `store` (an open h5py.File, or any mapping of dataset names to arrays) and `rows`
(a slice or increasing indices of images) and returns `MethodMaps`: the maps on the patch grid,
(n_images, V, gh, gw) float32, with V variants labelled by layer and head. Upsampling to the analysis
resolution and scoring are the same for every method (`resize.upsample`, `scores.score_maps`).

| name        | dataset        | variants                                                  |
|-------------|----------------|-----------------------------------------------------------|
| `cls`       | /cls           | per kept layer: every head, then the mean over heads      |
| `rollout`   | /rollout       | one                                                       |
| `mean`      | /mean          | per kept layer (already averaged over heads and queries)  |
| `map_probe` | /map_probe     | every head of SigLIP's pooling head, then their mean      |
| `gradcam`   | /gradcam       | one                                                       |

Labels: `layer` is the layer index from /layers, or -1 where a method is not per layer; `head` is the
head index as a string, "mean" for the mean over heads, or "" where a method has no heads. CLS maps are
read raw (not renormalised after dropping prefix tokens): every score is invariant to a map's scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

NO_LAYER = -1


@dataclass
class MethodMaps:
    maps: np.ndarray   # (n_images, V, gh, gw) float32
    layer: np.ndarray  # (V,) int
    head: np.ndarray   # (V,) str


def read_cls(store: Mapping, rows=slice(None)) -> MethodMaps:
    cls = _read(store, "cls", rows)                                    # (n, L, H, gh, gw)
    n, n_layers, n_heads, gh, gw = cls.shape
    with_mean = np.concatenate([cls, cls.mean(axis=2, keepdims=True)], axis=2)
    heads = [str(h) for h in range(n_heads)] + ["mean"]
    return MethodMaps(with_mean.reshape(n, n_layers * (n_heads + 1), gh, gw),
                      np.repeat(_layers(store, n_layers), n_heads + 1), np.array(heads * n_layers))


def read_rollout(store: Mapping, rows=slice(None)) -> MethodMaps:
    return _single(_read(store, "rollout", rows))


def read_mean(store: Mapping, rows=slice(None)) -> MethodMaps:
    mean = _read(store, "mean", rows)                                  # (n, L, gh, gw)
    return MethodMaps(mean, _layers(store, mean.shape[1]), np.array(["mean"] * mean.shape[1]))


def read_map_probe(store: Mapping, rows=slice(None)) -> MethodMaps:
    probe = _read(store, "map_probe", rows)                            # (n, H, gh, gw)
    n_heads = probe.shape[1]
    return MethodMaps(np.concatenate([probe, probe.mean(axis=1, keepdims=True)], axis=1),
                      np.full(n_heads + 1, NO_LAYER), np.array([str(h) for h in range(n_heads)] + ["mean"]))


def read_gradcam(store: Mapping, rows=slice(None)) -> MethodMaps:
    return _single(_read(store, "gradcam", rows))


METHODS: dict[str, Callable[..., MethodMaps]] = {
    "cls": read_cls,
    "rollout": read_rollout,
    "mean": read_mean,
    "map_probe": read_map_probe,
    "gradcam": read_gradcam,
}


def available_methods(store: Mapping) -> list[str]:
    """The registered methods whose dataset the file holds, in registry order."""
    return [name for name in METHODS if name in store]


def read_method(name: str, store: Mapping, rows=slice(None)) -> MethodMaps:
    try:
        reader = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown attention method {name!r}; known: {', '.join(METHODS)}") from None
    return reader(store, rows)


def _read(store: Mapping, name: str, rows) -> np.ndarray:
    if name not in store:
        raise KeyError(f"attention file has no /{name} dataset")
    if isinstance(rows, (int, np.integer)):
        rows = slice(int(rows), int(rows) + 1)
    return np.asarray(store[name][rows], dtype=np.float32)


def _layers(store: Mapping, count: int) -> np.ndarray:
    layers = np.asarray(store["layers"][()], dtype=int) if "layers" in store else np.arange(count)
    if len(layers) != count:
        raise ValueError(f"/layers lists {len(layers)} layers, the maps have {count}")
    return layers


def _single(maps: np.ndarray) -> MethodMaps:
    return MethodMaps(maps[:, None], np.array([NO_LAYER]), np.array([""]))
