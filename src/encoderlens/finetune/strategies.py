"""What each fine-tuning strategy trains, and which tensors it saves.

- `linear`: the backbone frozen (eval mode, no gradients), a linear head on the pooled embedding.
- `lora`: peft LoRA matrices on the attention projections, plus the head.
- `full`: the last N blocks and what follows them (final norm, pooling head) unfrozen, plus the head.

Frozen parts stay in eval mode in every strategy, so a frozen BatchNorm never updates its running
statistics and the saved tensors are exactly the trained ones.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from encoderlens.models.base import FamilyAdapter

from .lora import LoraSettings, wrap_with_lora

STRATEGIES = ("linear", "lora", "full")


@dataclass
class LearningRates:
    head: float = 1e-3
    lora: float = 1e-4
    backbone: float = 1e-5


@dataclass
class Prepared:
    """A backbone made ready for one strategy.

    state_keys: keys of `adapter.model.state_dict()` that training changes (checkpointed, saved);
    param_groups: AdamW groups with their learning rates; train_modules: set to train mode each epoch.
    """

    strategy: str
    adapter: FamilyAdapter
    head: torch.nn.Linear
    param_groups: list[dict]
    state_keys: list[str] = field(default_factory=list)
    train_modules: list[torch.nn.Module] = field(default_factory=list)
    unfrozen_blocks: int = 0

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return [p for group in self.param_groups for p in group["params"]]

    def set_train_mode(self) -> None:
        self.adapter.model.eval()
        for module in self.train_modules:
            module.train()
        self.head.train()

    def set_eval_mode(self) -> None:
        self.adapter.model.eval()
        self.head.eval()

    def tuned_state(self) -> dict[str, torch.Tensor]:
        own = self.adapter.model.state_dict()
        return {key: own[key].detach().cpu().clone() for key in self.state_keys}


def count_parameters(parameters) -> int:
    return int(sum(p.numel() for p in parameters))


def prepare(adapter: FamilyAdapter, strategy: str, n_classes: int, last_blocks: int = 4,
            lora: LoraSettings = LoraSettings(), rates: LearningRates = LearningRates(),
            seed: int = 0) -> Prepared:
    """Freeze, wrap or unfreeze `adapter.model` for `strategy` and build the head (seeded)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown fine-tuning strategy {strategy!r}; known: {', '.join(STRATEGIES)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = torch.nn.Linear(adapter.info.hidden_size, n_classes)
    for parameter in adapter.model.parameters():
        parameter.requires_grad_(False)
    head_group = {"params": list(head.parameters()), "lr": rates.head, "name": "head"}

    if strategy == "linear":
        return Prepared(strategy, adapter, head, [head_group])

    if strategy == "lora":
        wrap_with_lora(adapter, lora)
        named = [(name, p) for name, p in adapter.model.named_parameters() if p.requires_grad]
        lora_modules = [m for name, m in adapter.model.named_modules() if name.endswith("lora_dropout")]
        return Prepared(strategy, adapter, head,
                        [head_group, {"params": [p for _, p in named], "lr": rates.lora, "name": "lora"}],
                        state_keys=[name for name, _ in named], train_modules=lora_modules)

    blocks = adapter.blocks()
    if not 1 <= last_blocks:
        raise ValueError(f"full fine-tuning needs last_blocks >= 1, not {last_blocks}")
    unfrozen = blocks[-last_blocks:] + adapter.after_blocks()
    prefixes = _module_names(adapter.model, unfrozen)
    for module in unfrozen:
        for parameter in module.parameters():
            parameter.requires_grad_(True)
    backbone = [p for p in adapter.model.parameters() if p.requires_grad]
    keys = [key for key in adapter.model.state_dict() if any(key.startswith(p + ".") for p in prefixes)]
    return Prepared(strategy, adapter, head,
                    [head_group, {"params": backbone, "lr": rates.backbone, "name": "backbone"}],
                    state_keys=keys, train_modules=unfrozen, unfrozen_blocks=min(last_blocks, len(blocks)))


def _module_names(model: torch.nn.Module, modules: list[torch.nn.Module]) -> list[str]:
    names = {id(module): name for name, module in model.named_modules()}
    missing = [m for m in modules if id(m) not in names]
    if missing:
        raise RuntimeError("a module to unfreeze is not part of the model")
    return [names[id(m)] for m in modules]
