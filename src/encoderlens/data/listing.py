"""What a local dataset folder holds, in a form the workflow can compare between runs (stdlib only:
the Snakefile imports it at every DAG build).

A dataset folder's own modification time changes only when an entry directly inside it is added,
removed or renamed, so Snakemake, which compares modification times, misses an image replaced in
place or an edited `building_parts.json`. The workflow therefore gives the manifest rule the dataset's
metadata files as inputs and a fingerprint of its whole listing as a parameter:
`listing_fingerprint` hashes every file's relative path, size and modification time (nanoseconds),
so any file added, removed, renamed, rewritten or touched changes it. It reads directory entries and
one `stat` per file, never file contents.
"""

from __future__ import annotations

import hashlib
import os

from encoderlens.data.local_layout import CAPTION_TABLE_NAMES, COCO_ANNOTATIONS_FILE, IMAGES_METADATA_FILE

# The metadata files each layout's reader may read (the images are covered by the fingerprint). For
# captions the first present is read (captions.csv, else captions.parquet).
METADATA_FILES = {
    "wikichurches": ("building_parts.json", "churches.json", "image_meta.json"),
    "osv5m": ("test.csv", "train.csv"),
    "captions": CAPTION_TABLE_NAMES,
    "coco": (COCO_ANNOTATIONS_FILE, "labels.csv"),  # the first: datasets.<name>.annotations_file
    "boxes": ("boxes.csv", "labels.csv"),
    "images": (IMAGES_METADATA_FILE,),
}
ANY_OF = {"captions"}  # layouts that read one of their metadata files, not all
OPTIONAL = {"images"}  # layouts whose metadata files may all be absent (the images are the dataset)


def metadata_files(dataset_format: str, root, first_name: str | None = None) -> list[str]:
    """The metadata files of a dataset folder that exist, as paths to declare as inputs (where a
    layout reads one of several names, the first present). With none present, the first name, so
    that Snakemake names the missing file; a missing one the reader needs fails the manifest job
    with the reader's own error, and its appearance changes the fingerprint."""
    names = METADATA_FILES.get(dataset_format, ())
    if first_name is not None:  # a configured name for the layout's main file
        names = (first_name, *names[1:])
    paths = [os.path.join(str(root), name) for name in names]
    present = [path for path in paths if os.path.isfile(path)]
    if dataset_format in ANY_OF:
        present = present[:1]
    if dataset_format in OPTIONAL:
        return present
    return present or paths[:1]


def listing_fingerprint(root) -> str:
    """SHA-256 of every file under `root` (symlinks followed, each directory once): relative path,
    size and modification time in nanoseconds, in sorted order. "absent" when `root` does not exist."""
    root = os.fspath(root)
    if not os.path.isdir(root):
        return "absent"
    digest = hashlib.sha256()
    seen_directories = set()
    pending = [""]  # relative paths of directories still to list
    while pending:
        relative = pending.pop()
        folder = os.path.join(root, relative) if relative else root
        identity = os.stat(folder)
        key = (identity.st_dev, identity.st_ino)
        if key in seen_directories:
            continue  # a symlink loop or a directory reached twice
        seen_directories.add(key)
        lines, subfolders = [], []
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    if entry.is_dir():
                        subfolders.append(relative + "/" + entry.name if relative else entry.name)
                        continue
                    status = entry.stat()
                    lines.append(f"{entry.name}\t{status.st_size}\t{status.st_mtime_ns}")
                except FileNotFoundError:
                    lines.append(f"{entry.name}\tbroken link")  # a dangling symlink
        lines.sort()
        listing = "\n".join([relative + "/"] + lines) + "\n"  # the folder, then its files
        digest.update(listing.encode("utf-8", "surrogateescape"))
        subfolders.sort(reverse=True)  # popped from the end: visited in sorted order
        pending.extend(subfolders)
    return digest.hexdigest()
