"""Work a request does not redo: a request's own growing context across tool steps, and recent text prefixes
(system turn, tool declarations) shared by every request, both as KV caches the next prefill starts from."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_agent.model.runtime.kv_cache import KVCache
from edge_agent.model.runtime.media_prompt import EncodedMedia

MIN_SHARED_PREFIX = 16  # shorter common prefixes are not worth a cache copy


def common_prefix(first: Sequence[int], second: Sequence[int]) -> int:
    """How many leading ids the two sequences share."""
    size = min(len(first), len(second))
    if size == 0:
        return 0
    differ = np.flatnonzero(np.asarray(first[:size]) != np.asarray(second[:size]))
    return int(differ[0]) if differ.size else size


class PrefixCache:
    """KV caches of recently prefilled text prefixes, least recently used dropped beyond a byte budget.

    Only text is cached: a media placeholder id stands for features that differ between requests, so callers
    cut prefixes at the first placeholder."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple[int, ...], KVCache] = OrderedDict()
        self.hits = 0
        self.reused_tokens = 0

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return sum(cache.nbytes for cache in self._entries.values())

    def longest(self, ids: Sequence[int], limit: int) -> KVCache | None:
        """The cache of the longest stored prefix of `ids` (at most `limit` positions), or None."""
        best, best_key = 0, None
        for key, cache in self._entries.items():
            shared = min(common_prefix(key, ids), limit)
            if shared > best and cache.can_truncate(shared):
                best, best_key = shared, key
        if best_key is None or best < MIN_SHARED_PREFIX:
            return None
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.reused_tokens += best
        return self._entries[best_key].truncated(best)

    def store(self, ids: Sequence[int], cache: KVCache) -> None:
        """Keep the cache of the leading `ids` (cut to what `cache` holds), dropping the oldest entries over budget;
        the cache is copied only when it is kept (a prefix already stored costs nothing)."""
        length = min(len(ids), cache.length)
        key = tuple(ids[:length])
        size = cache.nbytes * length // max(cache.length, 1)
        if length < MIN_SHARED_PREFIX or size > self.max_bytes or not cache.can_truncate(length):
            return
        if any(known[:length] == key for known in self._entries):  # already covered by one as long or longer
            return
        for known in list(self._entries):  # a stored prefix of the new key adds nothing
            if key[: len(known)] == known:
                del self._entries[known]
        self._entries[key] = cache.truncated(length)
        while self.nbytes > self.max_bytes:
            self._entries.popitem(last=False)


@dataclass
class Conversation:
    """One request's context so far: the ids in its KV cache, and its encoded media, reused by every step."""

    media: EncodedMedia | None = None
    media_key: tuple[int, ...] = ()  # identity of the images and clips that `media` encodes
    ids: list[int] = field(default_factory=list)
    cache: KVCache | None = None
    prompt_cache: KVCache | None = None  # the last prompt's cache, kept only when `cache` can no longer rewind to it
    prefilled_tokens: int = 0  # positions this request prefilled (reused ones not counted)
    reused_tokens: int = 0  # positions taken from a cache instead
    encoder_runs: int = 0  # images and clips encoded
    audio_truncated: bool = False  # a clip was longer than the encoder takes

    def start_for(self, ids: Sequence[int]) -> KVCache | None:
        """The cache of the longest prefix of `ids` this request already holds (at least one id left over)."""
        if self.cache is None:
            return None
        shared = min(common_prefix(self.ids, ids), self.cache.length, len(ids) - 1)
        for cache in (self.cache, self.prompt_cache):  # a trimmed sliding layer may not reach back far enough
            if cache is not None and 0 < shared <= cache.length and cache.can_truncate(shared):
                return cache.truncated(shared)
        return None

    def remember(self, ids: Sequence[int], cache: KVCache | None, prompt_cache: KVCache | None = None) -> None:
        """The context after a generation: `cache` holds the first cache.length of `ids`; `prompt_cache` (the
        prompt's, before decoding) is kept when `cache` has trimmed sliding layers that cannot rewind to it."""
        if cache is not None:
            self.ids, self.cache = list(ids[: cache.length]), cache
            rewinds = prompt_cache is None or cache.can_truncate(prompt_cache.length)
            self.prompt_cache = None if rewinds else prompt_cache
