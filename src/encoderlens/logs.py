"""Sending a job's diagnostics to its log file, without the noise, ending in one line of what it did.

A script's first act is `log_to(snakemake.log[0])` and its last `log_done(snakemake.output)`: the log
then always ends with a line such as

    done: wrote results/demo/m/frozen/alignment.parquet (14,976 rows) in 3.1 s

so no log is empty and a person reading `logs/` sees what each job did without opening its outputs.
Library messages that carry no information for the user (`NOISE_RECORDS`, `NOISE_WARNINGS`, progress
bars) are dropped; every other
warning stays.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Iterable

_STARTED: list[float] = []

# Library log records that say nothing to the user, by the exact logger that emits them (a filter on
# a logger object holds for its own records, and logging returns the same object to the library).
# transformers' load report when it lists only UNEXPECTED keys: the text tower and projections of a
# CLIP/SigLIP checkpoint, the MAE decoder, which the vision encoder does not use on purpose (missing
# or mismatched weights make `from_pretrained_strict` raise, so those reports are kept).
def _unused_weights_report(message: str) -> bool:
    return ("LOAD REPORT" in message and "UNEXPECTED" in message
            and not any(word in message for word in ("MISSING", "MISMATCH", "CONVERSION")))


NOISE_RECORDS = {"transformers.modeling_utils": _unused_weights_report}
# (category, message pattern) of warnings known to be harmless here, each seen in the demo's logs:
# peft asks a transformers 5 model for `is_gradient_checkpointing` when it wraps it for LoRA
NOISE_WARNINGS = (
    (FutureWarning, r"`is_gradient_checkpointing` is deprecated"),
)


class _DropNoise(logging.Filter):
    def __init__(self, is_noise):
        super().__init__()
        self.is_noise = is_noise

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.is_noise(record.getMessage())


def quiet_known_noise() -> None:
    """Drop the library messages listed in NOISE_RECORDS / NOISE_WARNINGS and the progress bars of
    huggingface_hub and transformers (redrawn lines that fill a log file); keep every other message."""
    for category, pattern in NOISE_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name, is_noise in NOISE_RECORDS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise(is_noise))
    # read by huggingface_hub when it is imported, and through it by transformers; switched off
    # directly where they are imported already
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "huggingface_hub" in sys.modules:
        sys.modules["huggingface_hub"].utils.disable_progress_bars()
    if "transformers" in sys.modules:
        sys.modules["transformers"].utils.logging.disable_progress_bar()


def log_to(path: str | Path) -> None:
    """Send stderr (warnings, tracebacks, progress bars) and logging to `path`, line-buffered."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    stream = open(path, "a", buffering=1, encoding="utf-8")
    sys.stderr = stream
    logging.basicConfig(stream=stream, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    quiet_known_noise()
    _STARTED[:] = [time.perf_counter()]


def _count(path: Path) -> str:
    """What one output holds, in the words a reader checks: rows, images, files."""
    if path.is_dir():
        files = [p for p in path.rglob("*") if p.is_file()]
        return f"{_plural(len(files), 'file')}, {_size(sum(p.stat().st_size for p in files))}"
    if not path.exists():
        return "missing"
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq
            return _plural(pq.ParquetFile(path).metadata.num_rows, "row")
        if suffix in (".h5", ".hdf5"):
            import h5py
            with h5py.File(path, "r") as store:
                if "ids" in store:
                    return f"{_plural(len(store['ids']), 'image')}, {_size(path.stat().st_size)}"
        if suffix in (".csv", ".tsv"):
            with open(path, "rb") as handle:
                return _plural(max(sum(1 for _ in handle) - 1, 0), "row")
    except Exception as error:  # a summary line must never fail the job that made the output
        return f"unreadable ({type(error).__name__})"
    return _size(path.stat().st_size)


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _size(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:,.0f} {unit}" if unit == "B" else f"{n_bytes:,.1f} {unit}"
        n_bytes /= 1024
    raise AssertionError("unreachable")


def done_line(outputs: Iterable[str | Path], what: str | None = None, seconds: float | None = None) -> str:
    """'done: <what>; wrote <output> (<count>), ... in <s> s' for the outputs of one job."""
    written = ", ".join(f"{Path(p).as_posix()} ({_count(Path(p))})" for p in outputs)
    parts = [part for part in (what, f"wrote {written}" if written else "") if part]
    timing = f" in {seconds:,.1f} s" if seconds is not None else ""
    return f"done: {'; '.join(parts) or 'nothing to write'}{timing}"


def log_done(outputs: Iterable[str | Path], what: str | None = None) -> str:
    """Write the job's last log line (see `done_line`), timed from `log_to`; returns it."""
    seconds = time.perf_counter() - _STARTED[0] if _STARTED else None
    line = done_line(list(outputs), what, seconds)
    print(line, file=sys.stderr, flush=True)
    return line
