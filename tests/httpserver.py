"""A local HTTP file server for tests: Range support, a request log and fault injection.

    with serve({"a.bin": data}) as server:          # or serve(root=folder), or the fixture below
        server.fail_next(2, status=503)             # the next 2 requests get 503
        server.drop_next(after_bytes=1000)          # the next request's body stops after 1000 bytes
        server.delay_next(1.0)                      # the next request waits 1 s before answering
        server.misrange_next(100)                   # the next 206 starts 100 bytes past the ask
        download_file(server.url("a.bin"), ...)
        server.requests                             # [Request(path, range, status, bytes_sent, ...)]

Binds 127.0.0.1 on a free port only; nothing else is ever contacted. Each fault applies to the next
matching requests (all paths, or only `path=` when given), in the order they were added.
"""

from __future__ import annotations

import contextlib
import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class Request:
    path: str                 # without the query string
    query: str
    range: str | None         # the Range header as sent
    headers: dict
    status: int = 0
    bytes_sent: int = 0       # body bytes actually written


@dataclass
class _Fault:
    kind: str                 # "status", "drop", "delay" or "misrange"
    value: float
    remaining: int
    path: str | None = None


@dataclass
class LocalServer:
    files: dict = field(default_factory=dict)    # path -> bytes
    root: Path | None = None                     # or serve files from this folder
    honor_range: bool = True                     # False: answer 200 with the whole file
    requests: list = field(default_factory=list)
    port: int = 0

    def __post_init__(self):
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def fail_next(self, n: int = 1, status: int = 500, path: str | None = None) -> None:
        self._add(_Fault("status", status, n, path))

    def drop_next(self, after_bytes: int, n: int = 1, path: str | None = None) -> None:
        self._add(_Fault("drop", after_bytes, n, path))

    def delay_next(self, seconds: float, n: int = 1, path: str | None = None) -> None:
        self._add(_Fault("delay", seconds, n, path))

    def misrange_next(self, shift: int, n: int = 1, path: str | None = None) -> None:
        """A buggy server: answer a Range request from `shift` bytes later, saying so honestly."""
        self._add(_Fault("misrange", shift, n, path))

    def requests_for(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path.lstrip("/")]

    def _add(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take_faults(self, path: str) -> dict:
        """The faults this request gets (one per kind at most), each used up once."""
        taken = {}
        with self._lock:
            for fault in self._faults:
                if fault.remaining > 0 and fault.kind not in taken and fault.path in (None, path):
                    fault.remaining -= 1
                    taken[fault.kind] = fault.value
        return taken

    def content(self, path: str) -> bytes | None:
        if path in self.files:
            return self.files[path]
        if self.root is not None:
            candidate = (self.root / path).resolve()
            if candidate.is_file() and candidate.is_relative_to(self.root.resolve()):
                return candidate.read_bytes()
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and Content-Length, as real file servers do
    timeout = 10                   # an idle keep-alive connection ends, so threads do not linger
    server_state: LocalServer      # set on a subclass per server

    def log_message(self, format, *args):  # quiet: the request log is the record
        pass

    def handle(self):
        # A client that timed out or hung up is an expected event in these tests, not a server
        # error worth a traceback on stderr.
        try:
            super().handle()
        except (ConnectionError, socket.timeout):
            pass

    def do_GET(self):
        state = self.server_state
        url = urlsplit(self.path)
        path = url.path.lstrip("/")
        record = Request(path, url.query, self.headers.get("Range"), dict(self.headers.items()))
        state.requests.append(record)
        faults = state.take_faults(path)
        try:
            if "delay" in faults and state.stopping.wait(faults["delay"]):
                return
            if "status" in faults:
                return self._send(record, int(faults["status"]), b"injected failure\n")
            data = state.content(path)
            if data is None:
                return self._send(record, 404, b"not found\n")
            status, body, extra = 200, data, {}
            match = _RANGE.fullmatch(record.range or "") if state.honor_range else None
            if match:
                start = int(match.group(1)) + int(faults.get("misrange", 0))
                end = min(int(match.group(2)) if match.group(2) else len(data) - 1, len(data) - 1)
                if start >= len(data) or end < start:
                    return self._send(record, 416, b"", {"Content-Range": f"bytes */{len(data)}"})
                status, body = 206, data[start:end + 1]
                extra = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
            self._send(record, status, body, extra, drop_after=faults.get("drop"))
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            self.close_connection = True  # the client gave up (e.g. its timeout): nothing to do

    def _send(self, record, status, body, extra=None, drop_after=None):
        record.status = status
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if drop_after is not None:
            # Promise the whole body, send part of it, then close: a connection lost mid-body.
            body = body[:int(drop_after)]
            self.close_connection = True
        # recorded before the write: the client may read the last byte and the test look at the record
        # before this thread runs again (a flake under load); a failed write raises out of here
        record.bytes_sent = len(body)
        self.wfile.write(body)
        self.wfile.flush()
        if drop_after is not None:
            self.connection.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def serve(files: dict | None = None, root=None, honor_range: bool = True):
    """A LocalServer on 127.0.0.1:<free port>, shut down (and its port closed) on exit."""
    state = LocalServer(files=dict(files or {}), root=Path(root) if root else None,
                        honor_range=honor_range)
    handler = type("Handler", (_Handler,), {"server_state": state})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"httpserver-{state.port}", daemon=True)
    thread.start()
    try:
        yield state
    finally:
        state.stopping.set()  # wakes handlers sleeping in delay_next
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http_server():
    """An empty LocalServer; tests add `http_server.files[...]` or set `http_server.root`."""
    with serve() as server:
        yield server
