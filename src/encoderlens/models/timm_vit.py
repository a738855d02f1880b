"""timm vision transformers (ViT, DeiT, DINOv2, EVA-02, ...) from timm hub snapshots, by architecture name.

Loading is the resnet family's: transformers' TimmWrapperModel builds `timm.create_model(architecture,
**model_args)` from config.json and loads model.safetensors (`timm_snapshot`). Tokens are
[CLS, distillation token?, registers..., patches...] as timm orders them; the number of prefix tokens is
the model's own `num_prefix_tokens`, checked against the tokens it has.

Attention without changing the model's numerics: timm's attention layers call
`F.scaled_dot_product_attention` (the fused path, timm's default, set on every layer at load) and never
materialise the softmax. While a forward pass that wants attentions runs, a TorchFunctionMode sees each
of those calls, lets it run unchanged, and computes softmax(q k^T * scale + mask) in float32 from the
very q and k it was given (after timm's q/k norms and EVA's rotary embedding). One call per block is
required; anything else is an error. LoRA adapts `attn.qkv` (the traits table's targets); EVA's attention
is set to call that module rather than its weight (see `load_model`).

Embeddings: cls is the model's own pooled pre-logits (`forward_head(pre_logits=True)`: the CLS token for
`global_pool="token"`, the mean patch token for EVA's "avg", the mean of CLS and distillation token for
distilled DeiT), recorded in ModelInfo.extra["pooling"]; mean averages the patch tokens after the final
norm; cls_raw is the last block's CLS token before it.
"""

from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager

import timm
import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from .base import IMAGENET_MEAN, IMAGENET_STD, EncoderOutput, ModelInfo
from .hf_vit import capture_input, tiny_dims
from .timm_snapshot import TimmSnapshotAdapter

HUB_IMAGE_SIZE = 224
TINY_ARCHITECTURE = "vit_base_patch16_224"


def sdpa_weights(query, key, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                 enable_gqa=False) -> torch.Tensor:
    """The softmax weights `F.scaled_dot_product_attention` applies, in float32 (PyTorch's documented
    reference implementation)."""
    if dropout_p or is_causal or enable_gqa:
        raise RuntimeError(f"timm: attention capture supports no dropout, causal mask or GQA "
                           f"(got dropout_p={dropout_p}, is_causal={is_causal}, enable_gqa={enable_gqa})")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    logits = (query.float() @ key.float().transpose(-2, -1)) * scale
    if attn_mask is not None:
        logits = (logits.masked_fill(~attn_mask, float("-inf")) if attn_mask.dtype == torch.bool
                  else logits + attn_mask.float())
    return logits.softmax(dim=-1)


class AttentionCapture(TorchFunctionMode):
    """Records, per block, the softmax weights of the scaled-dot-product attention calls made in it."""

    def __init__(self, blocks):
        super().__init__()
        self.block = None
        self.weights: list[list[torch.Tensor]] = [[] for _ in blocks]
        self.handles = [block.register_forward_pre_hook(self._enter(i)) for i, block in enumerate(blocks)]

    def _enter(self, index):
        def hook(_module, _args):
            self.block = index
        return hook

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.scaled_dot_product_attention:
            if self.block is None:
                raise RuntimeError("timm: an attention call outside the model's blocks")
            self.weights[self.block].append(sdpa_weights(*args[:2], *args[3:], **{
                k: v for k, v in kwargs.items() if k not in ("value",)}))
        return func(*args, **kwargs)

    def remove(self):
        for handle in self.handles:
            handle.remove()


@contextmanager
def capture_attention(blocks, enabled: bool = True):
    """Yield the per-block list of captured attention weights (empty lists when not `enabled`)."""
    if not enabled:
        yield None
        return
    capture = AttentionCapture(blocks)
    try:
        with capture:
            yield capture.weights
    finally:
        capture.remove()


def prefix_token_names(timm_model) -> list[str]:
    """CLS, distillation token, registers: what timm puts in front of the patches, from the model's own
    parameters, checked against its `num_prefix_tokens`."""
    names = (["cls"] * (getattr(timm_model, "cls_token", None) is not None)
             + ["distillation"] * (getattr(timm_model, "dist_token", None) is not None)
             + ["register"] * int(getattr(timm_model, "num_reg_tokens", 0) or 0))
    if len(names) != int(timm_model.num_prefix_tokens):
        raise ValueError(f"timm: {type(timm_model).__name__} has num_prefix_tokens {timm_model.num_prefix_tokens} "
                         f"but its parameters give {names}")
    return names


