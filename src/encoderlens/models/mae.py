"""MAE encoder run as a plain ViT: no masking, patches kept in image order, CLS first.

ViTMAEModel always shuffles patches (argsort of random noise) and keeps the first
(1 - mask_ratio) of them. Loading with mask_ratio=0 keeps all patches, and passing noise that is
already sorted (arange) makes the shuffle the identity, so token 1 + k is patch k in raster order.
"""

from __future__ import annotations

import torch
from transformers import ViTImageProcessor, ViTMAEConfig, ViTMAEForPreTraining, ViTMAEModel

from .base import IMAGENET_MEAN, IMAGENET_STD
from .hf_vit import HFViTAdapter, from_pretrained_strict, save_tiny, tiny_dims, vit_config_kwargs


class MaeAdapter(HFViTAdapter):
    family = "mae"
    model_class = ViTMAEModel
    default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
    final_norm = "layernorm"
    blocks_path = "layers"
    after_blocks_paths = ("layernorm",)

    @classmethod
    def load_model(cls, folder):
        return from_pretrained_strict(ViTMAEModel, folder, attn_implementation="eager", mask_ratio=0.0)

    def forward_kwargs(self, pixel_values):
        patches = self.info.grid_h * self.info.grid_w
        noise = torch.arange(patches, device=pixel_values.device, dtype=torch.float32)
        return {"noise": noise.expand(pixel_values.shape[0], -1),
                "interpolate_pos_encoding": self.interpolate()}

    def pool(self, out, raw_tokens):
        # guards against a config or library change that would drop or reorder patches silently
        identity = torch.arange(out.ids_restore.shape[1], device=out.ids_restore.device)
        if out.mask.any() or not bool((out.ids_restore == identity).all()):
            raise RuntimeError("mae: patches were masked or shuffled; expected mask_ratio 0 and sorted noise")
        return super().pool(out, raw_tokens)

    @classmethod
    def build_tiny(cls, folder, seed: int = 0, **overrides) -> None:
        dims = tiny_dims(overrides)
        # the hub checkpoint is the pre-training model (encoder + decoder), so the tiny one is too;
        # mask_ratio stays at the hub's 0.75, the adapter overrides it when loading
        config = ViTMAEConfig(**vit_config_kwargs(dims), decoder_hidden_size=dims["hidden_size"],
                              decoder_num_hidden_layers=1, decoder_num_attention_heads=dims["num_heads"],
                              decoder_intermediate_size=dims["intermediate_size"])
        processor = ViTImageProcessor(image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                                      size={"height": dims["image_size"], "width": dims["image_size"]})
        save_tiny(folder, seed, lambda: ViTMAEForPreTraining(config), processor)
