"""Images in requests: data URLs and base64 decoded, http(s) URLs fetched only under the configured prefixes."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import tempfile
from pathlib import Path

import aiohttp
import cv2
import numpy as np

from edge_agent.model.media.audio_files import AudioError, load_audio
from edge_agent.web.errors import ApiError

FETCH_TIMEOUT_S = 10.0
MAX_SIDE = 16384  # pixels: a larger image is refused rather than decoded into gigabytes
_DATA_URL = re.compile(r"^data:(?P<type>[\w.+/-]*)(?P<params>(;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,", re.IGNORECASE)


def decode_image(data: bytes, what: str) -> np.ndarray:
    """JPEG/PNG/... bytes as a BGR frame; ApiError (400) when they are not an image OpenCV can read."""
    if not data:
        raise ApiError("bad_request", f"{what}: empty, not an image")
    header = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    if header is not None and max(header.shape[:2]) * 8 > MAX_SIDE:
        raise ApiError("bad_request", f"{what}: larger than {MAX_SIDE} pixels on a side")
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ApiError("bad_request", f"{what}: not an image (corrupt, truncated, or a format OpenCV cannot decode)")
    frame: np.ndarray = image
    return frame


def _load_clip(data: bytes, suffix: str) -> np.ndarray:
    with tempfile.TemporaryDirectory(prefix="edge-agent-audio-") as folder:
        path = Path(folder) / f"clip.{suffix}"
        path.write_bytes(data)
        return load_audio(path)


async def decode_audio(data: bytes, suffix: str, what: str) -> np.ndarray:
    """WAV/MP3/FLAC/OGG bytes as 16 kHz mono (libsndfile, off the event loop); ApiError (400) otherwise."""
    if not data:
        raise ApiError("bad_request", f"{what}: empty, not audio")
    try:
        return await asyncio.to_thread(_load_clip, data, suffix)
    except AudioError as exc:
        reason = str(exc).rpartition(": ")[2] or "not audio libsndfile can decode"
        raise ApiError("bad_request", f"{what}: not usable audio ({reason})") from None


def decode_base64(text: str, what: str) -> bytes:
    """Strict base64 (whitespace allowed); ApiError (400) otherwise."""
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("bad_request", f"{what}: not valid base64") from None


class ImageLoader:
    """Turns what a request names into frames: data URLs and base64 at once, URLs only under `fetch_urls`."""

    def __init__(self, fetch_urls: list[str], max_bytes: int) -> None:
        self.fetch_urls, self.max_bytes = tuple(fetch_urls), max_bytes

    async def from_url(self, url: str, what: str) -> np.ndarray:
        """A data URL or an allowed http(s) URL."""
        match = _DATA_URL.match(url[:512])
        if match is not None:
            if not match.group("b64"):
                raise ApiError("bad_request", f"{what}: only base64 data URLs are supported")
            return decode_image(decode_base64(url[match.end() :], what), what)
        if not url.lower().startswith(("http://", "https://")):
            raise ApiError("bad_request", f"{what}: a data: URL or an http(s) URL")
        if not any(url.startswith(prefix) for prefix in self.fetch_urls):
            allowed = ", ".join(self.fetch_urls) or "none: http.fetch_urls is empty"
            raise ApiError("bad_request", f"{what}: the node fetches images only under http.fetch_urls ({allowed})")
        return decode_image(await self._fetch(url, what), what)

    async def _fetch(self, url: str, what: str) -> bytes:
        timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.get(url, allow_redirects=False) as response,
            ):
                if response.status != 200:
                    raise ApiError("bad_request", f"{what}: fetching it gave HTTP {response.status}")
                body = await response.content.read(self.max_bytes + 1)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ApiError("bad_request", f"{what}: cannot fetch it: {exc or type(exc).__name__}") from None
        if len(body) > self.max_bytes:
            raise ApiError("too_large", f"{what}: larger than {self.max_bytes} bytes")
        return body
