"""Tuned weights on top of a loaded backbone, so a fine-tuned variant is extracted exactly like frozen.

A variant's folder holds one of:
- `adapter/` — a peft LoRA adapter (`adapter_config.json`, `adapter_model.safetensors`); it is merged
  into the backbone's weights, which leaves the model's modules (and its attention outputs) as they were;
- `backbone.safetensors` — replacement tensors for part of the backbone (the unfrozen blocks of full
  fine-tuning), named as in the backbone's `state_dict`; a name the backbone lacks or a shape that
  differs is an error, never silently skipped.
A folder with neither (a linear probe leaves the backbone untouched) changes nothing.

Every strategy also leaves `head.safetensors`: the classification head (`torch.nn.Linear` on the pooled
embedding, as `finetune.training` trains it), class names in its metadata; `load_head` reads it back
for the gradient map methods and faithfulness curves to explain (`attention.targets.ExplainedScalar`).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

ADAPTER = "adapter"
BACKBONE = "backbone.safetensors"
HEAD = "head.safetensors"


def apply_tuned_weights(model: torch.nn.Module, folder: str | Path) -> tuple[torch.nn.Module, str]:
    """(model with the variant's weights, what was applied: "lora", "partial" or "none")."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tuned weights folder {folder} does not exist")
    if (folder / ADAPTER / "adapter_config.json").exists():
        from peft import PeftModel

        merged = PeftModel.from_pretrained(model, str(folder / ADAPTER)).merge_and_unload()
        return merged, "lora"
    if (folder / BACKBONE).exists():
        from safetensors.torch import load_file

        replacements = load_file(str(folder / BACKBONE))
        own = model.state_dict()
        unknown = sorted(set(replacements) - set(own))
        if unknown:
            raise ValueError(f"{folder / BACKBONE}: {len(unknown)} tensors the backbone does not have, "
                             f"e.g. {unknown[:3]}")
        wrong = [k for k, v in replacements.items() if tuple(v.shape) != tuple(own[k].shape)]
        if wrong:
            raise ValueError(f"{folder / BACKBONE}: shapes differ from the backbone for {wrong[:3]}")
        model.load_state_dict(replacements, strict=False)
        return model, "partial"
    return model, "none"


def load_head(folder: str | Path | None) -> torch.nn.Linear | None:
    """The variant's classification head (eval mode, float32, `classes` its class names from the
    metadata), or None when `folder` is None or holds no head."""
    if folder is None or not (Path(folder) / HEAD).exists():
        return None
    from safetensors import safe_open

    path = Path(folder) / HEAD
    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
        metadata = handle.metadata() or {}
    if set(tensors) != {"weight", "bias"} or tensors["weight"].ndim != 2:
        raise ValueError(f"{path}: expected a linear head (weight (classes, D), bias), got "
                         f"{ {key: tuple(value.shape) for key, value in tensors.items()} }")
    n_classes, width = tensors["weight"].shape
    head = torch.nn.Linear(width, n_classes)
    head.load_state_dict({key: value.float() for key, value in tensors.items()})
    head.classes = json.loads(metadata["classes"]) if "classes" in metadata else None
    return head.eval().requires_grad_(False)
