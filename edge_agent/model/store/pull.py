"""Pull a model from an HTTP(S) mirror or a local directory: disk check, resumable download into a staging
directory, sha256 verification, then an atomic switch that keeps the replaced model as `<name>.previous`.
`install` is that sequence for every source (the hub's too, in hub.py)."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, TypeVar

from edge_agent.model.store.manifest import (
    MANIFEST_NAME,
    PREVIOUS_SUFFIX,
    Manifest,
    ManifestFile,
    ModelFilesError,
    file_problem,
    hash_file,
    parse_manifest,
    read_manifest,
)

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


class Wanted(Protocol):
    """A file to pull: its path inside the model directory and its size."""

    @property
    def path(self) -> str:
        """Relative path, already checked to stay inside the model directory."""
        ...

    @property
    def size(self) -> int:
        """Bytes."""
        ...


W = TypeVar("W", bound=Wanted)


@dataclass(frozen=True)
class Fetched:
    """One file in the staging directory, verified: its sha256 (for manifest.json) and what it took."""

    sha256: str
    downloaded: int
    resumed: int


@dataclass(frozen=True)
class PullResult:
    """Where the model went and what it took."""

    path: Path
    downloaded_bytes: int
    resumed_bytes: int
    previous: Path | None
    revision: str | None = None  # the hub commit the files came from
    up_to_date: bool = False  # the model in place already held exactly these files: nothing was touched


def _check_disk(staging: Path, files: Sequence[Wanted]) -> None:
    total = sum(f.size for f in files)
    have = sum(min(p.stat().st_size, f.size) for f in files if (p := staging / f.path).is_file())
    needed = total - have + DISK_MARGIN_BYTES
    free = shutil.disk_usage(staging).free
    if free < needed:
        raise PullError(
            f"not enough disk space in {staging.parent}: {needed / 2**20:.0f} MB needed "
            f"(files {total / 2**20:.0f} MB + margin), {free / 2**20:.0f} MB free"
        )


def _read(stream: BinaryIO, entry: ManifestFile, done: int) -> bytes:
    """The next block; a dropped connection is an interruption that the next pull resumes from."""
    try:
        return stream.read(CHUNK)
    except (OSError, http.client.HTTPException) as exc:
        raise interrupted(entry, done, type(exc).__name__) from None


def interrupted(entry: Wanted, done: int, why: str) -> PullError:
    """A download cut off: the partial file stays in the staging directory for the next pull to resume."""
    resume = "run the pull again to resume"
    return PullError(f"{entry.path}: interrupted after {done} of {entry.size} bytes ({why}); {resume}")


def refused(entry: Wanted, target: Path, mismatch: str) -> PullError:
    """A file whose checksum does not match is deleted; the model in place is untouched."""
    target.unlink()
    return PullError(f"{entry.path}: {mismatch}: refused (the model in place is kept)")


def _fetch(source: Source, entry: ManifestFile, target: Path, progress: Progress | None) -> Fetched:
    """Download (or resume) one file of a mirror or directory into `target` and verify it."""
    have = target.stat().st_size if target.is_file() else 0
    stream, start = source.open(entry.path, have) if have < entry.size else (None, have)
    digest = hashlib.sha256()
    if start:
        hash_file(target, digest, limit=start)
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
        raise refused(entry, target, "sha256 does not match the manifest")
    return Fetched(entry.sha256, downloaded, start)


def sha256_matches(entry: ManifestFile, path: Path) -> bool:
    """The file is the one listed: its size and sha256 match."""
    return file_problem(path, entry) is None


def _holds(model_dir: Path, files: Sequence[W], matches: Callable[[W, Path], bool]) -> bool:
    """The model in place lists exactly these files, and each one is there, of its size, and verifies."""
    try:
        listed = {entry.path for entry in read_manifest(model_dir).files}
    except ModelFilesError:
        return False
    if listed != {entry.path for entry in files}:
        return False
    return all(
        (path := model_dir / entry.path).is_file() and path.stat().st_size == entry.size and matches(entry, path)
        for entry in files
    )


def install(
    models_dir: Path,
    name: str,
    files: Sequence[W],
    fetch: Callable[[W, Path], Fetched],
    matches: Callable[[W, Path], bool],
) -> PullResult:
    """Every source's pull: disk check, each file fetched and verified in `.staging-<name>/`, then the switch.

    A model in place that already holds exactly these files (each verified with `matches`) is left alone.
    """
    if not name or "/" in name or name.startswith(".") or name.endswith(PREVIOUS_SUFFIX):
        raise PullError(f"not a usable model name: {name!r}")
    if (models_dir / name).is_dir() and _holds(models_dir / name, files, matches):
        return PullResult(models_dir / name, 0, 0, None, up_to_date=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = models_dir / f".staging-{name}"  # kept across runs: a later pull resumes from it
    staging.mkdir(exist_ok=True)
    _check_disk(staging, files)
    entries, downloaded, resumed = [], 0, 0
    for entry in files:
        target = staging / entry.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_file() and target.stat().st_size > entry.size:
            target.unlink()  # not a partial copy of this file: start again
        got = fetch(entry, target)
        entries.append(ManifestFile(entry.path, entry.size, got.sha256))
        downloaded, resumed = downloaded + got.downloaded, resumed + got.resumed
    listed = {entry.path for entry in files} | {MANIFEST_NAME}
    for stale in [p for p in staging.rglob("*") if p.is_file() and str(p.relative_to(staging)) not in listed]:
        stale.unlink()  # left by an earlier pull of other files under this name
    (staging / MANIFEST_NAME).write_text(Manifest(name, tuple(entries)).to_json(), encoding="utf-8")
    final, previous = models_dir / name, models_dir / (name + PREVIOUS_SUFFIX)
    kept_previous = None
    if final.exists():
        if previous.exists():
            shutil.rmtree(previous)
        final.rename(previous)
        kept_previous = previous
    staging.rename(final)
    return PullResult(final, downloaded, resumed, kept_previous)


def pull(source: Source, models_dir: Path, name: str | None = None, progress: Progress | None = None) -> PullResult:
    """Pull every file of the source's manifest into `models_dir/<name>`, verified, switched atomically."""
    manifest = parse_manifest(source.manifest(), "the source's manifest.json")

    def fetch(entry: ManifestFile, target: Path) -> Fetched:
        return _fetch(source, entry, target, progress)

    return install(models_dir, name or manifest.name, manifest.files, fetch, sha256_matches)
