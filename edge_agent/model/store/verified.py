"""Files already verified against their manifest, remembered by identity, so that loading the same model again (a
fallback swap, a reload, a restart) does not re-hash gigabytes on an SD card.

A file counts as already verified only while its size, mtime, ctime, inode and device all equal those recorded
when its sha256 was computed; any change (a rewrite, `touch`, a copy, a new pull) hashes it again. A file whose
mtime or ctime is within `RACY_S` of the hash is not remembered, because a write in the same timestamp tick could
leave them unchanged ("racy" entries, as git calls them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
FORMAT = 1
RACY_S = 2.0
_OPEN: dict[Path, VerifiedCache] = {}  # one instance per cache file in this process


def default_cache_dir() -> Path:
    """$CACHE_DIRECTORY/verified under systemd, else $XDG_CACHE_HOME/edge-agent/verified (~/.cache by default)."""
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd) / "verified"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edge-agent" / "verified"


def identity(stat: os.stat_result) -> list[int]:
    """What must stay equal for a recorded digest to still hold."""
    return [stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino, stat.st_dev]


class VerifiedCache:
    """sha256 digests of files by absolute path and identity, kept in one small JSON file (in memory only when
    `path` is None or cannot be written)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = self._load() if path is not None else {}
        self.hashes_skipped = 0  # files found verified and unchanged (for logs and tests)

    @classmethod
    def for_model(cls, model_dir: Path, cache_dir: Path | None = None) -> VerifiedCache:
        """The cache for one model directory, under `cache_dir` (default: `default_cache_dir()`)."""
        root = model_dir.resolve()
        key = hashlib.sha256(str(root).encode()).hexdigest()[:12]
        path = (cache_dir or default_cache_dir()) / f"{root.name}-{key}.json"
        if path not in _OPEN:
            _OPEN[path] = cls(path)
        return _OPEN[path]

    def _load(self) -> dict[str, dict[str, Any]]:
        assert self.path is not None
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        files = data.get("files") if isinstance(data, dict) and data.get("format") == FORMAT else None
        return {k: v for k, v in files.items() if isinstance(v, dict)} if isinstance(files, dict) else {}

    def known(self, path: Path, stat: os.stat_result) -> str | None:
        """The recorded sha256 of `path` when it is unchanged since it was hashed, else None."""
        entry = self.entries.get(str(path.resolve()))
        if entry is None or entry.get("identity") != identity(stat):
            return None
        digest = entry.get("sha256")
        return digest if isinstance(digest, str) else None

    def remember(self, path: Path, before: os.stat_result, digest: str, hashed_at_ns: int) -> bool:
        """Record `digest`, computed from `path` as `before` described it, when the file did not change while it
        was read and its timestamps are older than `RACY_S` before the hash; True when recorded."""
        try:
            after = path.stat()
        except OSError:
            return False
        newest = max(before.st_mtime_ns, before.st_ctime_ns)
        if identity(after) != identity(before) or newest > hashed_at_ns - RACY_S * 1e9:
            return False
        self.entries[str(path.resolve())] = {"identity": identity(before), "sha256": digest}
        self._save()
        return True

    def _save(self) -> None:
        if self.path is None:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"format": FORMAT, "files": self.entries}, indent=1) + "\n")
            tmp.replace(self.path)
        except OSError as exc:
            log.warning("verified-files cache %s: cannot write it (%s); remembering in memory only", self.path, exc)
            self.path = None
