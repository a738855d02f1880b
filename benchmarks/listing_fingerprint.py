"""How long the local-dataset fingerprint takes (`encoderlens.data.listing.listing_fingerprint`), which
the workflow computes at every DAG build that includes a local dataset's manifest.

    python benchmarks/listing_fingerprint.py --files 5000000 --per-folder 50000 [--root /tmp/tree]

Builds (once; kept for reruns) a tree laid out as OSV-5M's unpacked shards, images/test/NN/<id>.jpg,
`--per-folder` files a folder, each file a few bytes, then times the fingerprint `--repeats` times
(warm page cache: the first run after building) and reports wall and CPU seconds and µs per file. For
comparison it also times a bare `os.scandir` walk that stats every file (the floor for any listing that
includes sizes and modification times) and GNU `find -printf` (a C program doing the same).
"""

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from encoderlens.data.listing import listing_fingerprint  # noqa: E402


def build(root: Path, files: int, per_folder: int) -> None:
    marker = root / f".built-{files}-{per_folder}"
    if marker.exists():
        return
    for folder_index in range((files + per_folder - 1) // per_folder):
        folder = root / "images" / "test" / f"{folder_index:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        first = folder_index * per_folder
        for number in range(first, min(first + per_folder, files)):
            descriptor = os.open(folder / f"{number:09d}.jpg", os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(descriptor, b"jpg")
            os.close(descriptor)
    (root / "test.csv").write_text("id\n")
    marker.touch()


def bare_walk(root: Path) -> int:
    count, pending = 0, [str(root)]
    while pending:
        with os.scandir(pending.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    pending.append(entry.path)
                else:
                    entry.stat()
                    count += 1
    return count


def timed(function, *args):
    before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    value = function(*args)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return value, time.perf_counter() - started, cpu


def find_printf(root: Path):
    started = time.perf_counter()
    find = subprocess.Popen(["find", str(root), "-type", "f", "-printf", "%P\t%s\t%T@\n"],
                            stdout=subprocess.PIPE)
    digest = subprocess.run(["sha256sum"], stdin=find.stdout, capture_output=True, check=True)
    find.wait()
    return digest.stdout.split()[0].decode(), time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--per-folder", type=int, default=50_000)
    parser.add_argument("--root", type=Path, default=Path("/tmp/encoderlens_listing_benchmark"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = args.root / f"{args.files}"
    started = time.perf_counter()
    build(root, args.files, args.per_folder)
    print(f"tree of {args.files:,} files ready in {time.perf_counter() - started:.1f} s")
    for _ in range(args.repeats):
        fingerprint, wall, cpu = timed(listing_fingerprint, root)
        print(f"listing_fingerprint: {wall:.2f} s wall, {cpu:.2f} s CPU, "
              f"{1e6 * wall / args.files:.2f} µs/file ({fingerprint[:12]})")
    count, wall, cpu = timed(bare_walk, root)
    print(f"bare scandir + stat walk: {wall:.2f} s wall, {cpu:.2f} s CPU ({count:,} files)")
    _, wall = find_printf(root)
    print(f"find -printf | sha256sum: {wall:.2f} s wall")


if __name__ == "__main__":
    main()
