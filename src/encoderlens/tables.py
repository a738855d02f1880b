"""Tables written the way every stage writes its outputs: beside the target, then renamed."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd


def write_table(frame: pd.DataFrame, path) -> None:
    # Write beside the target and rename, so a crashed job never leaves a half-written table that
    # looks complete to Snakemake or to a reader.
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name in the same folder (os.replace is atomic only within one file system); created
    # by the writer itself, so it gets the usual permissions rather than mkstemp's 0600.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        if path.suffix == ".parquet":
            frame.to_parquet(tmp, index=False)
        elif path.suffix in (".csv", ".tsv"):
            frame.to_csv(tmp, index=False, sep="\t" if path.suffix == ".tsv" else ",")
        else:
            raise ValueError(f"{path}: unsupported table format {path.suffix!r} (use .parquet or .csv)")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