class TimmVitAdapter(TimmSnapshotAdapter):
    family = "timm"
    default_mean, default_std = IMAGENET_MEAN, IMAGENET_STD

    @classmethod
    def load_model(cls, folder):
        model = super().load_model(folder)
        for module in model.modules():
            if hasattr(module, "fused_attn"):
                module.fused_attn = True  # every attention through F.scaled_dot_product_attention
            if getattr(module, "q_bias", None) is not None and hasattr(module, "qkv_bias_separate"):
                # EVA keeps the qkv biases apart and calls F.linear with the qkv weight directly, which
                # would bypass a LoRA-wrapped `qkv`; its separate-bias path calls the module, then adds
                # the same biases (equal to float rounding)
                module.qkv_bias_separate = True
        return model

    @classmethod
    def describe(cls, model, image_size=None) -> ModelInfo:
        timm_model = model.timm_model
        architecture = model.config.architecture
        if not hasattr(timm_model, "blocks") or not hasattr(timm_model, "patch_embed"):
            raise ValueError(f"timm: {architecture} is not a plain vision transformer (no blocks/patch_embed); "
                             f"CNNs use family resnet")
        prefix = prefix_token_names(timm_model)
        if not prefix or prefix[0] != "cls":
            raise ValueError(f"timm: {architecture} has no class token; the timm family studies CLS attention")
        patch_h, patch_w = timm_model.patch_embed.patch_size
        if patch_h != patch_w:
            raise ValueError(f"timm: {architecture} has non-square patches {patch_h}x{patch_w}")
        config_size = cls.input_size(model, HUB_IMAGE_SIZE)
        size = int(image_size or config_size)
        if size % patch_h:
            raise ValueError(f"timm: image_size {size} is not a multiple of patch_size {patch_h}")
        if tuple(timm_model.patch_embed.img_size) != (size, size):
            # timm resamples the position embeddings (and EVA's rotary grid) to the new size
            timm_model.set_input_size(img_size=(size, size))
        blocks = list(timm_model.blocks)
        return ModelInfo(
            family=cls.family, image_size=size, patch_size=patch_h, grid_h=size // patch_h,
            grid_w=size // patch_h, n_prefix_tokens=len(prefix), num_layers=len(blocks),
            num_heads=int(blocks[0].attn.num_heads), hidden_size=int(timm_model.num_features), has_cls=True,
            extra={"architecture": architecture, "prefix_tokens": prefix, "config_image_size": config_size,
                   "pooling": str(getattr(timm_model, "global_pool", ""))},
        )

    def blocks(self) -> list[torch.nn.Module]:
        return list(self.model.timm_model.blocks)

    def after_blocks(self) -> list[torch.nn.Module]:
        timm_model = self.model.timm_model
        return [getattr(timm_model, name) for name in ("norm", "fc_norm", "attn_pool")
                if isinstance(getattr(timm_model, name, None), torch.nn.Module)]

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor, attentions: bool = True,
               hidden_states: bool = False) -> EncoderOutput:
        size = self.info.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(f"timm: expected pixels (B, 3, {size}, {size}), got {tuple(pixel_values.shape)}")
        timm_model = self.model.timm_model
        pixel_values = pixel_values.to(self.device, next(timm_model.parameters()).dtype)
        blocks = self.blocks()
        states: list[torch.Tensor] = []
        with ExitStack() as stack:
            if hidden_states:  # the first block's input, then every block's output (HF's convention)
                handles = [blocks[0].register_forward_pre_hook(lambda _m, args: states.append(args[0]))]
                handles += [block.register_forward_hook(lambda _m, _a, out: states.append(out)) for block in blocks]
                stack.callback(lambda: [handle.remove() for handle in handles])
            raw = stack.enter_context(capture_input(timm_model.norm))
            weights = stack.enter_context(capture_attention(blocks, attentions))
            features = timm_model.forward_features(pixel_values)
        n_prefix = self.info.n_prefix_tokens
        expected = n_prefix + self.info.grid_h * self.info.grid_w
        if features.shape[1] != expected:
            raise RuntimeError(f"timm: the model returned {features.shape[1]} tokens; its prefix tokens "
                               f"{self.info.extra['prefix_tokens']} and the {self.info.grid_h}x{self.info.grid_w} "
                               f"grid make {expected}")
        result = EncoderOutput(cls=timm_model.forward_head(features, pre_logits=True),
                               mean=features[:, n_prefix:].mean(dim=1),
                               cls_raw=(raw[-1] if raw else features)[:, 0])
        if attentions:
            counts = [len(per_block) for per_block in weights]
            if counts != [1] * len(blocks):
                raise RuntimeError(f"timm: expected one attention call per block, got {counts} (a block that "
                                   f"does not use F.scaled_dot_product_attention?)")
            result.attentions = [per_block[0] for per_block in weights]
        if hidden_states:
            result.hidden_states = states
        return result

    @classmethod
    def build_tiny(cls, folder, seed: int = 0, architecture: str = TINY_ARCHITECTURE, **overrides) -> None:
        """A tiny random `architecture` (any timm ViT-like name), saved with timm's own `save_for_hf` as
        a timm hub snapshot: config.json (architecture, model_args, pretrained_cfg) + model.safetensors."""
        dims = tiny_dims(overrides)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = timm.create_model(
                architecture, pretrained=False, num_classes=10, img_size=dims["image_size"],
                patch_size=dims["patch_size"], embed_dim=dims["hidden_size"], depth=dims["num_layers"],
                num_heads=dims["num_heads"], mlp_ratio=dims["intermediate_size"] / dims["hidden_size"])
        timm.models.save_for_hf(model, str(folder), safe_serialization=True)
