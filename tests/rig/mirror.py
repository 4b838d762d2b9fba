"""A LAN model mirror on 127.0.0.1: serves a directory over HTTP with Range support, logs each request, and can
drop the connection halfway through a file once (a pull interrupted by a network cut)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d+)-$")


class Mirror:
    """`url` serves `root`; `cut_once[path] = n` ends that file's next response after n bytes."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_once: dict[str, int] = {}
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.lstrip("/")
                mirror.requests.append((path, self.headers.get("Range")))
                file = (mirror.root / path).resolve()
                if mirror.root.resolve() not in file.parents or not file.is_file():
                    self.send_error(404)
                    return
                data = file.read_bytes()
                start, status = 0, 200
                match = _RANGE.match(self.headers.get("Range") or "")
                if match and int(match.group(1)) < len(data):
                    start, status = int(match.group(1)), 206
                self.send_response(status)
                self.send_header("Content-Length", str(len(data) - start))
                if status == 206:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.end_headers()
                cut = mirror.cut_once.pop(path, None)
                body = data[start:] if cut is None else data[start : start + cut]
                self.wfile.write(body)
                if cut is not None:
                    self.wfile.flush()
                    self.close_connection = True

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> Mirror:
        """Serve in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def make_older(model_dir: Path, path: str) -> bytes:
    """Turn the model in place into another version of itself: one file changed, its manifest entry too."""
    target = model_dir / path
    changed = bytearray(target.read_bytes())
    changed[len(changed) // 2] ^= 0xFF
    target.write_bytes(bytes(changed))
    manifest = json.loads((model_dir / "manifest.json").read_text())
    for entry in manifest["files"]:
        if entry["path"] == path:
            entry["sha256"] = hashlib.sha256(changed).hexdigest()
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    return bytes(changed)
