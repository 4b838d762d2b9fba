"""Model directories on disk: the store's error, file hashing, manifests (files, sizes, sha256), verification, listing
and removal."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from edge_agent.model.store.verified import VerifiedCache

Progress = Callable[[int, int], None]  # bytes checked so far, bytes to check in all
MANIFEST_NAME = "manifest.json"
PREVIOUS_SUFFIX = ".previous"  # the model a pull replaced, kept until the next pull or `models remove --previous`


class ModelFilesError(Exception):
    """A model directory that cannot be used; the message names the file."""


def hash_file(
    path: Path, *digests: hashlib._Hash, limit: int | None = None, on_bytes: Callable[[int], None] | None = None
) -> None:
    """Feed the file (its first `limit` bytes) to every digest, in one read of 1 MiB blocks; `on_bytes` is told the
    size of each block read."""
    with path.open("rb") as handle:
        left = path.stat().st_size if limit is None else limit
        while left > 0 and (block := handle.read(min(1 << 20, left))):
            for digest in digests:
                digest.update(block)
            left -= len(block)
            if on_bytes is not None:
                on_bytes(len(block))


def sha256_file(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """Hex sha256 of a file."""
    digest = hashlib.sha256()
    hash_file(path, digest, on_bytes=on_bytes)
    return digest.hexdigest()


@dataclass(frozen=True)
class ManifestFile:
    """One file of a model: its path inside the model directory, size and sha256."""

    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    """What a model directory must hold."""

    name: str
    files: tuple[ManifestFile, ...]

    @property
    def total_bytes(self) -> int:
        """Size of every file together."""
        return sum(f.size for f in self.files)

    def to_json(self) -> str:
        """As manifest.json."""
        files = [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in self.files]
        return json.dumps({"name": self.name, "files": files}, indent=1) + "\n"


def safe_path(text: object, where: str) -> str:
    """A relative path that stays inside the model directory (a manifest from a mirror is not trusted)."""
    if not isinstance(text, str) or not text:
        raise ModelFilesError(f"{where}: 'path' must be a non-empty string")
    path = PurePosixPath(text)
    if path.is_absolute() or ".." in path.parts or "\\" in text or path.name == MANIFEST_NAME:
        raise ModelFilesError(f"{where}: unsafe path {text!r}")
    return str(path)


def parse_manifest(text: str, where: str) -> Manifest:
    """A manifest from JSON text; ModelFilesError naming `where` and the entry when it is malformed."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ModelFilesError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ModelFilesError(f"{where}: needs an object with a 'files' list")
    files = []
    for index, entry in enumerate(data["files"]):
        at = f"{where}: files[{index}]"
        if not isinstance(entry, dict):
            raise ModelFilesError(f"{at}: must be an object")
        size, digest = entry.get("size"), entry.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ModelFilesError(f"{at}: 'size' must be a whole number of bytes")
        if not isinstance(digest, str) or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ModelFilesError(f"{at}: 'sha256' must be 64 lower-case hex digits")
        files.append(ManifestFile(safe_path(entry.get("path"), at), size, digest))
    if len({f.path for f in files}) != len(files):
        raise ModelFilesError(f"{where}: a file is listed twice")
    name = data.get("name")
    return Manifest(name if isinstance(name, str) and name else Path(where).parent.name, tuple(files))


