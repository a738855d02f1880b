"""Any Hugging Face ViT whose model returns attentions through `output_attentions` (eager attention):
ViT (google/vit-*, DINO v1 facebook/dino-vit*, plain DeiT facebook/deit-*-patch16-224), distilled DeiT,
BEiT, and DINOv2 with or without registers.

The checkpoint's config.json decides everything: its `model_type` picks the model class (a row of
`ARCHITECTURES`), and the prefix tokens are that architecture's declared ones (CLS; CLS + distillation
token for `deit`; CLS + the config's `num_register_tokens` for `dinov2_with_registers`), never guessed.
Every forward pass checks them: the sequence must be exactly prefix tokens + grid cells.

Pooling, as each architecture declares it (recorded in `ModelInfo.extra["pooling"]`): the CLS token
after the final norm, except BEiT checkpoints with `use_mean_pooling` (the fine-tuned ones), whose
image embedding is their pooler's layer-normed mean of the patch tokens. Pooling layers a checkpoint
does not hold (a ViTForImageClassification has no `pooler`) are not built: strict loading would refuse
them as missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from transformers import (BeitConfig, BeitModel, BitImageProcessor, DeiTConfig, DeiTModel, Dinov2Config,
                          Dinov2Model, Dinov2WithRegistersModel, ViTConfig, ViTImageProcessor, ViTModel)

from .base import IMAGENET_MEAN, IMAGENET_STD, EncoderOutput
from .dinov2 import ANALYSIS_IMAGE_SIZE, HUB_IMAGE_SIZE
from .hf_vit import HFViTAdapter, from_pretrained_strict, save_tiny, tiny_dims, vit_config_kwargs


@dataclass(frozen=True)
class Architecture:
    model_class: type
    prefix: tuple[str, ...]          # the prefix tokens in order; "registers" expands to the config's count
    blocks_path: str                 # the ModuleList of transformer layers
    final_norm: str                  # the module whose input is the last layer's raw tokens
    interpolate_kwarg: bool          # forward takes interpolate_pos_encoding (DINOv2 always interpolates)


ARCHITECTURES: dict[str, Architecture] = {
    "vit": Architecture(ViTModel, ("cls",), "layers", "layernorm", True),
    "deit": Architecture(DeiTModel, ("cls", "distillation"), "layers", "layernorm", True),
    "beit": Architecture(BeitModel, ("cls",), "layers", "layernorm", True),
    "dinov2": Architecture(Dinov2Model, ("cls",), "encoder.layer", "layernorm", False),
    "dinov2_with_registers": Architecture(Dinov2WithRegistersModel, ("cls", "registers"), "encoder.layer",
                                          "layernorm", False),
}
# the tiny builds the tests use, one per architecture; `vit` is the default
TINY_CONFIGS = {"vit": ViTConfig, "deit": DeiTConfig, "beit": BeitConfig, "dinov2": Dinov2Config}


def architecture_of(config_or_type) -> Architecture:
    model_type = config_or_type if isinstance(config_or_type, str) else config_or_type.model_type
    if model_type not in ARCHITECTURES:
        raise ValueError(f"vit: model_type {model_type!r} is not one this family loads; it loads "
                         f"{sorted(ARCHITECTURES)} (see the README section 'Your own model: a hub or timm "
                         f"checkpoint')")
    return ARCHITECTURES[model_type]


def mean_pooled(config) -> bool:
    return config.model_type == "beit" and bool(getattr(config, "use_mean_pooling", False))


class VitAdapter(HFViTAdapter):
    family = "vit"
    default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, model, info, mean, std):
        super().__init__(model, info, mean, std)
        architecture = architecture_of(model.config)
        self.blocks_path = architecture.blocks_path
        self.final_norm = architecture.final_norm
        self.after_blocks_paths = (architecture.final_norm,) + (("pooler",) if mean_pooled(model.config) else ())
        self.interpolate_kwarg = architecture.interpolate_kwarg

    @classmethod
    def load_model(cls, folder):
        model_type = json.loads((Path(folder) / "config.json").read_text()).get("model_type")
        architecture = architecture_of(model_type)
        kwargs = {"attn_implementation": "eager"}
        if model_type in ("vit", "deit", "beit"):
            config = architecture.model_class.config_class.from_pretrained(str(folder))
            kwargs["add_pooling_layer"] = mean_pooled(config)
        return from_pretrained_strict(architecture.model_class, folder, **kwargs)

    @classmethod
    def prefix_tokens(cls, config) -> list[str]:
        names = []
        for name in architecture_of(config).prefix:
            if name == "registers":
                names += ["register"] * int(config.num_register_tokens)
            else:
                names.append(name)
        return names

    @classmethod
    def n_prefix_tokens(cls, config) -> int:
        return len(cls.prefix_tokens(config))

    @classmethod
    def default_image_size(cls, config) -> int:
        size = int(config.image_size)
        if config.model_type.startswith("dinov2") and size == HUB_IMAGE_SIZE:
            return ANALYSIS_IMAGE_SIZE  # as the dinov2 family: hub DINOv2 configs say 518
        return size

    @classmethod
    def describe(cls, model, image_size=None):
        info = super().describe(model, image_size)
        info.extra["prefix_tokens"] = cls.prefix_tokens(model.config)
        info.extra["pooling"] = "mean" if mean_pooled(model.config) else "cls"
        return info

    def forward_kwargs(self, pixel_values):
        return {"interpolate_pos_encoding": self.interpolate()} if self.interpolate_kwarg else {}

    def pool(self, out, raw_tokens):
        tokens = out.last_hidden_state
        expected = self.info.n_prefix_tokens + self.info.grid_h * self.info.grid_w
        if tokens.shape[1] != expected:
            raise RuntimeError(
                f"vit: the {self.info.extra['model_type']} model returned {tokens.shape[1]} tokens; its declared "
                f"prefix tokens {self.info.extra['prefix_tokens']} and the {self.info.grid_h}x{self.info.grid_w} "
                f"grid make {expected}")
        patches = tokens[:, self.info.n_prefix_tokens:]
        cls_token = out.pooler_output if mean_pooled(self.model.config) else tokens[:, 0]
        return EncoderOutput(cls=cls_token, mean=patches.mean(dim=1), cls_raw=raw_tokens[:, 0])

    @classmethod
    def build_tiny(cls, folder, seed: int = 0, architecture: str = "vit", **overrides) -> None:
        """A tiny random checkpoint of `architecture` (a transformers model_type: vit, deit, beit, dinov2),
        saved with save_pretrained as the hub holds it."""
        if architecture not in TINY_CONFIGS:
            raise ValueError(f"vit: no tiny build for architecture {architecture!r}; known: {sorted(TINY_CONFIGS)}")
        dims = tiny_dims(overrides)
        kwargs = vit_config_kwargs(dims)
        if architecture == "dinov2":
            kwargs["mlp_ratio"] = dims["intermediate_size"] // dims["hidden_size"]
            del kwargs["intermediate_size"]
        if architecture == "beit":  # the fine-tuned BEiT layout: relative position bias, mean pooling
            kwargs.update(use_relative_position_bias=True, use_mean_pooling=True)
        config = TINY_CONFIGS[architecture](**kwargs)
        model_class = ARCHITECTURES[architecture].model_class
        size = dims["image_size"]
        if architecture == "dinov2":
            processor = BitImageProcessor(image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                                          size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        else:
            processor = ViTImageProcessor(image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                                          size={"height": size, "width": size})
        add_pooling = {"add_pooling_layer": mean_pooled(config)} if architecture != "dinov2" else {}
        save_tiny(folder, seed, lambda: model_class(config, **add_pooling), processor)
