"""A small stand-in for the Hugging Face Hub on 127.0.0.1, speaking the HTTP protocol huggingface_hub 2.4 uses.

Download side (snapshot_download / model_info):
  GET  /api/models/{repo}[/revision/{rev}]         JSON: id, sha, gated, siblings [{rfilename, size}]
  GET  /api/models/{repo}/tree/{rev}?recursive=..  JSON list of {type: file, path, size, oid}
  HEAD /{repo}/resolve/{rev}/{file}                headers X-Repo-Commit, ETag, Content-Length
  GET  /{repo}/resolve/{rev}/{file}                the bytes
Upload side (create_repo + create_commit):
  GET  /api/whoami-v2, POST /api/repos/create, POST /api/validate-yaml,
  POST /api/models/{repo}/preupload/{rev}          every file 'regular' (sent inline, base64, in the commit)
  POST /api/models/{repo}/commit/{rev}             NDJSON: header + one line per file; recorded in `commits`
Errors carry the X-Error-Code header huggingface_hub maps to its exceptions (RepoNotFound, GatedRepo,
RevisionNotFound, EntryNotFound). Every request is recorded in `requests` as (method, path).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass
class Repo:
    files: dict[str, bytes]
    sha: str = "0123456789abcdef0123456789abcdef01234567"
    revisions: tuple[str, ...] = ("main",)
    gated: bool = False          # metadata public, file downloads refused with 403 GatedRepo


@dataclass
class FakeHub:
    repos: dict[str, Repo] = field(default_factory=dict)
    token: str = "hf_test_token"
    requests: list[tuple[str, str]] = field(default_factory=list)
    commits: list[dict] = field(default_factory=list)   # {repo, summary, files: {path: bytes}}
    created: list[dict] = field(default_factory=list)   # create_repo payloads
    url: str = ""

    def add_folder(self, repo_id: str, folder: Path, extra: dict[str, bytes] | None = None, **kw) -> Repo:
        files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
        self.repos[repo_id] = Repo({**files, **(extra or {})}, **kw)
        return self.repos[repo_id]

    def paths(self, method: str | None = None) -> list[str]:
        return [p for m, p in self.requests if method is None or m == method]

    def __enter__(self) -> "FakeHub":
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                hub._handle(self, "HEAD")

            def do_GET(self):
                hub._handle(self, "GET")

            def do_POST(self):
                hub._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    # ------------------------------------------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(h.path)
        path = unquote(url.path)
        self.requests.append((method, path))
        body = h.rfile.read(int(h.headers.get("Content-Length") or 0)) if method == "POST" else b""
        try:
            self._route(h, method, path, url.query, body)
        except _Reply as r:
            self._send(h, method, r.status, r.body, r.headers)

    def _send(self, h, method: str, status: int, body: bytes, headers: dict) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(body)

    def _repo(self, repo_id: str, rev: str | None = None) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise _Reply(404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound",
                                                                  "X-Error-Message": "Repository not found"})
        if rev is not None and rev not in repo.revisions and rev != repo.sha:
            raise _Reply(404, {"error": f"Invalid rev id: {rev}"}, {"X-Error-Code": "RevisionNotFound"})
        return repo

    def _authorised(self, h) -> bool:
        return h.headers.get("Authorization") == f"Bearer {self.token}"

    def _route(self, h, method: str, path: str, query: str, body: bytes) -> None:
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 4:
            repo_id = "/".join(parts[2:4])
            rest = parts[4:]
            if not rest or rest[0] == "revision":
                repo = self._repo(repo_id, "/".join(rest[1:]) if rest else None)
                siblings = [{"rfilename": p, "size": len(b)} for p, b in repo.files.items()]
                raise _Reply(200, {"id": repo_id, "sha": repo.sha, "private": False,
                                   "gated": "manual" if repo.gated else False, "siblings": siblings})
            if rest[0] == "tree":
                repo = self._repo(repo_id, "/".join(rest[1:]))
                raise _Reply(200, [{"type": "file", "path": p, "size": len(b), "oid": hashlib.sha1(b).hexdigest()}
                                   for p, b in repo.files.items()])
            if rest[0] == "preupload":
                files = json.loads(body)["files"]
                raise _Reply(200, {"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                             for f in files]})
            if rest[0] == "commit":
                self._commit(h, repo_id, body)
        if path == "/api/whoami-v2":
            if not self._authorised(h):
                raise _Reply(401, {"error": "Invalid credentials in Authorization header"},
                             {"X-Error-Message": "Invalid credentials in Authorization header"})
            raise _Reply(200, {"type": "user", "name": "me", "auth": {"accessToken": {"role": "write"}}})
        if path == "/api/repos/create":
            self.created.append(json.loads(body))
            payload = json.loads(body)
            raise _Reply(200, {"url": f"{self.url}/{payload['organization']}/{payload['name']}"})
        if path == "/api/validate-yaml":
            raise _Reply(200, {"errors": [], "warnings": []})
        if len(parts) >= 5 and parts[2] == "resolve":
            repo_id, rev, filename = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
            repo = self._repo(repo_id, rev)
            if repo.gated:
                raise _Reply(403, {"error": "gated"}, {
                    "X-Error-Code": "GatedRepo",
                    "X-Error-Message": f"Access to model {repo_id} is restricted and you are not in the authorized list."})
            data = repo.files.get(filename)
            if data is None:
                raise _Reply(404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound",
                                                                 "X-Repo-Commit": repo.sha})
            raise _Reply(200, data, {"X-Repo-Commit": repo.sha, "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                     "Content-Type": "application/octet-stream"})
        raise _Reply(404, {"error": f"no route {method} {path}"})

    def _commit(self, h, repo_id: str, body: bytes) -> None:
        if not self._authorised(h):
            raise _Reply(401, {"error": "Unauthorized"}, {"X-Error-Message": "Invalid credentials in Authorization header"})
        lines = [json.loads(x) for x in body.decode().splitlines() if x.strip()]
        header = next(x["value"] for x in lines if x["key"] == "header")
        files = {x["value"]["path"]: base64.b64decode(x["value"]["content"]) for x in lines if x["key"] == "file"}
        other = [x["key"] for x in lines if x["key"] not in ("header", "file")]
        self.commits.append({"repo": repo_id, "summary": header["summary"], "files": files, "other": other})
        raise _Reply(200, {"commitUrl": f"{self.url}/{repo_id}/commit/{'f' * 40}", "commitOid": "f" * 40,
                           "pullRequestUrl": None})


def cached_snapshot(cache: Path, repo_id: str, sha: str, src: Path | None, refs: tuple[str, ...] = ("main",)) -> Path:
    """A Hugging Face cache entry laid out as huggingface_hub writes it: refs/<rev> holds the commit, the files
    lie in snapshots/<commit>/ (HF_HUB_CACHE=cache makes it the cache)."""
    import shutil

    root = cache / f"models--{repo_id.replace('/', '--')}"
    snap = root / "snapshots" / sha
    snap.mkdir(parents=True)
    if src is not None:
        for f in src.iterdir():
            shutil.copy(f, snap / f.name)
    (root / "refs").mkdir(exist_ok=True)
    for r in refs:
        (root / "refs" / r).write_text(sha)
    return snap


class _Reply(Exception):
    def __init__(self, status: int, body, headers: dict | None = None):
        self.status = status
        self.body = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.headers = {"Content-Type": "application/json", **(headers or {})} if not isinstance(body, bytes) \
            else dict(headers or {})


# ------------------------------------------------------------------------------------------------------------------
SENTINEL = '''"""Test-only network sentinel: logs every attempt to reach a host other than this machine."""
import os
import socket

_LOG = os.environ["TUNEWISE_NET_LOG"]
_LOCAL = {None, "127.0.0.1", "::1", "localhost", b"127.0.0.1", b"localhost"}


def _note(what):
    with open(_LOG, "a") as f:
        f.write(what + "\\n")


_getaddrinfo = socket.getaddrinfo
_connect = socket.socket.connect


def getaddrinfo(host, *a, **k):
    if host not in _LOCAL:
        _note(f"getaddrinfo {host!r}")
    return _getaddrinfo(host, *a, **k)


def connect(self, address):
    if isinstance(address, tuple) and address[0] not in _LOCAL:
        _note(f"connect {address!r}")
    return _connect(self, address)


socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect
'''


def tunewise_cli(*args: str, env: dict, sentinel: Path | None = None, timeout: float = 600):
    """Run `python -m tunewise ARGS` in a fresh process, as a user would: huggingface_hub reads HF_ENDPOINT,
    HF_HUB_CACHE and HF_HUB_OFFLINE at import, so each case needs its own process. The caller's HF_* variables are
    dropped; HF_HOME defaults to the parent of HF_HUB_CACHE (so no stored token leaks in). With `sentinel` (a
    folder), every attempt to reach a non-local host is logged to sentinel/net.log. Returns (rc, out, err, seconds)."""
    import os
    import subprocess
    import sys
    import time

    from conftest import REPO

    full = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE"))}
    env = dict(env)
    if "HF_HUB_CACHE" in env:
        env.setdefault("HF_HOME", str(Path(env["HF_HUB_CACHE"]).parent))
    path = [str(REPO / "src")]
    if sentinel is not None:
        sentinel.mkdir(parents=True, exist_ok=True)
        (sentinel / "sitecustomize.py").write_text(SENTINEL)
        path.insert(0, str(sentinel))
        env["TUNEWISE_NET_LOG"] = str(sentinel / "net.log")
    full.update(PYTHONPATH=os.pathsep.join(path), **env)
    t = time.time()
    p = subprocess.run([sys.executable, "-m", "tunewise", *args], capture_output=True, text=True, env=full,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr, time.time() - t
