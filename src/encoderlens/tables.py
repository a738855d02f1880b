"""Tables and folders written the way every stage writes its outputs: beside the target, then renamed."""

from __future__ import annotations

import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path

import pandas as pd


# A spreadsheet reads a cell that begins with one of these as a formula (OWASP, "CSV Injection")
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def spreadsheet_safe(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every text cell that a spreadsheet would run as a formula prefixed with a quote
    ("=1+1" -> "'=1+1"). Numbers are left as they are, in numeric columns and as text ("-1.5")."""
    def neutralise(value):
        if isinstance(value, str) and value.startswith(FORMULA_STARTS) and not _is_number(value):
            return "'" + value
        return value

    text_columns = [column for column in frame.columns
                    if frame[column].dtype == object or pd.api.types.is_string_dtype(frame[column])]
    if not text_columns:
        return frame
    frame = frame.copy()
    for column in text_columns:
        values = [neutralise(value) for value in frame[column]]  # None and NaN stay as they are
        frame[column] = pd.Series(values, index=frame.index, dtype=frame[column].dtype)
    return frame


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
        elif path.suffix in (".csv", ".tsv"):  # meant to be opened in a spreadsheet too
            spreadsheet_safe(frame).to_csv(tmp, index=False, sep="\t" if path.suffix == ".tsv" else ",")
        else:
            raise ValueError(f"{path}: unsupported table format {path.suffix!r} (use .parquet or .csv)")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextmanager
def atomic_folder(folder):
    """Yield an empty temporary sibling of `folder` to fill; when the block ends without an error it
    replaces `folder` by a rename, and in every case the temporary folder is gone afterwards."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def durable_write(path, write, what: str = "file", temporary=None) -> None:
    """Write `path` through `write(handle)` into a temporary sibling, flush it to disk (fsync), rename
    it over `path`, then make the rename durable: neither a kill nor a power loss leaves half a file
    under the final name. An OSError names `path` and `what` it is."""
    path = Path(path)
    temporary = Path(temporary) if temporary is not None else path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise OSError(f"{path}: could not write the {what} ({error})") from error
    finally:
        if temporary.exists():
            temporary.unlink()
    fsync_folder(path.parent)


def fsync_folder(folder) -> None:
    """Make a rename inside `folder` durable (where the platform allows opening a folder)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

