"""A fake Hugging Face Hub on 127.0.0.1, speaking the routes huggingface_hub 2.x uses to download.

Routes (repo ids may be `name` or `org/name`; revisions arrive URL-quoted, "/" as %2F):

    GET  /api/{models|datasets}/{repo_id}[/revision/{rev}]      repo info: id, sha, siblings
    GET  /api/{models|datasets}/{repo_id}/tree/{rev}[/{path}]   tree listing (?recursive=true)
    HEAD|GET /{repo_id}/resolve/{rev}/{file}                    a model file
    HEAD|GET /datasets/{repo_id}/resolve/{rev}/{file}           a dataset file
    HEAD|GET http://127.0.0.1:<cdn port>/{sha256}?repo=..&file=..   LFS content (the "CDN")

As on the real Hub, a small file is answered by /resolve itself (200 with X-Repo-Commit, ETag = git
blob id, Content-Length), while an LFS file (weights, zips) gets a 302 to the CDN, a second server on
another port, i.e. another origin: huggingface_hub then takes the metadata from the 302's
X-Linked-Etag (sha256) and X-Linked-Size, and drops the Authorization header for the CDN request.
GETs honour `Range` (206), which is how huggingface_hub resumes an interrupted download. No Xet
headers are ever sent (no X-Xet-Hash, no xetHash in the tree), so huggingface_hub never uses hf_xet.

Each `add_repo` call freezes a folder's files into a new commit (a deterministic sha) and moves the
branch `main` to it, so a test can pin an older commit.

Tokens and gated repos, as on the Hub (huggingface_hub's utils/_http.py `hf_raise_for_status` reads
X-Error-Code and X-Error-Message; its errors.py documents the gated messages):
- a token the hub does not know (not given to `add_repo` or `add_token`) gets 401 on every route with
  X-Error-Message "Invalid credentials in Authorization header" (no X-Error-Code);
- a repo added with `token=` is gated (manual approval) for every other account: its metadata (repo
  info, tree) stays readable by anyone, but /resolve answers 401 with X-Error-Code GatedRepo without
  a token ("... You must have access to it and be authenticated to access it. Please log in.") and 403
  with X-Error-Code GatedRepo for a valid token that was not granted access ("... you are not in the
  authorized list. Visit <hub>/<repo> to ask for access."). The CDN takes no token (signed URLs).
`fail(route, status)` makes a route answer `status`. Errors deliberately echo the request's
Authorization header in their body (and in X-Error-Message, except the invalid-credentials one whose
exact text huggingface_hub compares), as a misbehaving proxy might: tests use it to prove the token
is redacted.
Every request is recorded in `requests` (method, route, repo, revision, file, headers, status).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

LFS_SUFFIXES = (".safetensors", ".bin", ".zip", ".pt", ".h5", ".msgpack", ".onnx", ".parquet")
LOOPBACK = "127.0.0.1"
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"  # compared verbatim by huggingface_hub


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    repo_id: str
    repo_type: str
    token: str | None = None
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha -> {path: content}
    refs: dict[str, str] = field(default_factory=dict)  # branch -> sha


@dataclass(frozen=True)
class Request:
    server: str  # "hub" or "cdn"
    method: str
    route: str  # "info", "tree", "resolve", "lfs" or "unknown"
    path: str
    repo_id: str | None
    revision: str | None  # as sent, unquoted
    filename: str | None
    headers: dict  # lower-case names
    status: int


class FakeHub:
    def __init__(self):
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[Request] = []
        self.failures: dict[str, int] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content, served by the CDN
        self.tokens: set[str] = set()  # valid user tokens (with or without access to a gated repo)
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []

    # ---- set-up -------------------------------------------------------------------------------
    def add_repo(self, repo_id: str, folder: str | Path, repo_type: str = "model",
                 token: str | None = None) -> str:
        """Freeze `folder`'s files as a new commit of `repo_id` (moving `main`); returns its sha."""
        folder = Path(folder)
        files = {p.relative_to(folder).as_posix(): p.read_bytes()
                 for p in sorted(folder.rglob("*")) if p.is_file()}
        repo = self.repos.setdefault((repo_type, repo_id), Repo(repo_id, repo_type))
        repo.token = token
        if token:
            self.tokens.add(token)
        digest = hashlib.sha1(f"{repo_type}/{repo_id}/{len(repo.commits)}".encode())
        for path, data in files.items():
            digest.update(path.encode() + b"\0" + git_blob_id(data).encode())
            if self.is_lfs(path):
                self.blobs[hashlib.sha256(data).hexdigest()] = data
        sha = digest.hexdigest()
        repo.commits[sha] = files
        repo.refs["main"] = sha
        return sha

    def add_token(self, token: str) -> None:
        """A valid token of an account that was granted access to no gated repo."""
        self.tokens.add(token)

    def fail(self, route: str, status: int) -> None:
        """Answer every request of `route` ("info", "tree", "resolve", "lfs") with `status`."""
        self.failures[route] = status

    @staticmethod
    def is_lfs(path: str) -> bool:
        return path.endswith(LFS_SUFFIXES)

    # ---- inspection ---------------------------------------------------------------------------
    def downloads(self, repo_id: str | None = None) -> list[str]:
        """Files whose content was sent (200/206 GETs on /resolve or the CDN), in order."""
        return [r.filename for r in self.requests if r.method == "GET" and r.status in (200, 206)
                and r.route in ("resolve", "lfs") and (repo_id is None or r.repo_id == repo_id)]

    # ---- servers ------------------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://{LOOPBACK}:{self._servers[0].server_address[1]}"

    @property
    def cdn(self) -> str:
        return f"http://{LOOPBACK}:{self._servers[1].server_address[1]}"

    def start(self) -> "FakeHub":
        for role in ("hub", "cdn"):
            server = ThreadingHTTPServer((LOOPBACK, 0), _handler(self, role))
            server.daemon_threads = True
            # a short poll keeps stop() quick
            threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                             daemon=True).start()
            self._servers.append(server)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()

    def __enter__(self) -> "FakeHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


