"""benchmarks/compare_outputs.py, which shows that a refactor leaves a run's outputs unchanged."""

import importlib.util
import io
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "compare_outputs.py"
spec = importlib.util.spec_from_file_location("compare_outputs", SCRIPT)
compare_outputs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_outputs)


def write_run(folder: Path, value=0.5, attribute="a", row_order=(0, 1, 2)):
    (folder / "m").mkdir(parents=True)
    with h5py.File(folder / "m" / "attention.h5", "w") as handle:
        handle.create_dataset("ids", data=np.array(["x", "y"], dtype=object), dtype=h5py.string_dtype())
        handle.create_dataset("cls", data=np.array([[value, 1.0], [np.nan, 2.0]], dtype=np.float16))
        handle.attrs["revision"] = attribute
    table = pd.DataFrame({"method": ["cls", "rollout", "mean"], "iou": [0.1, np.nan, 0.3]})
    table.iloc[list(row_order)].reset_index(drop=True).to_parquet(folder / "m" / "alignment.parquet")


def run(before, after, **options):
    out = io.StringIO()
    return compare_outputs.compare(before, after, out=out, **options), out.getvalue()


def test_equal_runs_pass_and_attribute_changes_are_listed(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", attribute="b")
    same, text = run(tmp_path / "a", tmp_path / "b")
    assert same, text
    assert "compared 1 HDF5 files and 1 parquet tables: all equal" in text
    assert "NOTE m/attention.h5: / attribute 'revision': 'a' -> 'b'" in text


def test_one_changed_bit_or_row_order_is_a_difference(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b", value=np.nextafter(np.float16(0.5), np.float16(1)))
    write_run(tmp_path / "c", row_order=(1, 0, 2))
    same, text = run(tmp_path / "a", tmp_path / "b")
    assert not same and "DIFF m/attention.h5: /cls: values differ" in text
    same, text = run(tmp_path / "a", tmp_path / "c")
    assert not same and "DIFF m/alignment.parquet: values differ" in text


def test_a_missing_table_fails_unless_the_run_is_still_going(tmp_path):
    write_run(tmp_path / "a")
    write_run(tmp_path / "b")
    (tmp_path / "b" / "m" / "alignment.parquet").unlink()
    assert not run(tmp_path / "a", tmp_path / "b")[0]
    same, text = run(tmp_path / "a", tmp_path / "b", present_only=True)
    assert same and "ONLY before: m/alignment.parquet" in text
