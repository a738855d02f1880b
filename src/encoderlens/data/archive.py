"""Safe zip extraction: every member is checked before the first byte is written.

A member is refused (UnsafeArchiveError naming the archive and the member) if its name is absolute,
starts with a drive letter, has a `..` component (with `/` or `\\` as separators, since archives
made on Windows use either), or if it is a symlink or another special file per the Unix mode in
`external_attr`. The check covers every member of the archive, selected or not: an archive that
carries a path-traversal entry is not trusted for any of its other entries either.

The members to be written are also refused, before the first byte is written, when their declared
uncompressed sizes add up to more than `max_ratio` times the archive's own size or more than
`max_bytes` (a zip bomb; zipfile writes no more than a member declares, and a member whose data does
not match its declared size fails its CRC check). A refusal cannot succeed on a retry, so the
download rules that call this are not retried (network failures are retried inside the download).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

_DRIVE = re.compile(r"^[A-Za-z]:")


MAX_UNPACKED_RATIO = 100  # JPEG archives unpack to about 1x their size, text to 5-10x; bombs to 1000x+
MAX_UNPACKED_BYTES = 200 * 10**9  # WikiChurches' images.zip is 12 GB, an OSV-5M shard about 1 GB


class UnsafeArchiveError(ValueError):
    """The archive has a member that could write outside the destination or create a link."""


class ArchiveTooLargeError(UnsafeArchiveError):
    """The members to extract declare more bytes than the limits allow."""


def check_unpacked_size(zip_path: Path, infos: list[zipfile.ZipInfo], max_ratio: float,
                        max_bytes: int) -> None:
    """Raise ArchiveTooLargeError when `infos` declare more than the limits derived from the archive's
    size on disk (`max_ratio` times it, and at most `max_bytes`)."""
    total = sum(info.file_size for info in infos)
    archive_bytes = zip_path.stat().st_size
    limit = min(max_ratio * archive_bytes, max_bytes)
    if total > limit:
        largest = max(infos, key=lambda info: info.file_size)
        raise ArchiveTooLargeError(
            f"{zip_path}: refusing to extract {len(infos)} member(s) declaring {total:,} bytes "
            f"uncompressed, more than the limit of {int(limit):,} (min of {max_ratio:g} x the archive's "
            f"{archive_bytes:,} bytes and {max_bytes:,}; largest member {largest.filename!r}, "
            f"{largest.file_size:,} bytes); nothing was extracted. Raise archives.max_unpacked_ratio "
            f"or archives.max_unpacked_gb in the config if the archive is trusted")


def member_problem(info: zipfile.ZipInfo) -> str | None:
    """None if the member is a plain relative file or folder, else why it is unsafe."""
    name = info.filename
    parts = re.split(r"[\\/]", name)
    if name.startswith(("/", "\\")):
        return "absolute path"
    if _DRIVE.match(name):
        return "drive letter"
    if ".." in parts:
        return "'..' path component"
    mode = info.external_attr >> 16
    file_type = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        return "symbolic link"
    # 0 means the archiver stored no Unix mode (e.g. made on Windows): a plain entry.
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        return f"special file (mode {oct(mode)})"
    return None


def _target(dest: Path, info: zipfile.ZipInfo, flatten: bool) -> Path:
    name = info.filename.replace("\\", "/")
    relative = PurePosixPath(name).name if flatten else PurePosixPath(name)
    return dest.joinpath(*PurePosixPath(relative).parts)


def safe_extract(zip_path, dest, members: Iterable[str] | None = None, *,
                 select: Callable[[str], bool] | None = None, flatten: bool = False,
                 max_ratio: float = MAX_UNPACKED_RATIO, max_bytes: int = MAX_UNPACKED_BYTES) -> list[Path]:
    """Extract files of `zip_path` under `dest`; returns the written paths in archive order.

    members: exact member names (full paths inside the archive) to extract; a name the archive
        lacks raises KeyError naming the archive. select: a predicate on the full member name
        (e.g. `lambda n: n.rsplit("/", 1)[-1] in wanted` to match by basename). With neither, every
        file is extracted; with both, a member must pass both.
    flatten: write each file as `dest/<basename>` instead of `dest/<member path>`; two selected
        members with the same basename then raise ValueError rather than overwrite each other.
    max_ratio, max_bytes: the size limits (see the module's docstring).
    Each file is written to a temporary name beside its target and renamed when complete, so an
    interrupted extraction never leaves a half-written file under its real name.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    with zipfile.ZipFile(zip_path) as archive:
        infos = archive.infolist()
        for info in infos:
            problem = member_problem(info)
            if problem:
                raise UnsafeArchiveError(f"{zip_path}: refusing member {info.filename!r} ({problem}); "
                                         f"nothing was extracted")
        wanted = None if members is None else set(members)
        if wanted is not None:
            missing = wanted - {info.filename for info in infos}
            if missing:
                raise KeyError(f"{zip_path}: no member named {sorted(missing)[:5]}")
        chosen = [info for info in infos if not info.is_dir()
                  and (wanted is None or info.filename in wanted)
                  and (select is None or select(info.filename))]

        targets, seen = [], {}
        for info in chosen:
            target = _target(dest, info, flatten)
            if target in seen:
                raise ValueError(f"{zip_path}: members {seen[target]!r} and {info.filename!r} "
                                 f"would both be written to {target}")
            seen[target] = info.filename
            targets.append(target)
        if chosen:
            check_unpacked_size(zip_path, chosen, max_ratio, max_bytes)

        for info, target in zip(chosen, targets):
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
            try:
                # zipfile checks each member's CRC as it reads, so a damaged member raises here.
                with archive.open(info) as source, open(tmp, "wb") as sink:
                    shutil.copyfileobj(source, sink, 1 << 20)
                os.replace(tmp, target)
            except zipfile.BadZipFile as error:
                raise zipfile.BadZipFile(f"{zip_path}: member {info.filename!r}: {error}") from error
            finally:
                tmp.unlink(missing_ok=True)
    return targets