def _handler(hub: FakeHub, role: str):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as huggingface_hub's client expects

        def log_message(self, *args):  # quiet: the hub records requests itself
            pass

        def do_HEAD(self):
            self.handle_request(send_body=False)

        def do_GET(self):
            self.handle_request(send_body=True)

        # ---- dispatch -------------------------------------------------------------------------
        def handle_request(self, send_body: bool):
            self.send_body = send_body
            self.note = {"route": "unknown", "repo_id": None, "revision": None, "filename": None}
            url = urlsplit(self.path)
            self.query = parse_qs(url.query)
            # split before unquoting: a revision's "/" arrives as %2F and must stay one segment
            segments = [s for s in url.path.split("/") if s]
            status = self.serve_cdn(segments) if role == "cdn" else self.serve_hub(segments)
            hub._record(Request(server=role, method=self.command, path=unquote(url.path),
                                headers={k.lower(): v for k, v in self.headers.items()},
                                status=status, **self.note))

        def serve_hub(self, segments):
            if segments[:1] == ["api"] and len(segments) >= 3 and segments[1] in ("models", "datasets"):
                repo, rest = self.find_repo(segments[1][:-1], segments[2:])
                if repo is None:
                    return self.error(404, "RepoNotFound", "Repository not found")
                if not rest or rest[0] == "revision":
                    self.note["route"] = "info"
                    return self.info(repo, unquote(rest[1]) if len(rest) > 1 else "main")
                if rest[0] == "tree" and len(rest) >= 2:
                    self.note["route"] = "tree"
                    return self.tree(repo, unquote(rest[1]), "/".join(unquote(s) for s in rest[2:]))
                return self.error(404, None, "Not found")
            repo_type = "dataset" if segments[:1] == ["datasets"] else "model"
            segments = segments[1:] if repo_type == "dataset" else segments
            repo, rest = self.find_repo(repo_type, segments)
            if repo is not None and len(rest) >= 3 and rest[0] == "resolve":
                self.note["route"] = "resolve"
                return self.resolve(repo, unquote(rest[1]), "/".join(unquote(s) for s in rest[2:]))
            return self.error(404, "RepoNotFound" if repo is None else None, "Not found")

        def find_repo(self, repo_type, segments):
            for (kind, repo_id), repo in hub.repos.items():
                parts = repo_id.split("/")
                if kind == repo_type and segments[:len(parts)] == parts:
                    self.note["repo_id"] = repo_id
                    return repo, segments[len(parts):]
            return None, segments

        def checks(self, repo, revision):
            """(sha, None) if the request may proceed, else (None, status already sent)."""
            self.note["revision"] = revision
            if self.note["route"] in hub.failures:
                return None, self.error(hub.failures[self.note["route"]], None, "Internal Error")
            authorization = self.headers.get("Authorization")
            if authorization is not None and authorization.removeprefix("Bearer ") not in hub.tokens:
                return None, self.error(401, None, INVALID_CREDENTIALS, echo_in_header=False)
            if repo.token and self.note["route"] == "resolve":  # gated: the content, not the metadata
                what = f"Access to {repo.repo_type} {repo.repo_id} is restricted"
                if authorization is None:
                    return None, self.error(401, "GatedRepo", f"{what}. You must have access to it and be "
                                            "authenticated to access it. Please log in.")
                if authorization != f"Bearer {repo.token}":
                    return None, self.error(403, "GatedRepo", f"{what} and you are not in the authorized "
                                            f"list. Visit {hub.endpoint}/{repo.repo_id} to ask for access.")
            sha = repo.refs.get(revision, revision if revision in repo.commits else None)
            if sha is None:
                return None, self.error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return sha, None

        # ---- routes ---------------------------------------------------------------------------
        def info(self, repo, revision):
            sha, status = self.checks(repo, revision)
            if sha is None:
                return status
            return self.json({
                "_id": sha[:24], "id": repo.repo_id, "sha": sha, "private": False,
                "gated": "manual" if repo.token else False, "disabled": False,
                "lastModified": "2024-01-01T00:00:00.000Z", "tags": [],
                "siblings": [{"rfilename": path} for path in repo.commits[sha]],
            })

        def tree(self, repo, revision, prefix):
            sha, status = self.checks(repo, revision)
            if sha is None:
                return status
            recursive = self.query.get("recursive", ["false"])[0].lower() in ("true", "1")
            base = prefix.rstrip("/") + "/" if prefix else ""
            entries, folders = [], set()
            for path, data in repo.commits[sha].items():
                if not path.startswith(base):
                    continue
                parts = path[len(base):].split("/")
                for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
                    folders.add(base + "/".join(parts[:depth]))
                if recursive or len(parts) == 1:
                    entry = {"type": "file", "oid": git_blob_id(data), "size": len(data), "path": path}
                    if hub.is_lfs(path):
                        entry["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                                        "pointerSize": 134}
                    entries.append(entry)
            entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0,
                         "path": f} for f in sorted(folders)]
            return self.json(entries)

        def resolve(self, repo, revision, filename):
            self.note["filename"] = filename
            sha, status = self.checks(repo, revision)
            if sha is None:
                return status
            data = repo.commits[sha].get(filename)
            if data is None:
                return self.error(404, "EntryNotFound", f"{filename} does not exist", {"X-Repo-Commit": sha})
            headers = {"X-Repo-Commit": sha, "ETag": f'"{git_blob_id(data)}"', "Accept-Ranges": "bytes"}
            if hub.is_lfs(filename):
                digest = hashlib.sha256(data).hexdigest()
                location = (f"{hub.cdn}/{digest}?repo={quote(repo.repo_id, safe='')}"
                            f"&file={quote(filename, safe='')}")
                return self.send(302, b"", {**headers, "Location": location, "X-Linked-Etag": f'"{digest}"',
                                            "X-Linked-Size": str(len(data))})
            return self.content(data, headers)

        def serve_cdn(self, segments):
            self.note.update(route="lfs", repo_id=self.query.get("repo", [None])[0],
                             filename=self.query.get("file", [None])[0])
            if "lfs" in hub.failures:
                return self.error(hub.failures["lfs"], None, "Internal Error")
            data = hub.blobs.get(segments[0]) if len(segments) == 1 else None
            if data is None:
                return self.error(404, None, "NoSuchKey")
            return self.content(data, {"ETag": f'"{segments[0]}"', "Accept-Ranges": "bytes"})

        # ---- responses ------------------------------------------------------------------------
        def content(self, data: bytes, headers: dict):
            """200 with the whole file, or 206 with the part a `Range: bytes=a-[b]` asks for."""
            wanted = self.headers.get("Range")
            if wanted and wanted.startswith("bytes=") and self.command == "GET":
                first, _, last = wanted[len("bytes="):].partition("-")
                start, end = int(first or 0), min(int(last) if last else len(data) - 1, len(data) - 1)
                if start >= len(data):
                    return self.send(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                return self.send(206, data[start:end + 1],
                                 {**headers, "Content-Range": f"bytes {start}-{end}/{len(data)}"})
            return self.send(200, data, headers)

        def json(self, payload):
            return self.send(200, json.dumps(payload).encode(), {"Content-Type": "application/json"})

        def error(self, status, code, message, headers=None, echo_in_header=True):
            # deliberately leaky: echo the Authorization header, as a badly behaved proxy could
            echoed = f"{message} (request authorization: {self.headers.get('Authorization', '')})"
            body = json.dumps({"error": echoed}).encode()
            extra = {"Content-Type": "application/json",
                     "X-Error-Message": echoed if echo_in_header else message, **(headers or {})}
            if code:
                extra["X-Error-Code"] = code
            return self.send(status, body, extra)

        def send(self, status: int, body: bytes, headers: dict) -> int:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.send_body:
                self.wfile.write(body)
            return status

    return Handler


def allow_only_loopback(setattr_) -> None:
    """Make any name lookup or connection other than to 127.0.0.1 fail, from now on.

    `setattr_` is pytest's `monkeypatch.setattr` (undone after the test) or plain `setattr` in a
    child process. A hub call that ignored the configured endpoint would otherwise try huggingface.co.
    """
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if host not in (LOOPBACK, "localhost"):
            raise OSError(f"test network guard: lookup of {host!r} refused")
        return real_getaddrinfo(LOOPBACK, *args, **kwargs)

    def connect(self, address):
        if isinstance(address, tuple) and address[0] != LOOPBACK:
            raise OSError(f"test network guard: connection to {address!r} refused")
        return real_connect(self, address)

    setattr_(socket, "getaddrinfo", getaddrinfo)
    setattr_(socket.socket, "connect", connect)
