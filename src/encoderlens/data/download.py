"""Resumable, verified HTTP downloads.

`download_file` streams into `<dest>.part` and renames it to `dest` only once the size and checksum
are right, so a file at `dest` is always complete. An interrupted download keeps its `.part`; the
next attempt (a retry inside the same call, or a later call) asks for the rest with `Range`.

Secrets: `headers` may carry an `Authorization` token. Messages and log lines are built from the
URL (credential-looking query values and user info masked) and from exception texts scrubbed of
every sensitive header value and URL credential; exceptions are raised `from None`, so no traceback
carries the raw text of a library exception either. (urllib3's own DEBUG lines quote the request
path, query string included: pass tokens as headers, not in the URL.)

One process per `dest`: two concurrent calls for the same file would share its `.part`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429}) | frozenset(range(500, 600))
PROGRESS_INTERVAL_S = 10.0  # at most one progress line per file per interval
MAX_RETRY_AFTER_S = 120.0   # honour a server's Retry-After, but never wait longer than this
_SECRET_NAME = re.compile(r"auth|token|key|secret|sig|password|cookie|credential", re.IGNORECASE)
_CONTENT_RANGE = re.compile(r"bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)")  # "*/total" comes with a 416
# Transport failures worth another attempt: refused or reset connections, timeouts (connect and
# read, also mid-body) and a body cut short (urllib3 raises IncompleteRead -> ChunkedEncodingError).
_TRANSIENT = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
              ConnectionError, TimeoutError)


class DownloadError(RuntimeError):
    """A download failed; the message names the URL and the last HTTP status or exception."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not match the expected size or digest (the partial file is gone)."""


class _Transient(Exception):
    """One attempt failed in a way another attempt may fix."""

    def __init__(self, reason: str, retry_after: float = 0.0):
        super().__init__(reason)
        self.retry_after = retry_after


def redact_url(url: str) -> str:
    """The URL as it may appear in messages: user info and credential-like query values masked."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = urlencode([(k, "***" if _SECRET_NAME.search(k) else v)
                       for k, v in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _secrets(headers: dict) -> list[str]:
    """Values to scrub: each sensitive header's value and its words ("Bearer <token>" -> token)."""
    found = []
    for name, value in headers.items():
        if _SECRET_NAME.search(name) and value:
            found.append(str(value))
            found.extend(word for word in str(value).split() if len(word) >= 6)
    return found


def _url_secrets(url: str) -> list[str]:
    """Credential-like query values and the user-info password, which library errors may quote."""
    parts = urlsplit(url)
    found = [v for k, v in parse_qsl(parts.query) if _SECRET_NAME.search(k) and len(v) >= 4]
    return found + ([parts.password] if parts.password else [])


