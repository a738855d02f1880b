"""Map methods: one small class per method over one shared base, registered in `METHODS`.

A method is everything about one kind of map in one place: which families it applies to
(`applies(traits)`, from the torch-free traits table), how extraction computes it for a batch
(`compute`: from the shared forward pass, or in a pass of its own with gradients; `reducer`: the same
maps computed layer by layer while the forward pass runs, see below), the attention.h5
dataset it fills with its per-image shape and on-disk dtype, and how scoring reads it back (`read`).
Extraction, scoring, statistics, figures and the dashboard loop over the registry; none of them
names a method. A new method is a class here (its computation in a module of its own when it is
more than a few lines) and its name in the config schema's `$defs/map_method`.

| name        | dataset    | per image             | dtype   | applies to                  | variants read          |
|-------------|------------|-----------------------|---------|-----------------------------|------------------------|
| `cls`       | /cls       | (L_kept, H, gh, gw)   | float16 | attention, CLS token        | per kept layer: every  |
|             |            |                       |         |                             | head, then their mean  |
| `rollout`   | /rollout   | (gh, gw)              | float32 | attention, CLS token        | one                    |
| `mean`      | /mean      | (L_kept, gh, gw)      | float16 | attention, no CLS token     | per kept layer         |
| `map_probe` | /map_probe | (H, gh, gw)           | float16 | attention-pooling head      | every head, their mean |
| `gradcam`   | /gradcam   | (gh, gw)              | float32 | CNNs (no attention)         | one                    |
| `gradcam`*  | /gradcam   | (gh, gw)              | float32 | ViTs (attention)            | one                    |
| `chefer`*   | /chefer    | (gh, gw)              | float32 | attention, CLS token        | one                    |
| `ig`*       | /ig        | (gh, gw)              | float32 | every family                | one                    |

*: gradient methods, each a pass of its own with a backward pass (Integrated Gradients one per
step), explaining the run's `target` (`attention.targets.ExplainedScalar`, built once per run: each
image's projection onto its own unperturbed embedding, or a fine-tuned variant's head's logit of its
predicted class). They are not `default`: extraction computes them only when the
model's config lists them (`map_methods`, see `methods_for`). Chefer's relevance is read at the CLS
row, so SigLIP (no CLS) has none: its analogue is the MAP head's probe, already stored as `map_probe`.

Reading: `store` is an open h5py.File or any mapping of dataset names to arrays, `rows` a slice or
increasing indices of images; the result is `MethodMaps`, the maps on the patch grid (n_images, V, gh,
gw) float32 with V variants labelled by layer and head. `layer` is the layer index from /layers, or -1
where a method is not per layer; `head` is the head index as a string, "mean" for the mean over heads,
or "" where a method has no heads. CLS maps are read raw (not renormalised after dropping prefix
tokens): every score is invariant to a map's scale. Upsampling to the analysis resolution and scoring
are the same for every method (`alignment.resize.upsample`, `alignment.scores.score_maps`).

Memory: a method that reads the attention (`needs_attentions`) may also offer a `reducer()`, an
`attention.maps.LayerReducer` that receives each layer's (B, H, T, T) attention as the layer finishes
and keeps only what the method stores (the kept layers' CLS rows, the mean received vectors, the
rollout's running (B, T, T) product). When every such method of a family has one and the adapter
exposes its attention modules (`FamilyAdapter.attention_modules`), extraction runs the forward pass
without `output_attentions` and feeds the reducers from hooks, so the batch never holds all layers'
T x T maps; otherwise it falls back to `compute` on the full list (`ForwardPass.attentions`). Both give
the same maps (tests/test_attention_reducers.py). Methods with passes of their own (Grad-CAM) need
neither.

This module imports neither torch nor a model: the rules and the scoring jobs read it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from encoderlens.models.families import FamilyTraits, family_traits

if TYPE_CHECKING:
    import torch

    from encoderlens.models.base import EncoderOutput, FamilyAdapter

NO_LAYER = -1


@dataclass
class MethodMaps:
    maps: np.ndarray   # (n_images, V, gh, gw) float32
    layer: np.ndarray  # (V,) int
    head: np.ndarray   # (V,) str


@dataclass
class ForwardPass:
    """One batch through the adapter without gradients, shared by the methods that read it."""

    pixels: "torch.Tensor"   # (B, 3, S, S) preprocessed, on the model's device
    output: "EncoderOutput"

    @cached_property
    def attentions(self) -> list["torch.Tensor"]:
        """Per layer (B, H, T, T) in float32 (the forward may have run in half precision)."""
        return [a.float() for a in self.output.attentions]


class MapMethod:
    """The shared base. Class attributes describe the method; an instance is bound to one extraction
    run (adapter, settings, kept layers), so that a method can prepare what its batches share."""

    name: ClassVar[str]                  # the `method` value in alignment.parquet and the config
    dataset: ClassVar[str]               # the attention.h5 dataset it fills
    dtype: ClassVar[type] = np.float32   # on disk
    needs_attentions: ClassVar[bool] = False  # reads the shared forward pass's attentions
    default: ClassVar[bool] = True       # computed unless the config chooses the methods
    # what the method adds to an image's extraction, in plain forward passes of the model (measured on
    # ViT-B/16 and the demo models, benchmarks/attribution_cost.py); read by the preflight's estimate
    extra_forwards: ClassVar[float] = 0.0

    @classmethod
    def cost(cls, settings: Mapping) -> float:
        """Forward passes this method adds per image under a model's config entry `settings`."""
        return cls.extra_forwards

    def __init__(self, adapter: "FamilyAdapter", settings: Any, layers: list[int], target=None):
        self.adapter = adapter
        self.info = adapter.info
        self.settings = settings
        self.layers = list(layers)
        self.target = target  # the scalar gradient methods explain; None: attention.targets' default

    @classmethod
    def applies(cls, traits: FamilyTraits) -> bool:
        raise NotImplementedError

    @property
    def grid(self) -> tuple[int, int]:
        return self.info.grid_h, self.info.grid_w

    def shape(self) -> tuple[int, ...]:
        """The shape of one image's maps as stored."""
        raise NotImplementedError

    def compute(self, forward: ForwardPass) -> np.ndarray:
        """(B, *shape()) float32 maps of one batch."""
        raise NotImplementedError

    def reducer(self):
        """A fresh `attention.maps.LayerReducer` computing this batch's maps from each layer's attention
        as the forward pass produces it, or None (then `compute` reads the full forward pass)."""
        return None

    @classmethod
    def read(cls, store: Mapping, rows=slice(None)) -> MethodMaps:
        return _single(_read(store, cls.dataset, rows))


