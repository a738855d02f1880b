"""The one interface every model family implements.

Downstream code (extraction, attention methods, probes) sees only `EncoderOutput` arrays: which tokens
are prefix tokens, how a family is loaded, preprocessed or asked for attention stays in its adapter.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator

import numpy as np
import torch
from PIL import Image

from encoderlens.data.images import as_rgb
from .families import FamilyTraits, family_traits

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class EncoderOutput:
    """One batch through an encoder; every tensor is on the CPU-or-device the model ran on.

    cls: (B, D) the pooled image embedding the family defines (CLS, MAP head, global pool).
    mean: (B, D) mean of the patch tokens (prefix tokens excluded).
    cls_raw: (B, D) last layer's CLS token before any final norm or pooling head; None if no CLS.
    hidden_states: per layer (B, T, D) token states, only when asked for.
    attentions: per layer (B, H, T, T) softmax attention, T = n_prefix_tokens + P; None for CNNs.
    map_probe: (B, H, P) the pooling head's query attention over patches (SigLIP), else None.
    """

    cls: torch.Tensor
    mean: torch.Tensor
    cls_raw: torch.Tensor | None = None
    hidden_states: list[torch.Tensor] | None = None
    attentions: list[torch.Tensor] | None = None
    map_probe: torch.Tensor | None = None


@dataclass
class ModelInfo:
    """Static facts about a loaded model that every HDF5 file records."""

    family: str
    image_size: int
    patch_size: int
    grid_h: int
    grid_w: int
    n_prefix_tokens: int
    num_layers: int
    num_heads: int
    hidden_size: int
    has_cls: bool
    extra: dict = field(default_factory=dict)


class FamilyAdapter:
    """Base class: loading, preprocessing and a forward pass that returns `EncoderOutput`.

    Subclasses set `family`, implement `load_model`, `build_tiny`, `info` and `encode`, and may override
    the normalisation defaults. Images are always resized to a square without cropping, so a box in
    full-image coordinates maps onto the patch grid by scaling alone.
    """

    family: ClassVar[str] = ""
    default_mean: ClassVar[tuple[float, float, float]] = IMAGENET_MEAN
    default_std: ClassVar[tuple[float, float, float]] = IMAGENET_STD
    # from the family's row of the traits table (`families.FAMILIES`), set when a subclass names its family
    traits: ClassVar[FamilyTraits]
    hub_ids: ClassVar[tuple[str, ...]] = ()
    has_cls: ClassVar[bool] = False
    # the attention projections LoRA adapts (peft `target_modules`); empty where LoRA does not apply
    lora_target_modules: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "family" not in cls.__dict__:
            return
        written = sorted({"traits", "hub_ids", "has_cls", "lora_target_modules"} & set(cls.__dict__))
        if written:
            raise TypeError(f"{cls.__name__} sets {written}: they come from the traits table (families.py)")
        cls.traits = family_traits(cls.family)
        cls.hub_ids = cls.traits.hub_ids
        cls.has_cls = cls.traits.has_cls
        cls.lora_target_modules = cls.traits.lora_targets

    def __init__(self, model: torch.nn.Module, info: ModelInfo, mean, std):
        self.model = model.eval()
        self.info = info
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_folder(cls, folder: str | Path, image_size: int | None = None) -> "FamilyAdapter":
        """Load a checkpoint folder (hub snapshot or tiny build) through `from_pretrained`."""
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"model folder {folder} does not exist")
        model = cls.load_model(folder)
        info = cls.describe(model, image_size)
        mean, std = read_normalisation(folder, cls.default_mean, cls.default_std)
        return cls(model, info, mean, std)

    @classmethod
    def load_model(cls, folder: Path) -> torch.nn.Module:
        raise NotImplementedError

    @classmethod
    def describe(cls, model: torch.nn.Module, image_size: int | None) -> ModelInfo:
        raise NotImplementedError

    @classmethod
    def build_tiny(cls, folder: str | Path, seed: int = 0, **overrides) -> None:
        """Write a random-initialised small checkpoint of this family with `save_pretrained`."""
        raise NotImplementedError

    # ---- use ----------------------------------------------------------------------------------
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """PIL image -> (3, S, S) float tensor: square resize without crop, then normalise."""
        size = self.info.image_size
        image = as_rgb(image).resize((size, size), Image.BICUBIC)
        array = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
        return (array - self.mean) / self.std

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor, attentions: bool = True,
               hidden_states: bool = False) -> EncoderOutput:
        raise NotImplementedError

    def encode_with_grad(self, pixel_values: torch.Tensor, attentions: bool = False) -> EncoderOutput:
        """`encode` without its no_grad (and by default without attentions): the same forward pass as
        extraction, for training through the embeddings and for gradient attributions."""
        return type(self).encode.__wrapped__(self, pixel_values, attentions=attentions)

    def pooled(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, D) the pooled image embedding (`cls` of `encode`) with gradients: a classification
        head's input."""
        return self.encode_with_grad(pixel_values).cls

    def blocks(self) -> list[torch.nn.Module]:
        """The backbone's blocks in forward order (transformer layers, ResNet bottlenecks); the last
        N are what partial fine-tuning unfreezes."""
        raise NotImplementedError

    def after_blocks(self) -> list[torch.nn.Module]:
        """Modules between the last block and the pooled embedding (final norm, pooling head); they
        train whenever the last block does."""
        return []

    def attention_modules(self) -> list[torch.nn.Module] | None:
        """One module per layer, in forward order, whose forward output carries that layer's softmax
        attention (B, H, T, T) (read by `attention_weights`) even when `encode` is not asked for
        attentions; None where the adapter cannot say (extraction then asks `encode` for every layer's
        attentions at once, which holds them all until the pass ends)."""
        return None

    @staticmethod
    def attention_weights(output) -> torch.Tensor | None:
        """The attention weights in an attention module's forward output (transformers: its second item)."""
        return output[1] if isinstance(output, (tuple, list)) and len(output) > 1 else None

    @contextmanager
    def layer_attentions(self, callback: Callable[[int, torch.Tensor], None]) -> Iterator[list[int]]:
        """Within the block every forward pass calls `callback(layer, attention)` as each layer's
        attention is computed (forward hooks on `attention_modules()`), so a caller can reduce it before
        the next layer runs. Yields the list of layers reported so far (cleared by the caller per pass)."""
        modules = self.attention_modules()
        if modules is None:
            raise RuntimeError(f"{self.family}: the adapter does not expose its attention modules")
        reported: list[int] = []

        def hook_for(layer: int):
            def hook(_module, _args, output):
                weights = self.attention_weights(output)
                if weights is None:
                    raise RuntimeError(f"{self.family}: layer {layer}'s attention module returned no weights "
                                       f"(eager attention is needed)")
                reported.append(layer)
                callback(layer, weights.detach())
            return hook

        handles = [module.register_forward_hook(hook_for(layer)) for layer, module in enumerate(modules)]
        try:
            yield reported
        finally:
            for handle in handles:
                handle.remove()

    def to(self, device: torch.device | str) -> "FamilyAdapter":
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def read_normalisation(folder: Path, default_mean, default_std):
    """Mean/std from the checkpoint's `preprocessor_config.json`, else the family's defaults."""
    config = Path(folder) / "preprocessor_config.json"
    if config.exists():
        data = json.loads(config.read_text())
        return tuple(data.get("image_mean", default_mean)), tuple(data.get("image_std", default_std))
    return tuple(default_mean), tuple(default_std)


def check_attentions(attentions, num_layers: int, family: str) -> list[torch.Tensor]:
    """Eager attention must return one tensor per layer; SDPA silently returns None."""
    if attentions is None or len(attentions) != num_layers or any(a is None for a in attentions):
        got = "None" if attentions is None else [None if a is None else tuple(a.shape) for a in attentions]
        raise RuntimeError(
            f"{family}: expected {num_layers} attention tensors from output_attentions=True with eager "
            f"attention, got {got}"
        )
    return list(attentions)
