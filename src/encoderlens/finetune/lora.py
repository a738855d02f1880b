"""LoRA on an adapter's backbone with Hugging Face `peft`, and adapter-only safetensors on disk.

Reusable by any task that adapts a backbone (style fine-tuning here; distance calibration in geo):
the family's adapter names the attention projections (`lora_target_modules`), so callers never spell
module names. The adapter folder is peft's own (`adapter_config.json` + `adapter_model.safetensors`),
which `encoderlens.models.tuned.apply_tuned_weights` merges back into the backbone for extraction.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from encoderlens.models.base import FamilyAdapter

ADAPTER_WEIGHTS = "adapter_model.safetensors"


@dataclass(frozen=True)
class LoraSettings:
    rank: int = 8
    alpha: float = 32
    dropout: float = 0.1


def lora_applicable(adapter: FamilyAdapter | type[FamilyAdapter]) -> bool:
    return bool(adapter.lora_target_modules)


def wrap_with_lora(adapter: FamilyAdapter, settings: LoraSettings = LoraSettings()) -> FamilyAdapter:
    """Replace `adapter.model` by a peft LoRA model over the family's attention projections.

    Only the LoRA matrices train (peft freezes the rest); the adapter's `encode`/`pooled` keep working
    because peft forwards calls and attributes to the wrapped model.
    """
    from peft import LoraConfig, get_peft_model

    if not lora_applicable(adapter):
        raise ValueError(f"LoRA does not apply to family {adapter.family!r}: it has no attention projections")
    present = {name.rsplit(".", 1)[-1] for name, _ in adapter.model.named_modules()}
    missing = sorted(set(adapter.lora_target_modules) - present)
    if missing:
        raise ValueError(f"{adapter.family}: LoRA target modules {missing} are not in the model "
                         f"(a transformers version with other module names?)")
    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(adapter.lora_target_modules), bias="none")
    adapter.model = get_peft_model(adapter.model, config)
    return adapter


def save_lora_adapter(model: torch.nn.Module, folder: str | Path) -> Path:
    """Write the LoRA weights only (no backbone tensors) as peft's safetensors folder."""
    folder = Path(folder)
    model.save_pretrained(str(folder), safe_serialization=True)
    if not (folder / ADAPTER_WEIGHTS).exists():
        raise RuntimeError(f"peft wrote no {ADAPTER_WEIGHTS} into {folder}")
    return folder


def load_lora_adapter(model: torch.nn.Module, folder: str | Path, merge: bool = True) -> torch.nn.Module:
    """The backbone with the adapter in `folder`; merged into the base weights unless `merge` is False
    (merging keeps the backbone's own module types, so attention outputs come back unchanged)."""
    from peft import PeftModel

    folder = Path(folder)
    if not (folder / "adapter_config.json").exists():
        raise FileNotFoundError(f"{folder}: no adapter_config.json (not a peft adapter folder)")
    wrapped = PeftModel.from_pretrained(model, str(folder))
    return wrapped.merge_and_unload() if merge else wrapped
