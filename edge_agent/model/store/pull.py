"""What every pull shares (mirrors and directories in mirror.py, the hub in hub.py): the files of the model in place
that are already right are kept (hard-linked into the staging directory), the others downloaded (resumed) into
`.staging-<name>/` after a disk check and verified, then an atomic switch keeps the replaced model as
`<name>.previous`."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from edge_agent.model.store.manifest import (
    MANIFEST_NAME,
    PREVIOUS_SUFFIX,
    Manifest,
    ManifestFile,
    ModelFilesError,
    read_manifest,
)
from edge_agent.model.store.progress import CHECKING, DOWNLOADING, QUIET, VERIFYING, PullProgress, hash_into

DISK_MARGIN_BYTES = 64 << 20  # leave room for the spool and logs


class PullError(ModelFilesError):
    """The pull could not complete; the model in place (if any) is untouched."""


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
    kept_files: int = 0  # files of the model in place that were already right, kept instead of downloaded


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


def interrupted(entry: Wanted, done: int, why: str) -> PullError:
    """A download cut off: the partial file stays in the staging directory for the next pull to resume."""
    resume = "run the pull again to resume"
    return PullError(f"{entry.path}: interrupted after {done} of {entry.size} bytes ({why}); {resume}")


def refused(entry: Wanted, target: Path, mismatch: str) -> PullError:
    """A file whose checksum does not match is deleted; the model in place is untouched."""
    target.unlink()
    return PullError(f"{entry.path}: {mismatch}: refused (the model in place is kept)")


class _InPlace(Generic[W]):
    """The model in place and what each of its files was found to be (each file is hashed once per pull)."""

    def __init__(self, model_dir: Path, matches: Callable[[W, Path], str | None], progress: PullProgress) -> None:
        self.dir, self.matches, self.progress = model_dir, matches, progress
        self.found: dict[str, str | None] = {}
        try:
            self.manifest: dict[str, ManifestFile] | None = {e.path: e for e in read_manifest(model_dir).files}
        except ModelFilesError:
            self.manifest = None

    def may_hold(self, entry: Wanted) -> bool:
        """The file is there at its size, and the manifest in place does not list another sha256 for it."""
        path = self.dir / entry.path
        if not path.is_file() or path.stat().st_size != entry.size:
            return False
        recorded, wanted = (self.manifest or {}).get(entry.path), getattr(entry, "sha256", None)
        return recorded is None or wanted is None or recorded.sha256 == wanted

    def sha256(self, entry: W) -> str | None:
        """The file's sha256 when it is the one wanted (read at most once), else None."""
        if entry.path not in self.found:
            self.found[entry.path] = self.matches(entry, self.dir / entry.path) if self.may_hold(entry) else None
        return self.found[entry.path]

    def holds(self, files: Sequence[W]) -> bool:
        """The model in place lists exactly these files, and each one is there, of its size, and verifies."""
        if self.manifest is None or set(self.manifest) != {entry.path for entry in files}:
            return False
        return all(self.sha256(entry) is not None for entry in files)

    def keep(self, files: Sequence[W], staging: Path) -> dict[str, str]:
        """Hard-link (or copy) into `staging` the files in place that are already right: path -> sha256."""
        kept = {}
        for entry in files:
            if (sha256 := self.sha256(entry)) is None:
                continue
            target = staging / entry.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            try:
                os.link(self.dir / entry.path, target)
            except OSError:
                shutil.copy2(self.dir / entry.path, target)
            kept[entry.path] = sha256
        return kept


def sha256_matcher(progress: PullProgress = QUIET) -> Callable[[ManifestFile, Path], str | None]:
    """A matcher for manifest entries: the file's sha256 when it equals the entry's, reported as CHECKING."""

    def matches(entry: ManifestFile, path: Path) -> str | None:
        digest = hashlib.sha256()
        hash_into(path, [digest], lambda done: progress.advance(CHECKING, entry.path, done))
        return entry.sha256 if digest.hexdigest() == entry.sha256 else None

    return matches


def _switch(models_dir: Path, name: str, staging: Path) -> tuple[Path, Path | None]:
    """Staging becomes the model; the model it replaces is kept as `<name>.previous`."""
    final, previous = models_dir / name, models_dir / (name + PREVIOUS_SUFFIX)
    kept_previous = None
    if final.exists():
        if previous.exists():
            shutil.rmtree(previous)
        final.rename(previous)
        kept_previous = previous
    staging.rename(final)
    return final, kept_previous


def _staged(staging: Path, entry: Wanted) -> int:
    """Bytes of `entry` an earlier pull left in staging (a file longer than listed is not a part of it)."""
    target = staging / entry.path
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_file() and target.stat().st_size > entry.size:
        target.unlink()  # not a partial copy of this file: start again
    return target.stat().st_size if target.is_file() else 0


def install(
    models_dir: str | Path,
    name: str,
    files: Sequence[W],
    fetch: Callable[[W, Path], Fetched],
    matches: Callable[[W, Path], str | None],
    *,
    progress: PullProgress = QUIET,
) -> PullResult:
    """Every source's pull: the files in place that match are kept, the others fetched and verified (`fetch`) in
    `.staging-<name>/` after a disk check, then the switch. `matches` gives a file's sha256 when it is the one
    wanted. A model in place that already holds exactly these files is left alone ("up to date")."""
    models_dir = Path(models_dir)
    if not name or "/" in name or name.startswith(".") or name.endswith(PREVIOUS_SUFFIX):
        raise PullError(f"not a usable model name: {name!r}")
    in_place = _InPlace(models_dir / name, matches, progress)
    progress.stage(CHECKING, sum(entry.size for entry in files if in_place.may_hold(entry)))
    if in_place.manifest is not None and in_place.holds(files):
        progress.close()
        return PullResult(models_dir / name, 0, 0, None, up_to_date=True)
    staging = models_dir / f".staging-{name}"  # kept across runs: a later pull resumes from it
    staging.mkdir(parents=True, exist_ok=True)
    kept = in_place.keep(files, staging)
    _check_disk(staging, files)
    to_fetch = [entry for entry in files if entry.path not in kept]
    progress.stage(DOWNLOADING, sum(entry.size - _staged(staging, entry) for entry in to_fetch))
    progress.stage(VERIFYING, sum(entry.size for entry in to_fetch))
    entries, downloaded, resumed = [], 0, 0
    for entry in files:
        if entry.path in kept:
            entries.append(ManifestFile(entry.path, entry.size, kept[entry.path]))
            continue
        _staged(staging, entry)
        got = fetch(entry, staging / entry.path)
        entries.append(ManifestFile(entry.path, entry.size, got.sha256))
        downloaded, resumed = downloaded + got.downloaded, resumed + got.resumed
    progress.close()
    listed = {entry.path for entry in files} | {MANIFEST_NAME}
    for stale in [p for p in staging.rglob("*") if p.is_file() and str(p.relative_to(staging)) not in listed]:
        stale.unlink()  # left by an earlier pull of other files under this name
    (staging / MANIFEST_NAME).write_text(Manifest(name, tuple(entries)).to_json(), encoding="utf-8")
    final, previous = _switch(models_dir, name, staging)
    return PullResult(final, downloaded, resumed, previous, kept_files=len(kept))
