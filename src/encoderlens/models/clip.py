"""CLIP vision tower: CLS first; loads the vision half of a full CLIPModel checkpoint (OpenAI, StreetCLIP).

`last_hidden_state` is the last layer's raw output (CLIP applies post_layernorm to the pooled CLS only),
so cls_raw is its CLS token and mean averages its patch tokens; cls is the post-layernorm CLS.
"""

from __future__ import annotations

from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPVisionModel

from .hf_vit import (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, HFViTAdapter, save_tiny, tiny_dims, tiny_text_config,
                     vit_config_kwargs)


class ClipAdapter(HFViTAdapter):
    family = "clip"
    model_class = CLIPVisionModel
    default_mean, default_std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    blocks_path = "encoder.layers"
    after_blocks_paths = ("post_layernorm",)

    def forward_kwargs(self, pixel_values):
        return {"interpolate_pos_encoding": self.interpolate()}

    @classmethod
    def build_tiny(cls, folder, seed: int = 0, **overrides) -> None:
        dims = tiny_dims(overrides)
        config = CLIPConfig(text_config=tiny_text_config(dims), vision_config=vit_config_kwargs(dims),
                            projection_dim=dims["hidden_size"])
        size = dims["image_size"]
        processor = CLIPImageProcessor(image_mean=list(OPENAI_CLIP_MEAN), image_std=list(OPENAI_CLIP_STD),
                                       size={"shortest_edge": size}, crop_size={"height": size, "width": size})
        save_tiny(folder, seed, lambda: CLIPModel(config), processor)
