"""Fetch WikiChurches (Barz & Denzler 2021) from Zenodo record 5166987.

Only the images the study uses are extracted from the ~10 GB images.zip: the annotated ones (keys of
building_parts.json's "annotations") and, with images="annotated+pool", every image of image_meta.json
(keyed by file name) whose church (the name before the first "_") carries at least one of the four
studied styles in churches.json. The result has the
layout `encoderlens.data.wikichurches.read_wikichurches` reads:

    dest/building_parts.json, churches.json, image_meta.json, style_names.txt, parent_child_rel.txt
    dest/images/<file name>            flat, whatever folder the archive nests them in
    dest/.fetch_complete.json          which image set was extracted, and what the archive lacked

The metadata files are kept exactly as Zenodo ships them, so image_meta.json still lists images that
were not extracted (other styles, or the pool under images="annotated"); the reader reports those as
missing-image skip records.

Crash safety: downloads go to `<dest>.download/` (kept on failure, so the `.part` of images.zip
resumes on the next call); the folder is assembled in `<dest>.tmp/` and renamed to `dest` only when
complete, so a `dest` that exists is always a finished fetch.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path, PurePosixPath
from typing import Literal

import requests

from encoderlens.data.archive import safe_extract
from encoderlens.data.download import DownloadError, download_file, redact_url
from encoderlens.data.wikichurches import STYLES, church_of, load_json

log = logging.getLogger(__name__)

RECORD_ID = "5166987"
BASE_URL = f"https://zenodo.org/records/{RECORD_ID}/files"
API_URL = f"https://zenodo.org/api/records/{RECORD_ID}"
METADATA_FILES = ("building_parts.json", "churches.json", "image_meta.json", "style_names.txt",
                  "parent_child_rel.txt")
IMAGES_ZIP = "images.zip"
WIKICHURCHES_FILES = METADATA_FILES + (IMAGES_ZIP,)
IMAGE_SETS = ("annotated", "annotated+pool")
MARKER = ".fetch_complete.json"


def file_url(base_url: str, name: str) -> str:
    return f"{base_url.rstrip('/')}/{name}?download=1"


def zenodo_file_info(api_url: str = API_URL, timeout: float = 60,
                     headers: dict | None = None) -> tuple[dict[str, int], dict[str, str]]:
    """(sizes, checksums) by file name from a Zenodo records API answer, for `fetch_wikichurches`.

    The API lists each file as {"key": name, "size": bytes, "checksum": "md5:<hex>"}.
    """
    try:
        response = requests.get(api_url, timeout=timeout, headers=headers or {})
    except requests.RequestException as error:
        raise DownloadError(f"{redact_url(api_url)}: {type(error).__name__}") from None
    if response.status_code != 200:
        raise DownloadError(f"{redact_url(api_url)}: HTTP {response.status_code} {response.reason}")
    sizes, checksums = {}, {}
    for entry in response.json().get("files") or []:
        name = entry.get("key") or entry.get("filename")
        if name and entry.get("size") is not None:
            sizes[name] = int(entry["size"])
        if name and entry.get("checksum"):
            checksums[name] = str(entry["checksum"])
    return sizes, checksums


def study_images(parts: dict, churches: dict, image_meta: dict, images: str = "annotated") -> set[str]:
    """File names to extract: annotated images, plus the studied-style churches' images if asked."""
    wanted = set((parts.get("annotations") or {}).keys())
    if images == "annotated+pool":
        studied = {qid for qid, info in churches.items()  # the field the reader takes styles from
                   if isinstance(info, dict) and set(map(str, info.get("styles") or [])) & set(STYLES)}
        wanted.update(name for name in image_meta if church_of(name) in studied)
    return wanted


def _finished_set(dest: Path) -> str | None:
    """The image set of a completed fetch at `dest`, or None if there is none."""
    try:
        return json.loads((dest / MARKER).read_text())["images"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _swap_in(tmp: Path, dest: Path) -> None:
    # A folder cannot be renamed onto a non-empty one: move the old one aside first. A crash between
    # the two renames leaves no `dest`, which the next call simply rebuilds.
    old = dest.with_name(dest.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if dest.exists():
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)


def fetch_wikichurches(dest, base_url: str = BASE_URL, checksums: dict[str, str] | None = None,
                       sizes: dict[str, int] | None = None,
                       images: Literal["annotated", "annotated+pool"] = "annotated",
                       retries: int = 5, *, keep_archive: bool = True, backoff: float = 0.5,
                       timeout: float = 60, chunk_size: int = 1 << 20,
                       headers: dict | None = None, archive_limits: dict | None = None) -> Path:
    """Download WikiChurches into `dest` and extract the study's images; returns `dest`.

    checksums/sizes: by file name ("md5:<hex>" as Zenodo lists them, see `zenodo_file_info`);
    files without an entry are checked only against the server's Content-Length.
    keep_archive=False deletes `<dest>.download/` (images.zip included) after success.
    retries, backoff, timeout, chunk_size, headers: passed to `download_file` for every file.
    archive_limits: `max_ratio` / `max_bytes` for `safe_extract` (its defaults where absent); a refused
    archive leaves no temporary folder behind.
    A `dest` already fetched with the same `images` is returned untouched; one fetched with the other
    set is rebuilt; a non-empty `dest` not made by this function raises FileExistsError.
    """
    if images not in IMAGE_SETS:
        raise ValueError(f"images={images!r}: expected one of {IMAGE_SETS}")
    dest = Path(dest)
    finished = _finished_set(dest)
    if finished == images:
        log.info("%s: WikiChurches already fetched (%s)", dest, images)
        return dest
    if finished is None and dest.exists() and (dest.is_file() or any(dest.iterdir())):
        raise FileExistsError(f"{dest}: exists but was not made by fetch_wikichurches "
                              f"(no {MARKER}); remove it or choose another folder")
    checksums, sizes = checksums or {}, sizes or {}
    cache = dest.with_name(dest.name + ".download")

    def get(name):
        return download_file(file_url(base_url, name), cache / name, expected_size=sizes.get(name),
                             checksum=checksums.get(name), retries=retries, backoff=backoff,
                             timeout=timeout, chunk_size=chunk_size, headers=headers)

    # Metadata first: a malformed JSON file fails the fetch before the 10 GB archive is requested.
    for name in METADATA_FILES:
        get(name)
    wanted = study_images(load_json(cache / "building_parts.json"), load_json(cache / "churches.json"),
                          load_json(cache / "image_meta.json"), images)
    archive = get(IMAGES_ZIP)

    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)  # left by an interrupted extraction
    tmp.mkdir(parents=True)
    try:
        for name in METADATA_FILES:
            shutil.copy2(cache / name, tmp / name)
        written = safe_extract(archive, tmp / "images", flatten=True, **(archive_limits or {}),
                               select=lambda member: PurePosixPath(member.replace("\\", "/")).name in wanted)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    missing = sorted(wanted - {path.name for path in written})
    if missing:
        log.warning("%s: %d wanted images are not in %s, e.g. %s", dest, len(missing), archive,
                    missing[:5])
    (tmp / MARKER).write_text(json.dumps({"record": RECORD_ID, "images": images,
                                          "extracted": len(written), "missing": missing}, indent=1))
    _swap_in(tmp, dest)
    log.info("%s: %d images extracted (%s)", dest, len(written), images)
    if not keep_archive:
        shutil.rmtree(cache, ignore_errors=True)
    return dest