class ClsAttention(MapMethod):
    """The CLS token's attention to every patch, per kept layer and head, raw."""

    name = dataset = "cls"
    dtype = np.float16
    needs_attentions = True

    @classmethod
    def applies(cls, traits):
        return traits.attention and traits.has_cls

    def shape(self):
        return (len(self.layers), self.info.num_heads, *self.grid)

    def compute(self, forward):
        from encoderlens.attention.maps import cls_attention
        return _numpy(cls_attention(forward.attentions, self.layers, self.info.n_prefix_tokens, self.grid))

    def reducer(self):
        from encoderlens.attention.maps import ClsRows
        return ClsRows(self.layers, self.info.n_prefix_tokens, self.grid, _torch_dtype(self.dtype))

    @classmethod
    def read(cls, store, rows=slice(None)):
        maps = _read(store, cls.dataset, rows)                              # (n, L, H, gh, gw)
        n, n_layers, n_heads, gh, gw = maps.shape
        with_mean = np.concatenate([maps, maps.mean(axis=2, keepdims=True)], axis=2)
        heads = [str(h) for h in range(n_heads)] + ["mean"]
        return MethodMaps(with_mean.reshape(n, n_layers * (n_heads + 1), gh, gw),
                          np.repeat(_layers(store, n_layers), n_heads + 1), np.array(heads * n_layers))


