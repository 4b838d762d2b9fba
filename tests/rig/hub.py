"""A fake Hugging Face hub on 127.0.0.1 serving one model repo made of a directory's files, with just the HTTP API
huggingface_hub uses to pull it (read in its source, checked in the request log): the repo info with the files'
metadata (size, git blob id, LFS sha256), its registry of AI agents, and `resolve` downloads (LFS files redirect
to a CDN path, as on the hub) with ETag, X-Repo-Commit, X-Linked-Etag/-Size and Range. Logs each request; can cut
or stall a download once and require a token (a private repo). The metadata are taken at start: a file changed
afterwards is served corrupted."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def is_lfs(path: str) -> bool:
    """Stored with git LFS on the hub (graphs, their data, media and the large tokenizer.json)."""
    return ".onnx" in path or path.endswith((".png", ".wav")) or path == "tokenizer.json"


def git_blob_id(data: bytes) -> str:
    """git's object id of a file: sha1 of `blob <size>\\0<content>`."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class RepoFile:
    """One file of the repo as the hub lists it; `sha256` only for LFS files."""

    path: str
    size: int
    blob_id: str
    sha256: str | None
    pointer_size: int = 0


def _repo_file(path: str, data: bytes) -> RepoFile:
    if not is_lfs(path):
        return RepoFile(path, len(data), git_blob_id(data), None)
    sha256 = hashlib.sha256(data).hexdigest()
    pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {len(data)}\n".encode()
    return RepoFile(path, len(data), git_blob_id(pointer), sha256, len(pointer))


class FakeHub:
    """`url` is an HF_ENDPOINT serving `repo_id` = the files under `root`, at `commit` (also called `main`)."""

    def __init__(self, root: Path, repo_id: str, token: str | None = None) -> None:
        self.root, self.repo_id, self.token = root, repo_id, token
        paths = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        self.files = {p: _repo_file(p, (root / p).read_bytes()) for p in paths}
        self.commit = hashlib.sha1("".join(f.blob_id for f in self.files.values()).encode()).hexdigest()
        self.requests: list[tuple[str, str, str | None]] = []  # (method, path and query, Range header)
        self.cut_once: dict[str, int] = {}  # repo path -> close the connection after this many bytes, once
        self.stall_once: dict[str, int] = {}  # repo path -> send this many bytes, then wait for `release`
        self.stalled, self.release = threading.Event(), threading.Event()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def downloads(self, path: str) -> list[str | None]:
        """The Range header of every download of a repo file (through its CDN redirect for LFS files)."""
        entry = self.files[path]
        where = f"/cdn/{entry.sha256}" if entry.sha256 else f"/{self.repo_id}/resolve/{self.commit}/{path}"
        return [header for method, url, header in self.requests if method == "GET" and url == where]

    def info(self, blobs: bool) -> dict[str, object]:
        """The JSON of /api/models/<repo_id>[/revision/<rev>], with the files' metadata when `blobs`."""
        siblings: list[dict[str, object]] = []
        for f in self.files.values():
            sibling: dict[str, object] = {"rfilename": f.path}
            if blobs:
                sibling.update(size=f.size, blobId=f.blob_id)
                if f.sha256:
                    sibling["lfs"] = {"size": f.size, "sha256": f.sha256, "pointerSize": f.pointer_size}
            siblings.append(sibling)
        about = {"private": bool(self.token), "gated": False, "disabled": False, "library_name": "transformers.js"}
        return {"_id": "0" * 24, "id": self.repo_id, "sha": self.commit, **about, "siblings": siblings}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.answer(body=True)

            def do_HEAD(self) -> None:
                self.answer(body=False)

            def fail(self, status: int, code: str) -> None:
                self.send_response(status)
                self.send_header("X-Error-Code", code)
                self.send_header("X-Error-Message", code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def answer(self, body: bool) -> None:
                hub.requests.append((self.command, self.path, self.headers.get("Range")))
                url = urlsplit(self.path)
                path = unquote(url.path)
                if path.startswith("/cdn/"):  # the LFS storage the hub redirects to
                    entry = next((f for f in hub.files.values() if f.sha256 == path[5:]), None)
                    return self.send_file(entry, body) if entry else self.fail(404, "EntryNotFound")
                if path == "/api/agent-harnesses":  # huggingface_hub's registry of AI agents for its User-Agent
                    return self.send_json({"standardEnvVars": [], "harnesses": {}})
                if hub.token and self.headers.get("Authorization") != f"Bearer {hub.token}":
                    return self.fail(401, "RepoNotFound")  # the hub hides a private repo from strangers
                api = f"/api/models/{hub.repo_id}"
                if path == api or path.startswith(api + "/revision/"):
                    return self.send_info(path.removeprefix(api).removeprefix("/revision/"), "blobs" in url.query)
                prefix = f"/{hub.repo_id}/resolve/"
                if not path.startswith(prefix):
                    return self.fail(404, "RepoNotFound")
                revision, _, file = path.removeprefix(prefix).partition("/")
                if revision not in ("main", hub.commit):
                    return self.fail(404, "RevisionNotFound")
                if (entry := hub.files.get(file)) is None:
                    return self.fail(404, "EntryNotFound")
                if entry.sha256 is None:
                    return self.send_file(entry, body)
                self.send_response(302)
                self.send_header("Location", f"/cdn/{entry.sha256}")
                self.send_header("ETag", f'"{entry.blob_id}"')
                self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
                self.send_header("X-Linked-Size", str(entry.size))
                self.send_header("X-Repo-Commit", hub.commit)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None

            def send_info(self, revision: str, blobs: bool) -> None:
                if revision not in ("", "main", hub.commit):
                    return self.fail(404, "RevisionNotFound")
                return self.send_json(hub.info(blobs))

            def send_json(self, value: object) -> None:
                data = json.dumps(value).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def send_file(self, entry: RepoFile, body: bool) -> None:
                data = (hub.root / entry.path).read_bytes()  # as it is now: maybe not what the listing says
                start, end, status = 0, len(data), 200
                if match := _RANGE.match(self.headers.get("Range") or ""):
                    start, status = int(match.group(1)), 206
                    end = min(int(match.group(2)) + 1, len(data)) if match.group(2) else len(data)
                self.send_response(status)
                self.send_header("Content-Length", str(end - start))
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("ETag", f'"{entry.sha256 or entry.blob_id}"')
                self.send_header("X-Repo-Commit", hub.commit)
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
                self.end_headers()
                if not body:
                    return
                cut, stall = hub.cut_once.pop(entry.path, None), hub.stall_once.pop(entry.path, None)
                limit = cut if cut is not None else stall
                self.wfile.write(data[start:end] if limit is None else data[start : start + limit])
                self.wfile.flush()
                if stall is not None:
                    hub.stalled.set()
                    hub.release.wait(60)
                if limit is not None:
                    self.close_connection = True

        return Handler

    def start(self) -> FakeHub:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (a stalled download is let go first)."""
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
