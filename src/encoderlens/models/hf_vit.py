"""What the Hugging Face ViT families (dinov2, dinov3, mae, clip, siglip) share.

They differ only in which tokens are prefix tokens, how the image embedding is pooled and which extra
forward arguments they need; loading, describing, the forward pass and the attention checks are common.
Every one of them orders tokens [CLS, registers..., patches...] (or just patches for SigLIP), so the
attention tensors are returned in the model's own order without any reindexing.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar

import torch

from .base import EncoderOutput, FamilyAdapter, ModelInfo, check_attentions

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
HALF = (0.5, 0.5, 0.5)

TINY_DEFAULTS = {"image_size": 64, "patch_size": 8, "hidden_size": 32, "num_layers": 3, "num_heads": 2}
TINY_MLP_RATIO = 2


def tiny_dims(overrides: dict, extra: dict | None = None) -> dict:
    """The tiny config's dimensions: defaults, then the family's extras, then the caller's overrides."""
    defaults = {**TINY_DEFAULTS, **(extra or {})}
    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise ValueError(f"unknown tiny override(s) {unknown}; allowed: {sorted(defaults)}")
    dims = {**defaults, **overrides}
    if dims["image_size"] % dims["patch_size"]:
        raise ValueError(f"image_size {dims['image_size']} is not a multiple of patch_size {dims['patch_size']}")
    if dims["hidden_size"] % dims["num_heads"]:
        raise ValueError(f"hidden_size {dims['hidden_size']} is not divisible by num_heads {dims['num_heads']}")
    dims["intermediate_size"] = TINY_MLP_RATIO * dims["hidden_size"]
    return dims


def vit_config_kwargs(dims: dict) -> dict:
    """The transformers config names of the tiny dimensions shared by all ViT configs."""
    return {
        "image_size": dims["image_size"], "patch_size": dims["patch_size"],
        "hidden_size": dims["hidden_size"], "num_hidden_layers": dims["num_layers"],
        "num_attention_heads": dims["num_heads"], "intermediate_size": dims["intermediate_size"],
    }


