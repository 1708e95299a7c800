"""Loopback HTTP servers that speak what the real hub SDKs call.

ModelScope (modelscope 1.40.2 / modelscope_hub):
  GET  /api/v1/models/{org}/{name}/repo/files?Revision=..&Recursive=True   file listing (Path, Size, Sha256)
  GET  /api/v1/models/{org}/{name}/repo?Revision=..&FilePath=..            file bytes (Range honoured)
  GET  /api/v1/models/{org}/{name}                                         repo info
  GET  /api/v1/models/{org}/{name}/revisions                               revisions
  GET  /api/v1/repos/internalAccelerationInfo                              region probe: answered 404
  Errors use the legacy envelope {"Code", "Message", "Success": false}.
  The SDK checks every file's SHA-256 against the listing.

Hugging Face (huggingface_hub 2.4.0):
  GET  /api/models/{org}/{name}/revision/{rev}            repo info: sha (commit), siblings
  GET  /api/models/{org}/{name}/tree/{rev}?recursive=..   tree listing (size, oid, lfs.sha256)
  HEAD /{org}/{name}/resolve/{rev}/{path}                 ETag, X-Repo-Commit, Content-Length
  GET  /{org}/{name}/resolve/{rev}/{path}                 file bytes (Range honoured)
  Errors carry X-Error-Code (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo).

ModelScope's recursive listing names every folder as an entry of its own ("Type": "tree", Size 0),
as the real hub does; files are "Type": "blob".

Every request is recorded in `requests`, so a test can assert that a cache hit made none.
Knobs: `token` (required bearer token), `gated` (HF 403), `corrupt` (paths served with one byte
flipped, same size), `rate` (bytes per second for file bodies), `drop_first` (close the first N
connections without answering: a network error), `echo_token` (a misbehaving hub or CDN: file
requests are redirected to `/signed/...?token=<the bearer token>`, which answers 403 with the
token repeated in its error body, so the token turns up in URLs, exception texts and SDK logs).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .model import TinyModel

CHUNK = 64 * 1024


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tiny-hub/1"

    def log_message(self, fmt, *args):  # quiet
        pass

    def do_GET(self):
        self.server.hub._handle(self, "GET")  # type: ignore[attr-defined]  # set by HubServer.start

    def do_HEAD(self):
        self.server.hub._handle(self, "HEAD")  # type: ignore[attr-defined]  # set by HubServer.start


class HubServer:
    """Base: a threaded server on 127.0.0.1 with a random port, a request log and knobs."""

    def __init__(self, repos: dict[str, dict[str, TinyModel]] | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        # repo id -> revision -> model
        self.repos: dict[str, dict[str, TinyModel]] = repos or {}
        self.token: str | None = None
        self.gated = False
        self.corrupt: set[str] = set()
        self.rate: float | None = None
        self.drop_first = 0
        self.echo_token = False
        self.requests: list[tuple[str, str]] = []
        self.seen_auth: list[str] = []
        self._lock = threading.Lock()
        # Pods reach the hub on the local plane's node address; everything else uses loopback.
        self._httpd = ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.hub = self  # type: ignore[attr-defined]  # read by the handler
        self._thread: threading.Thread | None = None

    # lifecycle -----------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def reset_counts(self) -> None:
        with self._lock:
            self.requests.clear()

    @property
    def request_count(self) -> int:
        with self._lock:
            return len(self.requests)

    def file_requests(self) -> list[str]:
        raise NotImplementedError

    # helpers -------------------------------------------------------------------------------------
    @staticmethod
    def commit_of(repo: str, revision: str) -> str:
        return hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()

    def _authorized(self, h: BaseHTTPRequestHandler) -> bool:
        if self.token is None:
            return True
        auth = h.headers.get("Authorization", "")
        return auth == f"Bearer {self.token}"

    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        with self._lock:
            self.requests.append((method, h.path))
            if h.headers.get("Authorization"):
                self.seen_auth.append(h.headers["Authorization"])
            drop = self.drop_first > 0
            if drop:
                self.drop_first -= 1
        if drop:
            h.close_connection = True
            try:
                h.connection.shutdown(2)
            except OSError:
                pass
            return
        try:
            self.route(h, method)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def route(self, h: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    # echo_token -----------------------------------------------------------------------------------
    _SIGNED = re.compile(r"^/signed/(.+)$")

    def _presented_token(self, h) -> str:
        auth = h.headers.get("Authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else (self.token or "")

    def _redirect_to_signed(self, h, file_path: str, method: str, headers: dict[str, str] | None = None) -> None:
        """What a hub does for a large file: redirect to a signed URL; this one signs with the token."""
        location = f"{self.url}/signed/{file_path}?token={self._presented_token(h)}&expires=60"
        h.send_response(302)
        h.send_header("Location", location)
        h.send_header("Content-Length", "0")
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()

    def _echo_message(self, token: str) -> str:
        # The token at many offsets, so that any cut of the text to a fixed size splits one of them.
        return "signature rejected for " + " ".join(f"{'x' * i}token={token}" for i in range(48))

    def _send_json(self, h, status: int, body, headers: dict[str, str] | None = None, method: str = "GET") -> None:
        raw = json.dumps(body).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(raw)

    def _served_bytes(self, model: TinyModel, path: str) -> bytes:
        data = model.files[path]
        if path in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    def _send_file(self, h, data: bytes, method: str, headers: dict[str, str]) -> None:
        start, end = 0, len(data) - 1
        status = 200
        rng = h.headers.get("Range")
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng or "")
        if m:
            start = int(m.group(1))
            if m.group(2):
                end = min(int(m.group(2)), len(data) - 1)
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        h.send_response(status)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(end - start + 1))
        h.send_header("Accept-Ranges", "bytes")
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        for k, v in headers.items():
            h.send_header(k, v)
        h.end_headers()
        if method == "HEAD":
            return
        view = memoryview(data)[start : end + 1]
        t0 = time.monotonic()
        sent = 0
        for off in range(0, len(view), CHUNK):
            chunk = view[off : off + CHUNK]
            h.wfile.write(chunk)
            sent += len(chunk)
            if self.rate:
                ahead = sent / self.rate - (time.monotonic() - t0)
                if ahead > 0:
                    time.sleep(ahead)


class ModelScopeHub(HubServer):
    _FILES = re.compile(r"^/api/v1/models/([^/]+)/([^/]+)/repo/files$")
    _FILE = re.compile(r"^/api/v1/models/([^/]+)/([^/]+)/repo$")
    _REVS = re.compile(r"^/api/v1/models/([^/]+)/([^/]+)/revisions$")
    _INFO = re.compile(r"^/api/v1/models/([^/]+)/([^/]+)$")

    def file_requests(self) -> list[str]:
        out = []
        for method, raw in self.requests:
            parts = urlsplit(raw)
            if self._FILE.match(parts.path) and method == "GET":
                out.append(parse_qs(parts.query).get("FilePath", [""])[0])
        return out

    def _error(self, h, status: int, message: str, method: str) -> None:
        self._send_json(h, status, {"Code": status, "Message": message, "RequestId": "test", "Success": False},
                        method=method)

    def route(self, h, method: str) -> None:
        parts = urlsplit(h.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if self._SIGNED.match(path):
            token = query.get("token", [""])[0]
            return self._error(h, 403, self._echo_message(token), method)
        for pattern in (self._FILES, self._FILE, self._REVS, self._INFO):
            m = pattern.match(path)
            if m:
                break
        else:
            return self._error(h, 404, f"no route {path}", method)
        repo = f"{m.group(1)}/{m.group(2)}"
        if not self._authorized(h):
            return self._error(h, 401, "Unauthorized: login required for private model", method)
        if repo not in self.repos:
            return self._error(h, 404, f"model {repo} not found", method)
        revisions = self.repos[repo]
        if pattern is self._INFO:
            return self._send_json(h, 200, {"Code": 200, "Success": True, "Data": {
                "Path": m.group(1), "Name": m.group(2), "Id": 1, "Revision": "master"}}, method=method)
        if pattern is self._REVS:
            return self._send_json(h, 200, {"Code": 200, "Success": True, "Data": {"RevisionMap": {
                "Branches": [{"Revision": r} for r in revisions], "Tags": []}}}, method=method)
        revision = query.get("Revision", ["master"])[0]
        if revision not in revisions:
            return self._error(h, 404, f"revision {revision} of {repo} not found", method)
        model = revisions[revision]
        if pattern is self._FILES:
            commit = self.commit_of(repo, revision)
            # A recursive listing on the real hub names every folder too, as a "tree" entry.
            folders = sorted({p.rsplit("/", depth)[0] for p in model.files for depth in range(1, p.count("/") + 1)})
            files = [{"Name": d.rsplit("/", 1)[-1], "Path": d, "Type": "tree", "Size": 0, "Sha256": None,
                      "Revision": commit, "IsLFS": False} for d in folders]
            files += [
                {"Name": p.rsplit("/", 1)[-1], "Path": p, "Type": "blob", "Size": len(b),
                 "Sha256": model.sha256(p), "Revision": commit, "IsLFS": True}
                for p, b in sorted(model.files.items())
            ]
            return self._send_json(h, 200, {"Code": 200, "Success": True, "Data": {"Files": files}}, method=method)
        file_path = query.get("FilePath", [""])[0]
        if file_path not in model.files:
            return self._error(h, 404, f"file {file_path} not found", method)
        if self.echo_token:
            return self._redirect_to_signed(h, file_path, method)
        self._send_file(h, self._served_bytes(model, file_path), method, {})


class HFHub(HubServer):
    _INFO = re.compile(r"^/api/models/([^/]+)/([^/]+)(?:/revision/(.+))?$")
    _TREE = re.compile(r"^/api/models/([^/]+)/([^/]+)/tree/([^/]+)(?:/(.*))?$")
    _RESOLVE = re.compile(r"^/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)$")

    # Files stored in LFS on the real hub: weights; the rest are plain git blobs.
    LFS_SUFFIXES = (".safetensors", ".gguf", ".bin")

    def file_requests(self) -> list[str]:
        out = []
        for method, raw in self.requests:
            m = self._RESOLVE.match(unquote(urlsplit(raw).path))
            if m and method == "GET":
                out.append(m.group(4))
        return out

    def _error(self, h, status: int, code: str, message: str, method: str) -> None:
        self._send_json(h, status, {"error": message}, headers={"X-Error-Code": code, "X-Error-Message": message},
                        method=method)

    def _resolve_rev(self, repo: str, rev: str) -> tuple[str, TinyModel] | None:
        for name, model in self.repos.get(repo, {}).items():
            if rev in (name, self.commit_of(repo, name)):
                return self.commit_of(repo, name), model
        return None

    def route(self, h, method: str) -> None:
        parts = urlsplit(h.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if self._SIGNED.match(path):
            message = self._echo_message(query.get("token", [""])[0])
            return self._error(h, 403, "SignatureRejected", message, method)
        m = self._TREE.match(path) or self._INFO.match(path) or self._RESOLVE.match(path)
        if not m:
            return self._error(h, 404, "EntryNotFound", f"no route {path}", method)
        repo = f"{m.group(1)}/{m.group(2)}"
        if not self._authorized(h):
            # What the real hub answers for a private repo without a valid token.
            return self._error(h, 401, "RepoNotFound", "Repository not found or private: invalid credentials", method)
        if repo not in self.repos:
            return self._error(h, 404, "RepoNotFound", f"Repository {repo} not found", method)
        if self.gated:
            return self._error(h, 403, "GatedRepo", f"Access to model {repo} is restricted", method)
        rev = m.group(3) or "main"
        resolved = self._resolve_rev(repo, rev)
        if resolved is None:
            return self._error(h, 404, "RevisionNotFound", f"Invalid rev id: {rev}", method)
        commit, model = resolved
        if m.re is self._INFO:
            return self._send_json(h, 200, {
                "id": repo, "modelId": repo, "sha": commit, "private": self.token is not None,
                "gated": False, "disabled": False, "tags": [], "downloads": 0, "likes": 0,
                "siblings": [{"rfilename": p} for p in sorted(model.files)],
            }, method=method)
        if m.re is self._TREE:
            prefix = (m.group(4) or "").strip("/")
            entries = []
            for p in sorted(model.files):
                if prefix and not p.startswith(prefix + "/"):
                    continue
                entry = {"type": "file", "oid": model.git_blob_sha1(p), "size": len(model.files[p]), "path": p}
                if p.endswith(self.LFS_SUFFIXES):
                    entry["lfs"] = {"oid": model.sha256(p), "size": len(model.files[p]), "pointerSize": 134}
                entries.append(entry)
            return self._send_json(h, 200, entries, method=method)
        file_path = m.group(4)
        if file_path not in model.files:
            return self._error(h, 404, "EntryNotFound", f"{file_path} does not exist", method)
        lfs = file_path.endswith(self.LFS_SUFFIXES)
        etag = model.sha256(file_path) if lfs else model.git_blob_sha1(file_path)
        if self.echo_token:  # as the real hub answers for an LFS file: a redirect that names it
            return self._redirect_to_signed(h, file_path, method, {
                "X-Repo-Commit": commit, "X-Linked-Etag": f'"{etag}"', "ETag": f'"{etag}"',
                "X-Linked-Size": str(len(model.files[file_path]))})
        self._send_file(h, self._served_bytes(model, file_path), method,
                        {"ETag": f'"{etag}"', "X-Repo-Commit": commit})


def main(argv: list[str] | None = None) -> int:  # pragma: no cover - run by `make demo`
    """`python -m tests.hubs.server --host H --port P --repo org/name=DIR ...`: a ModelScope hub serving
    model directories (the demo's tiny models) until SIGTERM."""
    import argparse
    import signal
    from pathlib import Path

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--repo", action="append", required=True, metavar="ORG/NAME=DIR")
    parser.add_argument("--rate", type=float, help="bytes per second for file bodies")
    args = parser.parse_args(argv)
    repos = {}
    for item in args.repo:
        name, directory = item.split("=", 1)
        repos[name] = {"master": TinyModel.from_directory(Path(directory))}
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # before any thread starts, so sigwait gets them
    hub = ModelScopeHub(repos, host=args.host, port=args.port)
    hub.rate = args.rate
    hub.start()
    print(f"Serving {', '.join(repos)} as a ModelScope hub at {hub.url}", flush=True)
    signal.sigwait(stop_signals)
    hub.stop()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
