"""Pull a model from an HTTP(S) mirror or a local directory: disk check, resumable download into a staging
directory, sha256 verification, then an atomic switch that keeps the replaced model as `<name>.previous`."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from edge_agent.model.files import MANIFEST_NAME, ModelFilesError
from edge_agent.model.store import PREVIOUS_SUFFIX, Manifest, ManifestFile, parse_manifest

CHUNK = 1 << 20
DISK_MARGIN_BYTES = 64 << 20  # leave room for the spool and logs
TIMEOUT_S = 30.0
Progress = Callable[[str, int, int], None]  # file path, bytes done, bytes of the file


class PullError(ModelFilesError):
    """The pull could not complete; the model in place (if any) is untouched."""


class Source(Protocol):
    """Where model files come from."""

    def manifest(self) -> str:
        """The manifest.json text."""
        ...

    def open(self, path: str, offset: int) -> tuple[BinaryIO, int]:
        """A stream of the file from `offset` (or from 0 when resuming is impossible) and where it starts."""
        ...


class DirectorySource:
    """A local directory, e.g. a USB stick holding an export with its manifest.json."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def manifest(self) -> str:
        """manifest.json of the directory."""
        path = self.root / MANIFEST_NAME
        if not path.is_file():
            raise PullError(f"{path}: missing; a source needs a manifest.json (edge-agent models manifest DIR)")
        return path.read_text(encoding="utf-8")

    def open(self, path: str, offset: int) -> tuple[BinaryIO, int]:
        """The file, positioned at `offset`."""
        handle = (self.root / path).open("rb")
        handle.seek(offset)
        return handle, offset


class HttpSource:
    """A plain HTTP(S) mirror: `<url>/manifest.json` and `<url>/<path>`; resumes with Range requests."""

    def __init__(self, url: str) -> None:
        self.url = url if url.endswith("/") else url + "/"

    def _get(self, path: str, headers: dict[str, str]) -> urllib.response.addinfourl:
        url = urllib.parse.urljoin(self.url, urllib.parse.quote(path))
        request = urllib.request.Request(url, headers={"User-Agent": "edge-agent", **headers})
        try:
            response: urllib.response.addinfourl = urllib.request.urlopen(request, timeout=TIMEOUT_S)
        except urllib.error.HTTPError as exc:
            raise PullError(f"{url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise PullError(f"{url}: {getattr(exc, 'reason', exc)}") from None
        return response

    def manifest(self) -> str:
        """The mirror's manifest.json."""
        with self._get(MANIFEST_NAME, {}) as response:
            return bytes(response.read()).decode("utf-8")

    def open(self, path: str, offset: int) -> tuple[BinaryIO, int]:
        """The file from `offset` when the server honours Range (206), else from the start."""
        response = self._get(path, {"Range": f"bytes={offset}-"} if offset else {})
        return response, (offset if offset and response.status == 206 else 0)  # type: ignore[return-value]


def open_source(text: str) -> Source:
    """http(s):// URL -> HttpSource, anything else -> a local directory."""
    if text.startswith(("http://", "https://")):
        return HttpSource(text)
    root = Path(text).expanduser()
    if not root.is_dir():
        raise PullError(f"{root}: not a directory (give an http(s):// mirror URL or a directory)")
    return DirectorySource(root)


@dataclass(frozen=True)
class PullResult:
    """Where the model went and what it took."""

    path: Path
    downloaded_bytes: int
    resumed_bytes: int
    previous: Path | None


def _check_disk(staging: Path, manifest: Manifest) -> None:
    have = sum(min(p.stat().st_size, f.size) for f in manifest.files if (p := staging / f.path).is_file())
    needed = manifest.total_bytes - have + DISK_MARGIN_BYTES
    free = shutil.disk_usage(staging).free
    if free < needed:
        raise PullError(
            f"not enough disk space in {staging.parent}: {needed / 2**20:.0f} MB needed "
            f"(files {manifest.total_bytes / 2**20:.0f} MB + margin), {free / 2**20:.0f} MB free"
        )


def _hash_of(path: Path, limit: int) -> hashlib._Hash:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        left = limit
        while left > 0 and (block := handle.read(min(CHUNK, left))):
            digest.update(block)
            left -= len(block)
    return digest


def _read(stream: BinaryIO, entry: ManifestFile, done: int) -> bytes:
    """The next block; a dropped connection is an interruption that the next pull resumes from."""
    try:
        return stream.read(CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        raise PullError(
            f"{entry.path}: interrupted after {done} of {entry.size} bytes ({type(exc).__name__}); "
            "run the pull again to resume"
        ) from None


def _fetch(source: Source, entry: ManifestFile, target: Path, progress: Progress | None) -> tuple[int, int]:
    """Download (or resume) one file into `target` and verify it; (bytes downloaded, bytes resumed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    have = target.stat().st_size if target.is_file() else 0
    if have > entry.size:
        target.unlink()
        have = 0
    stream, start = source.open(entry.path, have) if have < entry.size else (None, have)
    digest = _hash_of(target, start) if start else hashlib.sha256()
    downloaded = 0
    if stream is not None:
        with stream, target.open("r+b" if start else "wb") as out:
            out.seek(start)
            out.truncate()
            done = start
            while block := _read(stream, entry, done):
                if done + len(block) > entry.size:
                    raise PullError(f"{entry.path}: the source sends more than the {entry.size} bytes listed")
                out.write(block)
                digest.update(block)
                done += len(block)
                downloaded += len(block)
                if progress is not None:
                    progress(entry.path, done, entry.size)
    size = target.stat().st_size
    if size != entry.size:
        raise PullError(f"{entry.path}: got {size} of {entry.size} bytes (interrupted; run the pull again to resume)")
    if digest.hexdigest() != entry.sha256:
        target.unlink()
        raise PullError(f"{entry.path}: sha256 does not match the manifest: refused (the model in place is kept)")
    return downloaded, start


def pull(source: Source, models_dir: Path, name: str | None = None, progress: Progress | None = None) -> PullResult:
    """Pull every file of the source's manifest into `models_dir/<name>`, verified, switched atomically."""
    manifest = parse_manifest(source.manifest(), "the source's manifest.json")
    name = name or manifest.name
    if not name or "/" in name or name.startswith(".") or name.endswith(PREVIOUS_SUFFIX):
        raise PullError(f"not a usable model name: {name!r}")
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".staging-{name}"  # kept across runs: a later pull resumes from it
    staging.mkdir(exist_ok=True)
    _check_disk(staging, manifest)
    downloaded = resumed = 0
    for entry in manifest.files:
        got, kept = _fetch(source, entry, staging / entry.path, progress)
        downloaded, resumed = downloaded + got, resumed + kept
    (staging / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    final, previous = models_dir / name, models_dir / (name + PREVIOUS_SUFFIX)
    kept_previous = None
    if final.exists():
        if previous.exists():
            shutil.rmtree(previous)
        final.rename(previous)
        kept_previous = previous
    staging.rename(final)
    return PullResult(final, downloaded, resumed, kept_previous)
