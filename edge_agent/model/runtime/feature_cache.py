"""Vision-encoder features of reference images, computed once per (reference name, image content, budget) and reused
by every later question of the same loaded model, least recently used dropped beyond a byte budget."""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.model.media.vision import VisionSettings, preprocess_image
from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.runtime.media_prompt import encode_media

DEFAULT_FEATURE_CACHE_BYTES = 32 * 2**20  # about 70 references at budget 70 with E2B's 1536-wide features
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ReferenceImage:
    """A named image shown to the model before a question's own media, at its own budget (BGR uint8)."""

    name: str
    image: np.ndarray
    budget: int = 70
    description: str | None = None
    digest: str = ""  # the image content's hash; computed from `image` when empty

    @property
    def caption(self) -> str:
        """The text that introduces the image in the prompt."""
        about = f" ({self.description})" if self.description else ""
        return f"Reference image '{self.name}'{about}:"

    @property
    def key(self) -> tuple[str, str, int]:
        """What its features depend on, for one loaded model: name, image content and budget."""
        return self.name, self.digest or content_digest(self.image), self.budget


def content_digest(image: np.ndarray) -> str:
    """A hash of an image's pixels and shape."""
    pixels = np.ascontiguousarray(image)
    digest = hashlib.blake2b(repr((pixels.shape, pixels.dtype.str)).encode(), digest_size=16)
    digest.update(pixels.data)
    return digest.hexdigest()


def reference_image(name: str, image: np.ndarray, budget: int = 70, description: str | None = None) -> ReferenceImage:
    """A reference image with its content hash computed once."""
    return ReferenceImage(name, image, budget, description, content_digest(image))


class FeatureCache:
    """Encoder rows by key; `hits` counts reuses, `encoded` the references the vision encoder had to run for."""

    def __init__(self, max_bytes: int = DEFAULT_FEATURE_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[str, str, int], np.ndarray] = OrderedDict()
        self.hits = 0
        self.encoded = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return sum(rows.nbytes for rows in self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: tuple[str, str, int]) -> np.ndarray | None:
        """The stored rows for `key` (counted as a hit), or None."""
        rows = self._entries.get(key)
        if rows is not None:
            self._entries.move_to_end(key)
            self.hits += 1
        return rows

    def put(self, key: tuple[str, str, int], rows: np.ndarray) -> None:
        """Keep `rows` (read-only) for `key`, dropping the least recently used entries over the byte budget."""
        self.encoded += 1
        if rows.nbytes > self.max_bytes:
            return
        kept = rows.copy()
        kept.setflags(write=False)
        stale = [old for old in self._entries if old[0] == key[0] and old[1] != key[1]]  # the name's older image
        for old in stale:
            del self._entries[old]
        self._entries[key] = kept
        while self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)


def check_reference(reference: ReferenceImage) -> None:
    """ValueError (one line) for a name or description that is not plain text fit for the prompt."""
    if not _NAME.match(reference.name):
        raise ValueError(f"reference {reference.name[:64]!r}: a name is 1-64 of a-z, A-Z, 0-9, '_' and '-'")
    about = reference.description or ""
    if len(about) > 200 or any(ch in about for ch in "<>") or any(ord(ch) < 32 for ch in about):
        raise ValueError(
            f"reference {reference.name!r}: the description must be one line of plain text without '<'/'>'"
        )
    if reference.image.ndim != 3 or reference.image.shape[2] != 3 or reference.image.dtype != np.uint8:
        raise ValueError(f"reference {reference.name!r}: the image must be BGR uint8 (height, width, 3)")


def reference_features(
    engine: TextEngine, references: Sequence[ReferenceImage], settings: VisionSettings, cache: FeatureCache
) -> tuple[list[np.ndarray], float, int]:
    """Each reference's encoder rows (from `cache`, or encoded alone and stored), the seconds spent and how many
    references were encoded; each is encoded on its own so that cached rows equal freshly computed ones."""
    started, encoded = time.monotonic(), 0
    rows: list[np.ndarray] = []
    for reference in references:
        check_reference(reference)
        key = reference.key
        found = cache.get(key)
        if found is None:
            media = encode_media(engine, [preprocess_image(reference.image, reference.budget, settings)])
            assert media.image_rows is not None
            found = media.image_rows
            cache.put(key, found)
            encoded += 1
        rows.append(found)
    return rows, time.monotonic() - started, encoded
