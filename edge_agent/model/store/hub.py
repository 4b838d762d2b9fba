"""Pull a model from the Hugging Face hub (or a mirror of its API: $HF_ENDPOINT; a private repo: $HF_TOKEN): only the
files one variant uses, each checked against the hub's own sha256 (LFS files) or git blob id (the others), through
the staging directory and atomic switch every source shares, resumed with Range requests through huggingface_hub's
HTTP session. huggingface_hub is imported here only, when pulling."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.model.store.files import variant_paths
from edge_agent.model.store.manifest import ModelFilesError, safe_path
from edge_agent.model.store.progress import CHECKING, DOWNLOADING, QUIET, VERIFYING, PullProgress, hash_into
from edge_agent.model.store.pull import Fetched, PullError, PullResult, install, interrupted, refused

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer
    from huggingface_hub.hf_api import RepoSibling

HUB_PREFIX = "hf://"
INSTALL_HINT = "pip install 'edge-agent-node[hub]'"  # this project's distribution name (pyproject.toml)
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_HEX = re.compile(r"[0-9a-f]+")
_RETRIES = 5  # a dropped download is resumed this many times in a row without a byte received (as huggingface_hub)
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HubFile:
    """A repo file as the hub lists it: path, size, LFS sha256 (None for a plain git file) and git blob id."""

    path: str
    size: int
    sha256: str | None
    blob_id: str


def is_hub_source(text: str) -> bool:
    """An hf:// source."""
    return text.startswith(HUB_PREFIX)


def looks_like_repo_id(text: str) -> bool:
    """OWNER/NAME, as the hub spells a model repo."""
    return bool(_REPO_ID.fullmatch(text)) and ".." not in text


def parse_repo_id(text: str) -> str:
    """hf://OWNER/NAME -> OWNER/NAME."""
    repo_id = text.removeprefix(HUB_PREFIX).strip("/")
    if not _REPO_ID.fullmatch(repo_id) or ".." in repo_id:
        raise PullError(f"{text}: give a hub model repository as hf://OWNER/NAME (a revision goes in --revision)")
    return repo_id


def _require_library() -> None:
    """The optional dependency, or an error that says how to install it."""
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        raise PullError(f"pulling from the Hugging Face hub needs huggingface_hub: {INSTALL_HINT}") from None


def _endpoint() -> str:
    from huggingface_hub import constants

    return constants.ENDPOINT


def _hub_file(sibling: RepoSibling) -> HubFile:
    """One listed file, its metadata checked (a listing from a mirror is not trusted)."""
    size, blob_id, sha256 = sibling.size, sibling.blob_id, sibling.lfs.sha256 if sibling.lfs else None
    where = f"the hub's listing of {sibling.rfilename!r}"
    if not isinstance(size, int) or size < 0 or not isinstance(blob_id, str) or not _HEX.fullmatch(blob_id):
        raise PullError(f"{where}: no size or git blob id (is {_endpoint()} a Hugging Face hub?)")
    if sha256 is not None and (len(sha256) != 64 or not _HEX.fullmatch(sha256)):
        raise PullError(f"{where}: the LFS sha256 is not 64 lower-case hex digits")
    return HubFile(safe_path(sibling.rfilename, where), size, sha256, blob_id)


def list_repo(repo_id: str, revision: str | None) -> tuple[str, dict[str, RepoSibling]]:
    """The commit `revision` (default: the main branch) resolves to, and the repo's files with their checksums."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(repo_id, revision=revision, files_metadata=True)
    except GatedRepoError:
        raise PullError(f"{repo_id}: a gated repository; accept its terms on the hub and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise PullError(f"{repo_id}: no such model on {_endpoint()} (a private one needs HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise PullError(f"{repo_id}: no revision {revision!r} on {_endpoint()}") from None
    except HfHubHTTPError as exc:
        raise PullError(f"{repo_id}: {exc}".splitlines()[0]) from None
    except Exception as exc:  # the HTTP client's own errors (connection refused, timeout, offline mode)
        raise PullError(f"{_endpoint()}: cannot reach the hub ({type(exc).__name__}: {exc}); see HF_ENDPOINT") from None
    if not info.sha or info.siblings is None:
        raise PullError(f"{repo_id}: the hub's answer has no commit or no file list")
    return info.sha, {sibling.rfilename: sibling for sibling in info.siblings}


class _StagingFile(io.FileIO):
    """The staging file a download appends to (after what an earlier pull left), reporting the bytes downloaded."""

    def __init__(self, target: Path, entry: HubFile, progress: PullProgress) -> None:
        super().__init__(target, "r+" if target.is_file() else "w")
        self.start = self.seek(0, os.SEEK_END)
        self.entry, self.progress = entry, progress

    def write(self, data: ReadableBuffer, /) -> int:
        """Write a block and report how far the download is."""
        written = super().write(data)
        self.progress.advance(DOWNLOADING, self.entry.path, max(self.tell() - self.start, 0))
        return written or 0


def _check(entry: HubFile, target: Path, progress: PullProgress, stage: str) -> tuple[str, str | None]:
    """The file's sha256, and what does not match the hub's sha256 (LFS) or git blob id (None: all matches)."""
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % entry.size) if entry.sha256 is None else None
    hash_into(target, [sha256] if blob is None else [sha256, blob], lambda n: progress.advance(stage, entry.path, n))
    if entry.sha256 is not None and sha256.hexdigest() != entry.sha256:
        return sha256.hexdigest(), "sha256 does not match the hub's (LFS)"
    if blob is not None and blob.hexdigest() != entry.blob_id:
        return sha256.hexdigest(), "git blob id (sha1) does not match the hub's"
    return sha256.hexdigest(), None


def _verify(entry: HubFile, target: Path, progress: PullProgress) -> str:
    """The file's sha256, once it matches the hub's; else the file is refused."""
    sha256, mismatch = _check(entry, target, progress, VERIFYING)
    if mismatch is not None:
        raise refused(entry, target, mismatch)
    return sha256


def _matcher(progress: PullProgress) -> Callable[[HubFile, Path], str | None]:
    """The sha256 of a file in place when it is the hub's."""

    def matches(entry: HubFile, target: Path) -> str | None:
        sha256, mismatch = _check(entry, target, progress, CHECKING)
        return sha256 if mismatch is None else None

    return matches


