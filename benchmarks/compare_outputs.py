"""Compare two runs' outputs: every HDF5 dataset and every parquet table, value for value.

    python benchmarks/compare_outputs.py BEFORE/results AFTER/results [--files]

Used to show that a refactor leaves the demo's outputs bitwise unchanged: run the demo on the old
code and on the new one (two copies of the workflow), then compare their results/ folders.

- HDF5: the same dataset paths, and per dataset the same dtype, shape and bytes (NaNs equal where
  both are NaN at the same place, since the bytes are compared). Attributes are compared too and
  every difference is listed; attributes that record when or with what a file was made may
  legitimately differ (none of encoderlens' do, except across versions).
- parquet: the same schema (column names and types) and the same values in the same row order
  (pyarrow `Table.equals`); the file-level key/value metadata is compared separately and listed.
- With --present-only, files only one side has are listed but do not count as differences (to
  compare a run that is still going).
- With --files, every other file is compared byte for byte and the differing ones are listed
  (figures and the dashboard embed timestamps and are expected to differ).

Exit status 0 when every dataset and table is equal (attribute and metadata differences are
reported but do not fail), 1 otherwise.
"""

from __future__ import annotations

import argparse
import filecmp
import sys
from pathlib import Path

import h5py
import numpy as np
import pyarrow.parquet as pq


def _datasets(handle: h5py.File) -> dict[str, h5py.Dataset]:
    found = {}
    handle.visititems(lambda name, item: found.__setitem__(name, item) if isinstance(item, h5py.Dataset) else None)
    return found


def _attributes(handle: h5py.File) -> dict[str, dict]:
    found = {"/": dict(handle.attrs)}
    handle.visititems(lambda name, item: found.__setitem__(name, dict(item.attrs)))
    return found


def _same_value(a, b) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.dtype.kind == "O":  # variable-length strings: the bytes would be pointers
        return a.tolist() == b.tolist()
    return a.tobytes() == b.tobytes()


def compare_h5(before: Path, after: Path) -> tuple[list[str], list[str]]:
    """(differences in data, differences in attributes)."""
    problems, attribute_notes = [], []
    with h5py.File(before, "r") as a, h5py.File(after, "r") as b:
        da, db = _datasets(a), _datasets(b)
        if set(da) != set(db):
            problems.append(f"datasets differ: only before {sorted(set(da) - set(db))}, "
                            f"only after {sorted(set(db) - set(da))}")
        for name in sorted(set(da) & set(db)):
            x, y = da[name], db[name]
            if x.dtype != y.dtype or x.shape != y.shape:
                problems.append(f"/{name}: {x.dtype}{x.shape} before, {y.dtype}{y.shape} after")
            elif not _same_value(x[()], y[()]):
                problems.append(f"/{name}: values differ")
        aa, ab = _attributes(a), _attributes(b)
        for item in sorted(set(aa) | set(ab)):
            left, right = aa.get(item, {}), ab.get(item, {})
            for key in sorted(set(left) | set(right)):
                if key not in left or key not in right or not _same_value(left[key], right[key]):
                    attribute_notes.append(f"{item} attribute {key!r}: {left.get(key)!r} -> {right.get(key)!r}")
    return problems, attribute_notes


def compare_parquet(before: Path, after: Path) -> tuple[list[str], list[str]]:
    a, b = pq.read_table(before), pq.read_table(after)
    problems, notes = [], []
    if a.schema.remove_metadata() != b.schema.remove_metadata():
        problems.append(f"schema differs: {a.schema.remove_metadata()} vs {b.schema.remove_metadata()}")
    elif not a.equals(b):
        problems.append(f"values differ ({a.num_rows} rows before, {b.num_rows} after)")
    ma, mb = a.schema.metadata or {}, b.schema.metadata or {}
    keys = sorted(key.decode() for key in set(ma) | set(mb) if ma.get(key) != mb.get(key))
    if keys:
        notes.append(f"file metadata differs in {keys}")
    return problems, notes


def compare(before: Path, after: Path, other_files: bool = False, present_only: bool = False,
            out=sys.stdout) -> bool:
    files_a = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    files_b = {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    same = True
    for only, side in ((files_a - files_b, "before"), (files_b - files_a, "after")):
        for path in sorted(only):
            print(f"ONLY {side}: {path}", file=out)
            same = same and (present_only or path.suffix not in (".h5", ".parquet"))
    counts = {".h5": 0, ".parquet": 0}
    byte_different = []
    for path in sorted(files_a & files_b):
        if path.suffix in (".h5", ".parquet"):
            counts[path.suffix] += 1
            check = compare_h5 if path.suffix == ".h5" else compare_parquet
            problems, notes = check(before / path, after / path)
            for line in problems:
                print(f"DIFF {path}: {line}", file=out)
            for line in notes:
                print(f"NOTE {path}: {line}", file=out)
            same = same and not problems
        elif other_files and not filecmp.cmp(before / path, after / path, shallow=False):
            byte_different.append(str(path))
    print(f"compared {counts['.h5']} HDF5 files and {counts['.parquet']} parquet tables: "
          f"{'all equal' if same else 'DIFFERENCES'}", file=out)
    if other_files:
        print(f"{len(byte_different)} other files differ byte for byte: {byte_different}", file=out)
    return same


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    parser.add_argument("--files", action="store_true", help="also compare every other file byte for byte")
    parser.add_argument("--present-only", action="store_true",
                        help="a file only one side has is listed but not a difference (a run still going)")
    args = parser.parse_args(argv)
    return 0 if compare(args.before, args.after, args.files, args.present_only) else 1


if __name__ == "__main__":
    sys.exit(main())