def read_manifest(model_dir: str | Path) -> Manifest:
    """The manifest.json of a model directory."""
    model_dir = Path(model_dir)
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise ModelFilesError(f"{path}: missing (a model without a manifest cannot be verified)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFilesError(f"{path}: not JSON ({exc})") from None
    return parse_manifest(text, str(path))


@dataclass(frozen=True)
class FileProblem:
    """A file that does not match its manifest entry."""

    path: str
    problem: str


def file_problem(
    path: Path,
    entry: ManifestFile,
    verified: VerifiedCache | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> str | None:
    """What is wrong with the file at `path` against its manifest entry; None when its size and sha256 match.
    With `verified`, a file recorded there as matching and unchanged since (size, mtime, ctime, inode) is not read
    again, and a file that matches is recorded; `on_bytes` is told each block hashed (or the whole size, skipped)."""
    if not path.is_file():
        return f"missing (listed in {MANIFEST_NAME})"
    stat = path.stat()
    if stat.st_size != entry.size:
        return f"{stat.st_size} bytes, {MANIFEST_NAME} says {entry.size} (truncated?)"
    if verified is not None and verified.known(path, stat) == entry.sha256:
        verified.hashes_skipped += 1
        if on_bytes is not None:
            on_bytes(stat.st_size)
        return None
    started_ns = time.time_ns()
    if sha256_file(path, on_bytes) != entry.sha256:
        return f"sha256 does not match {MANIFEST_NAME} (corrupted file)"
    if verified is not None:
        verified.remember(path, stat, entry.sha256, started_ns)
    return None


def file_problems(
    model_dir: Path,
    manifest: Manifest,
    paths: Iterable[str] | None = None,
    on_file: Callable[[str], None] | None = None,
    *,
    progress: Progress | None = None,
    verified: VerifiedCache | None = None,
) -> Iterator[FileProblem]:
    """Each listed file (only those of `paths` that are listed, in that order, when given) checked, as it goes;
    `progress(done, total)` is called with the bytes checked so far (per 1 MiB block) out of the listed sizes."""
    listed = {entry.path: entry for entry in manifest.files}
    entries = manifest.files if paths is None else [listed[path] for path in paths if path in listed]
    total, done = sum(entry.size for entry in entries), 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(min(done, total), total)

    for entry in entries:
        if on_file is not None:
            on_file(entry.path)
        start = done
        problem = file_problem(model_dir / entry.path, entry, verified, advance)
        if done != start + entry.size:  # missing, truncated or grown: count the entry as checked all the same
            advance(start + entry.size - done)
        if problem is not None:
            yield FileProblem(entry.path, problem)


def verify_all(
    model_dir: str | Path,
    manifest: Manifest | None = None,
    on_file: Callable[[str], None] | None = None,
    *,
    progress: Progress | None = None,
    verified: VerifiedCache | None = None,
) -> list[FileProblem]:
    """Every file checked for presence, size and sha256; the problems found (empty when all is well).
    `progress(done, total)` reports bytes checked; `verified` skips files already verified and unchanged."""
    model_dir = Path(model_dir)
    manifest = manifest or read_manifest(model_dir)
    return list(file_problems(model_dir, manifest, on_file=on_file, progress=progress, verified=verified))


@dataclass(frozen=True)
class StoredModel:
    """A model directory found in the models directory."""

    name: str
    path: Path
    size_bytes: int
    files: int
    has_manifest: bool
    previous: bool


def list_models(models_dir: str | Path) -> list[StoredModel]:
    """The model directories (those with a config.json or a manifest) under `models_dir`, by name."""
    models_dir = Path(models_dir)
    found = []
    for path in sorted(models_dir.iterdir()) if models_dir.is_dir() else []:
        if not path.is_dir() or path.name.startswith("."):
            continue
        has_manifest = (path / MANIFEST_NAME).is_file()
        if not has_manifest and not (path / "config.json").is_file():
            continue
        sizes = [p.stat().st_size for p in path.rglob("*") if p.is_file()]
        previous = path.name.endswith(PREVIOUS_SUFFIX)
        found.append(StoredModel(path.name, path, sum(sizes), len(sizes), has_manifest, previous))
    return found


def remove_model(models_dir: str | Path, name: str, in_use: str | Path | None = None) -> Path:
    """Delete a model directory by name; refuses a path outside `models_dir` and the model in use."""
    models_dir = Path(models_dir)
    target = (models_dir / name).resolve()
    if target.parent != models_dir.resolve() or not target.is_dir():
        raise ModelFilesError(f"no model named {name!r} in {models_dir}")
    if in_use is not None and target == Path(in_use).resolve():
        raise ModelFilesError(f"{target} is the configured model.path: point the config elsewhere first")
    shutil.rmtree(target)
    return target