class Rollout(MapMethod):
    """Attention rollout (Abnar & Zuidema 2020) read at the CLS row."""

    name = dataset = "rollout"
    needs_attentions = True

    @classmethod
    def applies(cls, traits):
        return traits.attention and traits.has_cls

    def shape(self):
        return self.grid

    def compute(self, forward):
        from encoderlens.attention.maps import rollout
        return _numpy(rollout(forward.attentions, self.info.n_prefix_tokens, self.grid,
                              self.settings.rollout_start_layer, self.settings.rollout_head_fusion))

    def reducer(self):
        from encoderlens.attention.maps import RolloutProduct
        return RolloutProduct(self.info.num_layers, self.info.n_prefix_tokens, self.grid,
                              self.settings.rollout_start_layer, self.settings.rollout_head_fusion)


class MeanReceived(MapMethod):
    """Attention each patch receives, averaged over heads and queries: maps of models without CLS."""

    name = dataset = "mean"
    dtype = np.float16
    needs_attentions = True

    @classmethod
    def applies(cls, traits):
        return traits.attention and not traits.has_cls

    def shape(self):
        return (len(self.layers), *self.grid)

    def compute(self, forward):
        from encoderlens.attention.maps import mean_received_attention
        return _numpy(mean_received_attention(forward.attentions, self.layers, self.info.n_prefix_tokens,
                                              self.grid))

    def reducer(self):
        from encoderlens.attention.maps import MeanReceivedRows
        return MeanReceivedRows(self.layers, self.info.n_prefix_tokens, self.grid, _torch_dtype(self.dtype))

    @classmethod
    def read(cls, store, rows=slice(None)):
        maps = _read(store, cls.dataset, rows)                              # (n, L, gh, gw)
        return MethodMaps(maps, _layers(store, maps.shape[1]), np.array(["mean"] * maps.shape[1]))


class MapProbe(MapMethod):
    """The attention-pooling head's probe query over the patches, per head (SigLIP)."""

    name = dataset = "map_probe"
    dtype = np.float16

    @classmethod
    def applies(cls, traits):
        return traits.pooling == "map"

    def shape(self):
        return (self.info.num_heads, *self.grid)

    def compute(self, forward):
        probe = _numpy(forward.output.map_probe)                            # (B, H, P)
        return probe.reshape(probe.shape[0], probe.shape[1], *self.grid)

    @classmethod
    def read(cls, store, rows=slice(None)):
        maps = _read(store, cls.dataset, rows)                              # (n, H, gh, gw)
        n_heads = maps.shape[1]
        return MethodMaps(np.concatenate([maps, maps.mean(axis=1, keepdims=True)], axis=1),
                          np.full(n_heads + 1, NO_LAYER),
                          np.array([str(h) for h in range(n_heads)] + ["mean"]))


class GradCam(MapMethod):
    """Grad-CAM (pytorch-grad-cam) on the last feature map of a CNN, for the checkpoint's classifier:
    a pass of its own with gradients (see `attention.gradcam`)."""

    name = dataset = "gradcam"
    extra_forwards = 1.7  # 2.7x the forward on the demo ResNet

    @classmethod
    def applies(cls, traits):
        return not traits.attention

    def __init__(self, adapter, settings, layers, target=None):
        super().__init__(adapter, settings, layers, target)
        from encoderlens.attention.gradcam import classifier_logits
        self.logits_model = classifier_logits(adapter)  # once per run, reused by every batch

    def shape(self):
        return self.grid

    def compute(self, forward):
        from encoderlens.attention.gradcam import gradcam_maps
        return gradcam_maps(self.adapter, forward.pixels, self.settings.gradcam_target_class,
                            self.logits_model)


class GradCamViT(MapMethod):
    """Grad-CAM (pytorch-grad-cam) on the last block's first norm of a ViT, patch tokens reshaped to
    the grid, explaining the run's target: a pass of its own (see `attention.gradcam_vit`)."""

    name = dataset = "gradcam"
    default = False
    extra_forwards = 3.4  # 4.4x the forward on ViT-B/16

    @classmethod
    def applies(cls, traits):
        return traits.attention

    def shape(self):
        return self.grid

    def compute(self, forward):
        from encoderlens.attention.gradcam_vit import vit_gradcam_maps
        return vit_gradcam_maps(self.adapter, forward.pixels, self.target)


