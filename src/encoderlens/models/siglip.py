"""SigLIP vision tower: no CLS token; the image embedding is the multi-head attention pooling (MAP) head.

Fixed-resolution SigLIP 2 checkpoints (google/siglip2-base-patch16-224) have model_type "siglip" and
load with these classes. map_probe is the head's probe-query attention over the patches, per head.
"""

from __future__ import annotations

from transformers import SiglipConfig, SiglipImageProcessor, SiglipModel, SiglipVisionModel

from .base import EncoderOutput
from .hf_vit import HALF, HFViTAdapter, save_tiny, tiny_dims, tiny_text_config, vit_config_kwargs


class SiglipAdapter(HFViTAdapter):
    family = "siglip"
    model_class = SiglipVisionModel
    default_mean, default_std = HALF, HALF
    blocks_path = "encoder.layers"
    after_blocks_paths = ("post_layernorm", "head")

    @classmethod
    def load_model(cls, folder):
        model = super().load_model(folder)
        if not getattr(model, "use_head", False):
            raise ValueError(f"siglip: {folder} has no attention-pooling head (vision_use_head is false)")
        return model

    def forward_kwargs(self, pixel_values):
        return {"interpolate_pos_encoding": self.interpolate()}

    def pool(self, out, raw_tokens) -> EncoderOutput:
        tokens = out.last_hidden_state  # post_layernorm: exactly what the head attends over
        head = self.model.head
        probe = head.probe.expand(tokens.shape[0], -1, -1)
        _, weights = head.attention(probe, tokens, tokens, need_weights=True, average_attn_weights=False)
        return EncoderOutput(cls=out.pooler_output, mean=tokens.mean(dim=1), cls_raw=None,
                             map_probe=weights[:, :, 0, :])

    @classmethod
    def build_tiny(cls, folder, seed: int = 0, **overrides) -> None:
        dims = tiny_dims(overrides)
        config = SiglipConfig(text_config=tiny_text_config(dims), vision_config=vit_config_kwargs(dims))
        processor = SiglipImageProcessor(image_mean=list(HALF), image_std=list(HALF),
                                         size={"height": dims["image_size"], "width": dims["image_size"]})
        save_tiny(folder, seed, lambda: SiglipModel(config), processor)
