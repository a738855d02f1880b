"""Family name -> adapter class, and the two entry points the workflow uses: load and build_tiny."""

from __future__ import annotations

from pathlib import Path

from .base import FamilyAdapter
from .clip import ClipAdapter
from .dinov2 import Dinov2Adapter
from .dinov3 import Dinov3Adapter
from .mae import MaeAdapter
from .resnet import ResnetAdapter
from .siglip import SiglipAdapter

FAMILIES: dict[str, type[FamilyAdapter]] = {
    adapter.family: adapter
    for adapter in (Dinov2Adapter, Dinov3Adapter, MaeAdapter, ClipAdapter, SiglipAdapter, ResnetAdapter)
}

# the checkpoint each family is studied with by default, and every hub id known to load with it
DEFAULT_HUB_IDS: dict[str, str] = {name: adapter.hub_ids[0] for name, adapter in FAMILIES.items()}
KNOWN_HUB_IDS: dict[str, tuple[str, ...]] = {name: adapter.hub_ids for name, adapter in FAMILIES.items()}


def adapter_class(family: str) -> type[FamilyAdapter]:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; known families: {', '.join(FAMILIES)}") from None


def load_adapter(family: str, folder: str | Path, image_size: int | None = None) -> FamilyAdapter:
    """Load a checkpoint folder (hub snapshot or tiny build) as `family`, analysed at `image_size`."""
    return adapter_class(family).from_folder(folder, image_size)


def build_tiny(family: str, folder: str | Path, seed: int = 0, **overrides) -> None:
    """Write a random-initialised small checkpoint of `family` to `folder` (deterministic in `seed`)."""
    adapter_class(family).build_tiny(folder, seed=seed, **overrides)
