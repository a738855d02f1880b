"""Building checkpoint folders without ever leaving a half-written one behind."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from encoderlens.models.registry import build_tiny


def build_tiny_atomically(family: str, folder: str | Path, seed: int = 0, **overrides) -> None:
    """Build a tiny `family` checkpoint in a temporary sibling folder, then rename it to `folder`."""
    folder = Path(folder)
    temporary = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(temporary, ignore_errors=True)
    build_tiny(family, temporary, seed=seed, **overrides)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(temporary, folder)