def _scrub(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def parse_checksum(checksum: str | None) -> tuple[str, str] | None:
    """"md5:<hex>" -> ("md5", "<hex>"); any hashlib algorithm name works. None stays None."""
    if checksum is None:
        return None
    algorithm, sep, digest = checksum.partition(":")
    algorithm = algorithm.strip().lower()
    if not sep or not digest.strip() or algorithm not in hashlib.algorithms_available:
        raise ValueError(f"checksum {checksum!r}: expected '<algorithm>:<hex digest>', "
                         f"e.g. 'md5:...' or 'sha256:...'")
    return algorithm, digest.strip().lower()


def file_digest(path, algorithm: str, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def _problem(path: Path, expected_size, checksum) -> str | None:
    """None if `path` has the expected size and digest (each when given), else what differs."""
    size = path.stat().st_size
    if expected_size is not None and size != expected_size:
        return f"expected {expected_size} bytes, got {size}"
    if checksum is not None:
        actual = file_digest(path, checksum[0])
        if actual != checksum[1]:
            return f"{checksum[0]} mismatch: expected {checksum[1]}, got {actual}"
    return None


class _Progress:
    """Logs a file's progress at most every PROGRESS_INTERVAL_S seconds."""

    def __init__(self, label: str):
        self.label, self.started = label, time.monotonic()
        self.last = self.started
        self.bytes_this_call = 0

    def update(self, done: int, total: int | None, added: int) -> None:
        self.bytes_this_call += added
        now = time.monotonic()
        if now - self.last < PROGRESS_INTERVAL_S:
            return
        self.last = now
        rate = self.bytes_this_call / max(now - self.started, 1e-9) / 1e6
        share = (f"{100 * done / total:.0f}% of {total / 1e6:.1f} MB" if total
                 else f"{done / 1e6:.1f} MB")
        log.info("%s: %s (%.1f MB/s)", self.label, share, rate)


def _parse_content_range(value: str | None):
    """'bytes 10-99/100' -> (10, 99, 100), 'bytes */100' -> (None, None, 100), '*' -> None;
    None if absent or malformed."""
    match = _CONTENT_RANGE.fullmatch((value or "").strip())
    if not match:
        return None
    return tuple(None if group in (None, "*") else int(group) for group in match.groups())


def _retry_after(response) -> float:
    try:
        return min(float(response.headers.get("Retry-After", 0)), MAX_RETRY_AFTER_S)
    except ValueError:  # an HTTP date: not worth parsing, the exponential backoff still applies
        return 0.0


def _attempt(session, url, label, part: Path, headers, timeout, chunk_size, expected_size,
             progress: _Progress) -> None:
    """One GET that appends to (206) or rewrites (200) `part`; returns when the body is complete."""
    offset = part.stat().st_size if part.exists() else 0
    if part.exists() and expected_size is not None and offset == expected_size:
        return  # a previous call got every byte but stopped before verifying
    if expected_size is not None and offset > expected_size:
        part.unlink()
        offset = 0
    # identity: byte ranges must count file bytes, not bytes of a compressed transfer encoding
    request_headers = {**headers, "Accept-Encoding": "identity"}
    if offset:
        request_headers["Range"] = f"bytes={offset}-"
    with session.get(url, headers=request_headers, stream=True, timeout=timeout) as response:
        status = f"HTTP {response.status_code} {response.reason or ''}".strip()
        if response.status_code == 416 and offset:
            content_range = _parse_content_range(response.headers.get("Content-Range"))
            if content_range and content_range[2] == offset:
                return  # the part already holds the whole file
            part.unlink()
            raise _Transient(f"{status} for bytes={offset}- (partial file discarded)")
        if response.status_code in RETRY_STATUSES:
            raise _Transient(status, _retry_after(response))
        if response.status_code not in (200, 206):
            raise DownloadError(f"{label}: {status}")

        if response.status_code == 206:
            content_range = _parse_content_range(response.headers.get("Content-Range"))
            if content_range is None or content_range[0] != offset:
                # The server sent some other range: appending it would corrupt the file.
                part.unlink()
                raise _Transient(f"{status} with Content-Range "
                                 f"{response.headers.get('Content-Range')!r} for bytes={offset}- "
                                 f"(partial file discarded)")
            total, mode = content_range[2], "ab"
        else:
            if offset:
                log.info("%s: server ignored the range request; restarting from zero", label)
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if expected_size is not None and total is not None and total != expected_size:
            part.unlink(missing_ok=True)
            raise DownloadError(f"{label}: server reports {total} bytes, expected {expected_size}")

        done = offset
        with open(part, mode) as handle:
            for chunk in response.iter_content(chunk_size):
                handle.write(chunk)
                done += len(chunk)
                progress.update(done, total, len(chunk))
        if total is not None and done < total:
            # Only reached if the transport did not notice the short body itself.
            raise _Transient(f"connection closed after {done} of {total} bytes")


def download_file(url: str, dest, *, expected_size: int | None = None, checksum: str | None = None,
                  retries: int = 5, backoff: float = 0.5, timeout: float = 60,
                  chunk_size: int = 1 << 20, headers: dict | None = None) -> Path:
    """Download `url` to `dest` (resumable, verified, atomic); returns `dest` as a Path.

    checksum: "md5:<hex>", "sha256:<hex>" (any hashlib name). An existing `dest` that passes the
    size and checksum given (or any existing `dest` when neither is given) is returned at once.
    retries: further attempts after a 5xx, a 429, a connection error or a timeout, waiting
    backoff * 2**k seconds (or the server's Retry-After, if longer); an attempt that added bytes to
    the partial file starts the count afresh, so a flaky link that keeps making progress finishes.
    A 4xx other than 429 fails at once. A connection dropped mid-body keeps every complete
    `chunk_size` block already received (the block being read is lost and fetched again).
    Raises DownloadError, or ChecksumError on a size or digest mismatch, after which the partial
    file is deleted.
    """
    dest = Path(dest)
    expected = parse_checksum(checksum)
    headers = dict(headers or {})
    secrets = sorted(set(_secrets(headers) + _url_secrets(url)), key=len, reverse=True)
    label = redact_url(url)
    if dest.is_file():
        problem = _problem(dest, expected_size, expected)
        if problem is None:
            log.debug("%s: already present, skipping %s", dest, label)
            return dest
        log.warning("%s: existing file does not match (%s); downloading again", dest, problem)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    progress = _Progress(f"{dest.name} <- {label}")
    log.info("downloading %s -> %s%s", label, dest,
             f" (resuming at {part.stat().st_size} bytes)" if part.exists() else "")

    failures = 0
    with requests.Session() as session:
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                _attempt(session, url, label, part, headers, timeout, chunk_size, expected_size,
                         progress)
                break
            except _Transient as error:
                reason, wait = str(error), error.retry_after
            except _TRANSIENT as error:
                reason, wait = f"{type(error).__name__}: {_scrub(str(error), secrets)}", 0.0
            except requests.RequestException as error:  # invalid URL or header: not transient
                raise DownloadError(f"{label}: {type(error).__name__}: "
                                    f"{_scrub(str(error), secrets)}") from None
            if part.exists() and part.stat().st_size > before:
                failures = 0  # progress: this failure starts a fresh count
            failures += 1
            if failures > retries:
                raise DownloadError(f"{label}: giving up after {failures} failed "
                                    f"attempt(s) in a row; last error: {reason}") from None
            delay = max(backoff * 2 ** (failures - 1), wait)
            log.warning("%s: %s; retry %d of %d in %.2f s", label, reason, failures, retries, delay)
            time.sleep(delay)

    problem = _problem(part, expected_size, expected)
    if problem is not None:
        part.unlink()
        raise ChecksumError(f"{dest} (from {label}): {problem}; partial file deleted")
    os.replace(part, dest)
    log.info("%s: complete (%d bytes)", dest, dest.stat().st_size)
    return dest