def _get(url: str, headers: dict[str, str], out: _StagingFile) -> None:
    """GET `url` onto the end of `out`; a dropped connection is resumed with a Range request from where `out` ends."""
    from huggingface_hub import constants
    from huggingface_hub.utils import hf_raise_for_status, http_stream_backoff, httpx

    retries = _RETRIES
    while True:
        start = out.tell()
        ranged = {**headers, "Range": f"bytes={start}-"} if start else headers
        try:
            with http_stream_backoff(
                "GET",
                url,
                headers=ranged,
                timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT,
                retry_on_exceptions=(),
                retry_on_status_codes=(408, 429),
            ) as response:
                hf_raise_for_status(response)
                if start and response.status_code != 206:  # the Range was ignored: the whole file comes again
                    out.progress.warn(f"{url}: the server ignored an HTTP Range request: {out.entry.path} starts again")
                    out.seek(0)
                    out.truncate()
                for block in response.iter_bytes(chunk_size=constants.DOWNLOAD_CHUNK_SIZE):  # 10 MiB per write
                    out.write(block)
                    retries = _RETRIES
                    if out.tell() > out.entry.size:
                        return  # more than listed: the size check refuses it
            return
        except (httpx.ConnectError, httpx.TimeoutException, httpx.RemoteProtocolError) as exc:
            if retries == 0:
                raise
            retries -= 1
            log.warning("%s: %s after %d bytes. Trying to resume download...", out.entry.path, exc, out.tell())
            time.sleep(1)


def _download(url: str, headers: dict[str, str], entry: HubFile, target: Path, progress: PullProgress) -> Fetched:
    """Download (or resume from what the staging directory holds) one file, then verify it."""
    from huggingface_hub.errors import HfHubHTTPError

    have = target.stat().st_size if target.is_file() else 0
    if have < entry.size:
        with _StagingFile(target, entry, progress) as out:
            try:
                _get(url, headers, out)
            except HfHubHTTPError as exc:
                raise PullError(f"{entry.path}: {exc}".splitlines()[0]) from None
            except Exception as exc:  # the HTTP client's own errors after the retries, or a full disk (OSError)
                raise interrupted(entry, out.tell(), f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
    size = target.stat().st_size
    if size != entry.size:
        raise interrupted(entry, size, "the hub sent a different size")
    return Fetched(_verify(entry, target, progress), size - have, have)


def pull_from_hub(
    repo_id: str,
    models_dir: str | Path,
    *,
    variant: str = "q4",
    revision: str | None = None,
    name: str | None = None,
    progress: PullProgress = QUIET,
) -> PullResult:
    """Pull the files `variant` uses from a hub model repo into `models_dir/<name>` (default: the repo's name)."""
    _require_library()
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, disable_progress_bars

    for client in ("httpx", "httpx2"):  # not a log line per request between the progress lines
        logging.getLogger(client).setLevel(logging.WARNING)
    commit, listing = list_repo(repo_id, revision)
    try:
        wanted = [_hub_file(listing[path]) for path in variant_paths(listing, variant)]
    except ModelFilesError as exc:
        raise PullError(f"{HUB_PREFIX}{repo_id} at {commit[:12]}: {exc}") from None
    disable_progress_bars()  # progress goes to `progress`
    headers = {**build_hf_headers(), "Accept-Encoding": "identity"}  # the token, if any; sizes as listed

    def fetch(entry: HubFile, target: Path) -> Fetched:
        url = hf_hub_url(repo_id, entry.path, revision=commit)  # every file from the one commit listed
        return _download(url, headers, entry, target, progress)

    result = install(models_dir, name or repo_id.split("/")[1], wanted, fetch, _matcher(progress), progress=progress)
    return dataclasses.replace(result, revision=commit)
