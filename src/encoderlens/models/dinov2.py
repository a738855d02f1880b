"""DINOv2, with or without registers: CLS (+ register tokens) in front of the patches, learned position
embeddings. The checkpoint's config decides: model_type `dinov2_with_registers` carries
`num_register_tokens` (4 in facebook/dinov2-with-registers-*), plain `dinov2` (facebook/dinov2-base,
the most used) has none."""

from __future__ import annotations

import json
from pathlib import Path

from transformers import BitImageProcessor, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel

from .base import IMAGENET_MEAN, IMAGENET_STD
from .hf_vit import HFViTAdapter, from_pretrained_strict, save_tiny, tiny_dims

# The hub config says 518 (37 x 14, the resolution of DINOv2's last training stage). The analysis runs at
# the standard 224 (a 16 x 16 grid), which keeps attention maps comparable across families; the model
# interpolates its position embeddings for any size.
HUB_IMAGE_SIZE = 518
ANALYSIS_IMAGE_SIZE = 224
MODEL_CLASSES = {"dinov2_with_registers": Dinov2WithRegistersModel, "dinov2": Dinov2Model}


class Dinov2Adapter(HFViTAdapter):
    family = "dinov2"
    model_class = Dinov2WithRegistersModel
    default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
    final_norm = "layernorm"
    after_blocks_paths = ("layernorm",)

    @classmethod
    def load_model(cls, folder):
        model_type = json.loads((Path(folder) / "config.json").read_text()).get("model_type")
        if model_type not in MODEL_CLASSES:
            raise ValueError(f"dinov2: {folder}/config.json has model_type {model_type!r}; expected one of "
                             f"{sorted(MODEL_CLASSES)}")
        return from_pretrained_strict(MODEL_CLASSES[model_type], folder, attn_implementation="eager")

    @classmethod
    def default_image_size(cls, config) -> int:
        return ANALYSIS_IMAGE_SIZE if int(config.image_size) == HUB_IMAGE_SIZE else int(config.image_size)

    @classmethod
    def build_tiny(cls, folder, seed: int = 0, **overrides) -> None:
        dims = tiny_dims(overrides, {"num_register_tokens": 2})
        config = Dinov2WithRegistersConfig(
            image_size=dims["image_size"], patch_size=dims["patch_size"], hidden_size=dims["hidden_size"],
            num_hidden_layers=dims["num_layers"], num_attention_heads=dims["num_heads"],
            mlp_ratio=dims["intermediate_size"] // dims["hidden_size"],
            num_register_tokens=dims["num_register_tokens"],
        )
        size = {"height": dims["image_size"], "width": dims["image_size"]}
        processor = BitImageProcessor(image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                                      size={"shortest_edge": dims["image_size"]}, crop_size=size)
        save_tiny(folder, seed, lambda: Dinov2WithRegistersModel(config), processor)
