"""Loading a timm hub snapshot through transformers' TimmWrapperModel, for every timm family.

A timm snapshot is config.json ({"architecture": ..., "model_args": ..., "pretrained_cfg": {mean, std,
input_size, ...}}, as timm's `save_for_hf` writes it) plus model.safetensors with timm's own parameter
names; the normalisation comes from pretrained_cfg (there is no preprocessor_config.json).
"""

from __future__ import annotations

from pathlib import Path

from transformers import TimmWrapperConfig, TimmWrapperModel

from .base import FamilyAdapter
from .hf_vit import from_pretrained_strict


class TimmSnapshotAdapter(FamilyAdapter):
    """What the timm families share: the TimmWrapperModel loading and the pretrained_cfg normalisation."""

    @classmethod
    def from_folder(cls, folder, image_size=None):
        adapter = super().from_folder(folder, image_size)
        if (Path(folder) / "preprocessor_config.json").exists():
            return adapter
        # timm snapshots carry their normalisation in config.json's pretrained_cfg instead
        pretrained_cfg = getattr(adapter.model.config, "pretrained_cfg", None) or {}
        return cls(adapter.model, adapter.info, pretrained_cfg.get("mean", cls.default_mean),
                   pretrained_cfg.get("std", cls.default_std))

    @classmethod
    def load_model(cls, folder):
        # timm's save_for_hf (timm 1.0.x) records the creation kwargs in model_args, num_classes among
        # them; TimmWrapperModel passes its own num_classes=0 beside them and would fail on the duplicate
        config = TimmWrapperConfig.from_pretrained(str(folder))
        if config.model_args and "num_classes" in config.model_args:
            config.model_args = {k: v for k, v in config.model_args.items() if k != "num_classes"}
        return from_pretrained_strict(TimmWrapperModel, folder, config=config)

    @staticmethod
    def input_size(model, default: int) -> int:
        """The square input size the checkpoint's pretrained_cfg declares."""
        pretrained_cfg = getattr(model.config, "pretrained_cfg", None) or {}
        return int(pretrained_cfg.get("input_size", (3, default, default))[-1])