def tiny_text_config(dims: dict) -> dict:
    """A text tower as small as it gets: the hub CLIP/SigLIP checkpoints hold one, so the tiny ones do too."""
    return {"vocab_size": 64, "hidden_size": dims["hidden_size"], "intermediate_size": dims["intermediate_size"],
            "num_hidden_layers": 1, "num_attention_heads": dims["num_heads"], "max_position_embeddings": 16,
            "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}


def save_tiny(folder: str | Path, seed: int, make_model, processor) -> None:
    """Build `make_model()` under `seed` and save it with its image processor, like a hub snapshot.

    The RNG is forked so that building a tiny model does not change the caller's random stream.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make_model()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)


def from_pretrained_strict(model_class, folder: str | Path, **kwargs) -> torch.nn.Module:
    """`from_pretrained`, refusing a checkpoint that lacks some of the model's weights.

    transformers only warns and leaves missing weights randomly initialised, so a folder of the wrong
    family or a truncated download would give plausible-looking garbage (BatchNorm step counters
    excepted: they may be missing). Unexpected weights are fine:
    hub CLIP/SigLIP/MAE checkpoints carry a text tower or a decoder the encoder does not use.
    """
    model, loading = model_class.from_pretrained(str(folder), output_loading_info=True, **kwargs)
    # BatchNorm's num_batches_tracked only counts training steps (it sets the momentum only when
    # momentum is None); some timm exports leave it out, and inference never reads it
    loading["missing_keys"] = [key for key in loading.get("missing_keys") or []
                               if not key.endswith(".num_batches_tracked")]
    problems = {key: sorted(loading[key]) for key in ("missing_keys", "mismatched_keys") if loading.get(key)}
    if problems:
        raise RuntimeError(f"{folder} is not a complete {model_class.__name__} checkpoint: {problems}")
    return model


@contextmanager
def capture_input(module: torch.nn.Module | None):
    """Record the first positional input of `module` during the forward passes run inside the block."""
    seen: list[torch.Tensor] = []
    if module is None:
        yield seen
        return
    handle = module.register_forward_hook(lambda _module, args, _output: seen.append(args[0]))
    try:
        yield seen
    finally:
        handle.remove()


class HFViTAdapter(FamilyAdapter):
    """A transformers ViT loaded with eager attention, so that every layer returns its softmax weights."""

    model_class: ClassVar[type]
    # attribute of the model holding the final norm, whose input is the last layer's raw tokens;
    # None where `last_hidden_state` is already the raw output (CLIP) or there is no CLS (SigLIP)
    final_norm: ClassVar[str | None] = None
    blocks_path: ClassVar[str] = "encoder.layer"  # the ModuleList of transformer layers
    after_blocks_paths: ClassVar[tuple[str, ...]] = ()

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def load_model(cls, folder: Path) -> torch.nn.Module:
        return from_pretrained_strict(cls.model_class, folder, attn_implementation="eager")

    @classmethod
    def n_prefix_tokens(cls, config) -> int:
        """The CLS token, if the family has one, then the checkpoint's register tokens, if any (a
        family with registers may load a checkpoint without them, e.g. plain facebook/dinov2-base)."""
        registers = int(getattr(config, "num_register_tokens", 0) or 0) if cls.traits.registers else 0
        return int(cls.has_cls) + registers

    @classmethod
    def default_image_size(cls, config) -> int:
        return int(config.image_size)

    @classmethod
    def describe(cls, model: torch.nn.Module, image_size: int | None = None) -> ModelInfo:
        config = model.config
        size = int(image_size or cls.default_image_size(config))
        patch = int(config.patch_size)
        if size % patch:
            # a remainder would be silently cropped off by the patch convolution, breaking box scaling
            raise ValueError(f"{cls.family}: image_size {size} is not a multiple of patch_size {patch}")
        return ModelInfo(
            family=cls.family, image_size=size, patch_size=patch, grid_h=size // patch, grid_w=size // patch,
            n_prefix_tokens=cls.n_prefix_tokens(config), num_layers=int(config.num_hidden_layers),
            num_heads=int(config.num_attention_heads), hidden_size=int(config.hidden_size), has_cls=cls.has_cls,
            extra={"model_type": config.model_type, "config_image_size": int(config.image_size)},
        )

    # ---- use ----------------------------------------------------------------------------------
    def blocks(self) -> list[torch.nn.Module]:
        return list(self.model.get_submodule(self.blocks_path))

    def after_blocks(self) -> list[torch.nn.Module]:
        return [self.model.get_submodule(path) for path in self.after_blocks_paths]

    def attention_modules(self) -> list[torch.nn.Module] | None:
        """The modules transformers itself hooks to record `attentions` (the model class's
        `_can_record_outputs["attentions"]`), inside the transformer blocks, one per layer."""
        spec = getattr(self.model, "_can_record_outputs", {}).get("attentions")
        specs = spec if isinstance(spec, list) else [spec]
        if len(specs) != 1 or specs[0] is None or getattr(specs[0], "index", 1) != 1:
            return None
        spec = specs[0]
        target = spec if isinstance(spec, (type, str)) else (spec.target_class or spec.class_name)

        def matches(module):
            if isinstance(target, type):
                return isinstance(module, target)
            return type(module).__name__.endswith(target)

        modules = [module for block in self.blocks() for module in block.modules() if matches(module)]
        return modules if len(modules) == self.info.num_layers else None

    def forward_kwargs(self, pixel_values: torch.Tensor) -> dict:
        """Family-specific forward arguments (position interpolation, MAE noise)."""
        return {}

    def interpolate(self) -> bool:
        return self.info.image_size != self.info.extra["config_image_size"]

    @torch.no_grad()
    def encode(self, pixel_values: torch.Tensor, attentions: bool = True,
               hidden_states: bool = False) -> EncoderOutput:
        size = self.info.image_size
        if pixel_values.ndim != 4 or tuple(pixel_values.shape[-2:]) != (size, size):
            raise ValueError(f"{self.family}: expected pixels (B, 3, {size}, {size}), got {tuple(pixel_values.shape)}")
        pixel_values = pixel_values.to(self.device, next(self.model.parameters()).dtype)
        norm = getattr(self.model, self.final_norm) if self.final_norm else None
        with capture_input(norm) as raw:
            out = self.model(pixel_values, output_attentions=attentions, output_hidden_states=hidden_states,
                             **self.forward_kwargs(pixel_values))
        result = self.pool(out, raw[-1] if raw else out.last_hidden_state)
        if attentions:
            result.attentions = check_attentions(out.attentions, self.info.num_layers, self.family)
        if hidden_states:
            # HF convention: num_layers + 1 entries, the first being the embedding output
            result.hidden_states = list(out.hidden_states)
        return result

    def pool(self, out, raw_tokens: torch.Tensor) -> EncoderOutput:
        """CLS families: pooled CLS (after the final norm), mean of the patch tokens, raw last-layer CLS."""
        tokens = out.last_hidden_state
        cls_token = out.pooler_output if getattr(out, "pooler_output", None) is not None else tokens[:, 0]
        return EncoderOutput(cls=cls_token, mean=tokens[:, self.info.n_prefix_tokens:].mean(dim=1),
                             cls_raw=raw_tokens[:, 0])
