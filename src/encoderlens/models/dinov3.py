"""DINOv3 ViT: CLS + register tokens in front of the patches, rotary position embeddings (any size).

transformers' DINOv3ViTModel records attentions with output hooks on its attention modules, so
`output_attentions=True` works as for the other families once eager attention is selected; RoPE is
applied to the patch queries/keys only and does not change the token order [CLS, registers, patches].
"""

from __future__ import annotations

from transformers import DINOv3ViTConfig, DINOv3ViTImageProcessor, DINOv3ViTModel

from .base import IMAGENET_MEAN, IMAGENET_STD
from .hf_vit import HFViTAdapter, save_tiny, tiny_dims, vit_config_kwargs


class Dinov3Adapter(HFViTAdapter):
    family = "dinov3"
    model_class = DINOv3ViTModel
    default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD
    final_norm = "norm"
    blocks_path = "model.layer"
    after_blocks_paths = ("norm",)

    @classmethod
    def build_tiny(cls, folder, seed: int = 0, **overrides) -> None:
        dims = tiny_dims(overrides, {"num_register_tokens": 4})
        if (dims["hidden_size"] // dims["num_heads"]) % 4:
            raise ValueError("dinov3: the head dimension must be a multiple of 4 for its 2-D RoPE")
        config = DINOv3ViTConfig(**vit_config_kwargs(dims), num_register_tokens=dims["num_register_tokens"])
        processor = DINOv3ViTImageProcessor(image_mean=list(IMAGENET_MEAN), image_std=list(IMAGENET_STD),
                                            size={"height": dims["image_size"], "width": dims["image_size"]})
        save_tiny(folder, seed, lambda: DINOv3ViTModel(config), processor)