class Chefer(MapMethod):
    """Chefer et al. 2021 gradient-weighted attention relevance read at the CLS row, explaining the
    run's target: a pass of its own (see `attention.chefer`)."""

    name = dataset = "chefer"
    default = False
    extra_forwards = 1.2  # 2.2x the forward on ViT-B/16

    @classmethod
    def applies(cls, traits):
        return traits.attention and traits.has_cls

    def shape(self):
        return self.grid

    def compute(self, forward):
        from encoderlens.attention.chefer import chefer_maps
        return chefer_maps(self.adapter, forward.pixels, self.target)


class IntegratedGradients(MapMethod):
    """Integrated Gradients (captum) of the run's target, |attribution| summed per patch: a pass of
    its own per step (see `attention.integrated_gradients`)."""

    name = dataset = "ig"
    default = False
    default_steps = 32       # ig.steps when the config gives none (the schema's default too)
    forwards_per_step = 2.2  # a forward and a backward per point: 72x the forward at 32 steps, ViT-B/16

    @classmethod
    def cost(cls, settings):
        return cls.forwards_per_step * (settings.get("ig") or {}).get("steps", cls.default_steps)

    @classmethod
    def applies(cls, traits):
        return True

    def shape(self):
        return self.grid

    def compute(self, forward):
        from encoderlens.attention.integrated_gradients import ig_maps
        return ig_maps(self.adapter, forward.pixels, self.settings.ig_steps, self.settings.ig_baseline,
                       self.target)


# registry order is the order of methods in every table and view
METHODS: tuple[type[MapMethod], ...] = (ClsAttention, Rollout, MeanReceived, MapProbe, GradCam, GradCamViT,
                                        Chefer, IntegratedGradients)
METHOD_NAMES: tuple[str, ...] = tuple(dict.fromkeys(method.name for method in METHODS))
ALL_METHODS = "all"


def extraction_cost(family: str | FamilyTraits, settings: Mapping) -> float:
    """An image's extraction under a model's config entry, in plain forward passes: the forward (with
    the forward-pass maps) plus what each chosen gradient method adds."""
    chosen = methods_for(family, settings.get("map_methods"))
    return 1.0 + sum(method.cost(settings) for method in chosen)


def methods_for(family: str | FamilyTraits, chosen: str | list[str] | None = None) -> list[type[MapMethod]]:
    """The methods extraction computes for a family (a name or its traits), in registry order: of
    those that apply to it, the `default` ones (chosen None), all of them (chosen "all"), or those
    named in `chosen` (a list of method names)."""
    traits = family_traits(family) if isinstance(family, str) else family
    applying = [method for method in METHODS if method.applies(traits)]
    if chosen is None:
        return [method for method in applying if method.default]
    if chosen == ALL_METHODS:
        return applying
    if isinstance(chosen, str):
        raise ValueError(f"map methods: {chosen!r} is neither {ALL_METHODS!r} nor a list of method names")
    unknown = sorted(set(chosen) - set(METHOD_NAMES))
    if unknown:
        raise ValueError(f"unknown map method(s) {unknown}; known: {', '.join(METHOD_NAMES)}")
    return [method for method in applying if method.name in chosen]


def method_class(name: str) -> type[MapMethod]:
    """The registered method called `name` (methods sharing a name share its dataset and reader)."""
    for method in METHODS:
        if method.name == name:
            return method
    raise ValueError(f"unknown attention method {name!r}; known: {', '.join(METHOD_NAMES)}")


def available_methods(store: Mapping) -> list[str]:
    """The registered methods whose dataset the file holds, in registry order."""
    return [name for name in METHOD_NAMES if method_class(name).dataset in store]


def read_method(name: str, store: Mapping, rows=slice(None)) -> MethodMaps:
    return method_class(name).read(store, rows)


def _numpy(tensor) -> np.ndarray:
    return tensor.detach().float().cpu().numpy()


def _torch_dtype(dtype):
    import torch
    return torch.from_numpy(np.zeros(0, dtype=dtype)).dtype


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
