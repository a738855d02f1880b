"""timm ResNet through transformers' TimmWrapperModel, which loads timm hub snapshots as they are.

A timm snapshot is config.json ({"architecture": ..., "pretrained_cfg": {mean, std, input_size}}) plus
model.safetensors with timm's own parameter names. There is no attention: cls = mean = global average
pool of the last stage, and the "patch grid" is the last feature map (total stride 32).
"""

from __future__ import annotations

import json
from pathlib import Path

import timm
import torch
from safetensors.torch import save_file

from .base import IMAGENET_MEAN, IMAGENET_STD, EncoderOutput, ModelInfo
from .timm_snapshot import TimmSnapshotAdapter

ARCHITECTURE = "resnet50"
HUB_IMAGE_SIZE = 224


class ResnetAdapter(TimmSnapshotAdapter):
    family = "resnet"
    default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD

    @classmethod
    def describe(cls, model, image_size=None) -> ModelInfo:
        size = int(image_size or cls.input_size(model, HUB_IMAGE_SIZE))
        stride = int(model.timm_model.feature_info[-1]["reduction"])
        if size % stride:
            # the convolutions would round the grid up and the last row/column would cover less image
            raise ValueError(f"resnet: image_size {size} is not a multiple of the total stride {stride}")
        return ModelInfo(
            family=cls.family, image_size=size, patch_size=stride, grid_h=size // stride, grid_w=size // stride,
            n_prefix_tokens=0, num_layers=0, num_heads=0, hidden_size=int(model.timm_model.num_features),
            has_cls=cls.has_cls, extra={"architecture": model.config.architecture},
        )

    def blocks(self) -> list[torch.nn.Module]:
        """Every bottleneck block, stage by stage. LoRA does not apply (no attention projections:
        `lora_target_modules` stays empty); linear and partial fine-tuning do."""
        timm_model = self.model.timm_model
        return [block for stage in ("layer1", "layer2", "layer3", "layer4") for block in getattr(timm_model, stage)]

    def target_layers(self) -> list[torch.nn.Module]:
        """The last bottleneck block: the usual Grad-CAM target for ResNets."""
        return [self.model.timm_model.layer4[-1]]

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor, attentions: bool = True,
               hidden_states: bool = False) -> EncoderOutput:
        size = self.info.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(f"resnet: expected pixels (B, 3, {size}, {size}), got {tuple(pixel_values.shape)}")
        timm_model = self.model.timm_model
        pixel_values = pixel_values.to(self.device, next(timm_model.parameters()).dtype)
        stages = None
        if hidden_states:
            # one entry per stage (layer1..layer4) as (B, h*w, C_stage) tokens; widths differ per stage
            features, maps = timm_model.forward_intermediates(pixel_values, indices=4)
            stages = [fmap.flatten(2).transpose(1, 2) for fmap in maps]
        else:
            features = timm_model.forward_features(pixel_values)
        pooled = timm_model.forward_head(features, pre_logits=True)
        return EncoderOutput(cls=pooled, mean=pooled, hidden_states=stages)

    @classmethod
    def build_tiny(cls, folder, seed: int = 0, **overrides) -> None:
        """resnet50's bottleneck architecture with one block per stage and 1/8 of the channels."""
        allowed = {"image_size": 64, "hidden_size": 256, "num_layers": 1}
        unknown = sorted(set(overrides) - set(allowed))
        if unknown:
            raise ValueError(f"unknown tiny override(s) {unknown} for resnet; allowed: {sorted(allowed)}")
        dims = {**allowed, **overrides}
        width = dims["hidden_size"] // 4  # bottleneck expansion is 4
        if width % 8:
            raise ValueError("resnet: hidden_size must be a multiple of 32")
        model_args = {"layers": [dims["num_layers"]] * 4, "channels": [width // 8, width // 4, width // 2, width],
                      # timm zero-initialises each block's last BN, which makes a random model an identity
                      "zero_init_last": False}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = timm.create_model(ARCHITECTURE, pretrained=False, num_classes=10, **model_args)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file(model.state_dict(), folder / "model.safetensors")
        size = dims["image_size"]
        config = {
            "architecture": ARCHITECTURE, "num_classes": 10, "num_features": model.num_features,
            "global_pool": "avg", "model_args": model_args,
            "pretrained_cfg": {"input_size": [3, size, size], "mean": list(IMAGENET_MEAN),
                               "std": list(IMAGENET_STD), "interpolation": "bicubic"},
        }
        (folder / "config.json").write_text(json.dumps(config, indent=2))
