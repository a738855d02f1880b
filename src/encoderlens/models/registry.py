"""Family name -> adapter class, and the two entry points the workflow uses: load and build_tiny.

The families and where their adapters live are the traits table's (`families.FAMILIES`); adding a
family is a row there plus its adapter module.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path

from .base import FamilyAdapter
from .families import FAMILIES as TRAITS
from .families import family_traits


def _import_adapter(spec: str) -> type[FamilyAdapter]:
    module, name = spec.split(":")
    return getattr(import_module(f"{__package__}.{module}"), name)


FAMILIES: dict[str, type[FamilyAdapter]] = {name: _import_adapter(traits.adapter) for name, traits in TRAITS.items()}

# the checkpoint each family is studied with by default, and every hub id known to load with it
DEFAULT_HUB_IDS: dict[str, str] = {name: traits.default_hub_id for name, traits in TRAITS.items()}
KNOWN_HUB_IDS: dict[str, tuple[str, ...]] = {name: traits.hub_ids for name, traits in TRAITS.items()}


def adapter_class(family: str) -> type[FamilyAdapter]:
    family_traits(family)  # a clear error for an unknown family
    return FAMILIES[family]


def load_adapter(family: str, folder: str | Path, image_size: int | None = None) -> FamilyAdapter:
    """Load a checkpoint folder (hub snapshot or tiny build) as `family`, analysed at `image_size`."""
    return adapter_class(family).from_folder(folder, image_size)


def build_tiny(family: str, folder: str | Path, seed: int = 0, **overrides) -> None:
    """Write a random-initialised small checkpoint of `family` to `folder` (deterministic in `seed`)."""
    adapter_class(family).build_tiny(folder, seed=seed, **overrides)
