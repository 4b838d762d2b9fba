"""Pull a model from an HTTP(S) mirror or a local directory that serves manifest.json and the files it lists: only
the files of one variant, only those that differ from the model in place, resumed with Range requests (a mirror
that ignores Range is named in a warning: every resume then starts the file again)."""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.parse
import urllib.request
import urllib.response
from pathlib import Path
from typing import BinaryIO, Protocol

from edge_agent.model.store.files import variant_paths
from edge_agent.model.store.manifest import MANIFEST_NAME, Manifest, ManifestFile, ModelFilesError, parse_manifest
from edge_agent.model.store.progress import DOWNLOADING, QUIET, PullProgress, hash_into
from edge_agent.model.store.pull import Fetched, PullError, PullResult, install, interrupted, refused, sha256_matcher

TIMEOUT_S = 30.0
RESUMED = "checking the part downloaded before"
RESUMING_SERVERS = "nginx, caddy, Apache or `npx http-server` (Python's `python3 -m http.server` does not resume)"


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
    """A plain HTTP(S) mirror: `<url>/manifest.json` and `<url>/<path>`; resumes with Range requests.

    The manifest is asked for with `Range: bytes=0-` (the whole file either way): a 206 answer says the server
    resumes, a 200 that it ignores Range, which `progress` is warned about once, before any download."""

    def __init__(self, url: str, progress: PullProgress = QUIET) -> None:
        self.url = url if url.endswith("/") else url + "/"
        self.progress = progress
        self.resumes: bool | None = None  # learnt from the manifest's answer
        self.warned = False

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
        """The mirror's manifest.json (and whether the mirror honours Range)."""
        with self._get(MANIFEST_NAME, {"Range": "bytes=0-"}) as response:
            self.resumes = response.status == 206
            return bytes(response.read()).decode("utf-8")

    def warn_no_range(self) -> None:
        """Once per pull: this mirror cannot resume."""
        if not self.warned:
            self.warned = True
            self.progress.warn(
                f"the mirror {self.url} ignores HTTP Range requests (it answered 200, not 206): an interrupted "
                f"download will start its file again from zero instead of resuming; serve the mirror with a "
                f"server that resumes, e.g. {RESUMING_SERVERS}"
            )

    def open(self, path: str, offset: int) -> tuple[BinaryIO, int]:
        """The file from `offset` when the server honours Range (206), else from the start."""
        if self.resumes is False:
            self.warn_no_range()
        response = self._get(path, {"Range": f"bytes={offset}-"} if offset else {})
        if offset and response.status != 206:
            self.warn_no_range()
        return response, (offset if offset and response.status == 206 else 0)  # type: ignore[return-value]


def open_source(text: str | Path, progress: PullProgress = QUIET) -> Source:
    """http(s):// URL -> HttpSource, anything else -> a local directory."""
    if isinstance(text, str) and text.startswith(("http://", "https://")):
        return HttpSource(text, progress)
    root = Path(text).expanduser()
    if not root.is_dir():
        raise PullError(f"{root}: not a directory (give an http(s):// mirror URL or a directory)")
    return DirectorySource(root)


def _copy(
    stream: BinaryIO, out: BinaryIO, entry: ManifestFile, digest: hashlib._Hash, *, start: int, progress: PullProgress
) -> int:
    """Append the stream to `out` (which holds `start` bytes), hashing; the bytes received."""
    done = start
    while True:
        try:
            block = stream.read(1 << 20)
        except (OSError, http.client.HTTPException) as exc:  # a dropped connection: the next pull resumes
            raise interrupted(entry, done, type(exc).__name__) from None
        if not block:
            return done - start
        if done + len(block) > entry.size:
            raise PullError(f"{entry.path}: the source sends more than the {entry.size} bytes listed")
        out.write(block)
        digest.update(block)
        done += len(block)
        progress.advance(DOWNLOADING, entry.path, done - start)


def fetch_file(source: Source, entry: ManifestFile, target: Path, progress: PullProgress = QUIET) -> Fetched:
    """Download (or resume) one file of a mirror or directory into `target` and verify it."""
    have = target.stat().st_size if target.is_file() else 0
    stream, start = source.open(entry.path, have) if have < entry.size else (None, have)
    digest = hashlib.sha256()
    if start:
        progress.stage(RESUMED, start)
        hash_into(target, [digest], lambda n: progress.advance(RESUMED, entry.path, n), limit=start)
    downloaded = 0
    if stream is not None:
        with stream, target.open("r+b" if start else "wb") as out:
            out.seek(start)
            out.truncate()
            downloaded = _copy(stream, out, entry, digest, start=start, progress=progress)
    size = target.stat().st_size
    if size != entry.size:
        raise PullError(f"{entry.path}: got {size} of {entry.size} bytes (interrupted; run the pull again to resume)")
    if digest.hexdigest() != entry.sha256:
        raise refused(entry, target, "sha256 does not match the manifest")
    return Fetched(entry.sha256, downloaded, start)


def choose(manifest: Manifest, variant: str | None) -> list[ManifestFile]:
    """The manifest's files that `variant` uses (metadata, its graphs and their data); all of them for None."""
    if variant is None:
        return list(manifest.files)
    by_path = {entry.path: entry for entry in manifest.files}
    try:
        return [by_path[path] for path in variant_paths(by_path, variant)]
    except ModelFilesError as exc:
        raise PullError(f"the source's manifest.json: {exc}") from None


def pull(
    source: Source,
    models_dir: str | Path,
    name: str | None = None,
    progress: PullProgress = QUIET,
    variant: str | None = "q4",
) -> PullResult:
    """Pull the files of `variant` (None: every file) the source's manifest lists into `models_dir/<name>`:
    files the model in place already holds are kept, the others downloaded; verified, switched atomically."""
    manifest = parse_manifest(source.manifest(), "the source's manifest.json")

    def fetch(entry: ManifestFile, target: Path) -> Fetched:
        return fetch_file(source, entry, target, progress)

    files = choose(manifest, variant)
    return install(Path(models_dir), name or manifest.name, files, fetch, sha256_matcher(progress), progress=progress)
