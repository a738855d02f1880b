"""Job logs a person reads: library noise dropped, real warnings kept, one closing line per job.

Each log test runs a small job script in a fresh interpreter, as Snakemake runs a workflow script."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pandas as pd
import pytest

from encoderlens import logs


def run_job(tmp_path, body: str) -> str:
    log = tmp_path / "logs" / "job.log"
    script = "from encoderlens.logs import log_done, log_to\nlog_to(%r)\n" % str(log) + textwrap.dedent(body)
    result = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return log.read_text()


def test_done_line_counts_rows_images_and_files(tmp_path):
    table = tmp_path / "scores.parquet"
    pd.DataFrame({"x": np.arange(14_976)}).to_parquet(table)
    store = tmp_path / "attention.h5"
    with h5py.File(store, "w") as handle:
        handle["ids"] = np.array([b"a", b"b", b"c"])
    folder = tmp_path / "site"
    (folder / "data").mkdir(parents=True)
    (folder / "index.html").write_bytes(b"x" * 1000)
    (folder / "data" / "index.js").write_bytes(b"y" * 2048)
    csv = tmp_path / "skipped.csv"
    csv.write_text("image_id,reason\na,broken\n")
    line = logs.done_line([table, store, folder, csv], "scored 3 maps", seconds=3.14159)
    assert line.startswith(f"done: scored 3 maps; wrote {table.as_posix()} (14,976 rows), "
                           f"{store.as_posix()} (3 images, ")
    assert line.endswith(f"{folder.as_posix()} (2 files, 3.0 KB), {csv.as_posix()} (1 row) in 3.1 s")
    assert logs.done_line([]) == "done: nothing to write"


def test_log_ends_with_the_done_line(tmp_path):
    text = run_job(tmp_path, """
        import pandas as pd
        pd.DataFrame({"x": [1, 2]}).to_parquet("t.parquet")
        log_done(["t.parquet"])
    """)
    assert text.splitlines()[-1].startswith("done: wrote t.parquet (2 rows) in ")


def test_unused_weight_report_is_dropped_and_real_warnings_stay(tmp_path):
    text = run_job(tmp_path, """
        import logging, warnings
        report = logging.getLogger("transformers.modeling_utils")
        report.warning("CLIPVisionModel LOAD REPORT from: m\\ntext_model.x | UNEXPECTED\\ntext_projection.w | UNEXPECTED")
        report.warning("Dinov2Model LOAD REPORT from: m\\nembeddings.cls_token | MISSING")
        logging.getLogger("encoderlens.test").warning("a real warning")
        warnings.warn("deprecated thing", FutureWarning)
        log_done([])
    """)
    assert "text_projection" not in text
    assert "embeddings.cls_token | MISSING" in text
    assert "a real warning" in text and "deprecated thing" in text


def test_tiny_clip_loads_without_the_text_tower_report_or_progress_bars(tmp_path):
    """The real load: transformers reports the unused text tower of a CLIP checkpoint and draws a
    'Loading weights' bar, peft's LoRA wrap warns of a deprecated property; none of it reaches the log
    (all of it did before), another FutureWarning does."""
    pytest.importorskip("transformers")
    text = run_job(tmp_path, """
        from encoderlens.models.build import build_tiny_atomically
        from encoderlens.models.clip import ClipAdapter
        build_tiny_atomically("clip", "tiny_clip")
        model = ClipAdapter.load_model("tiny_clip")
        # peft asks the model for a property transformers 5 deprecated (a FutureWarning per wrap)
        from peft import LoraConfig, get_peft_model
        get_peft_model(model, LoraConfig(r=2, target_modules=list(ClipAdapter.lora_target_modules)))
        import warnings
        warnings.warn("a FutureWarning of our own", FutureWarning)
        log_done(["tiny_clip"])
    """)
    assert "LOAD REPORT" not in text and "text_model" not in text
    assert "is_gradient_checkpointing" not in text and "a FutureWarning of our own" in text
    assert "Loading weights" not in text and "Writing model shards" not in text
    assert text.splitlines()[-1].startswith("done: wrote tiny_clip (")
