"""The decoder's KV cache: past keys and values by input name; sliding layers may hold only their window."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REWIND_MARGIN = 64  # positions kept beyond a window, so a request can step back over its last tokens (tool steps)


@dataclass(frozen=True)
class KVCache:
    """Past keys/values by decoder input name, and how many positions they hold. A tensor named in `windows`
    belongs to a sliding layer and may hold only its last positions (at least the window before the next one)."""

    tensors: dict[str, np.ndarray]
    length: int
    windows: dict[str, int] = field(default_factory=dict)  # input name -> sliding window (only when trimmable)

    @property
    def nbytes(self) -> int:
        """Bytes held by the keys and values."""
        return sum(tensor.nbytes for tensor in self.tensors.values())

    def dropped(self, name: str) -> int:
        """Leading positions `name` no longer holds."""
        return self.length - int(self.tensors[name].shape[2])

    def can_truncate(self, length: int) -> bool:
        """Whether the first `length` positions can be had: every sliding layer still holds its window before it."""
        if not 0 <= length <= self.length:
            return False
        return all(self.dropped(name) <= max(0, length - window) for name, window in self.windows.items())

    def truncated(self, length: int) -> KVCache:
        """The first `length` positions, copied (a cache is never written in place, so both stay valid)."""
        if not self.can_truncate(length):
            raise ValueError(f"cannot keep {length} of {self.length} cached positions")
        if length == self.length:
            return self
        cut = self.length - length
        tensors = {name: np.ascontiguousarray(t[:, :, : t.shape[2] - cut]) for name, t in self.tensors.items()}
        return KVCache(tensors, length, self.windows)

    def trimmed(self) -> KVCache:
        """Sliding layers cut to their window and a rewind margin once they hold half a window more (so the copy
        is amortised over many steps)."""
        keep = {name: window + REWIND_MARGIN for name, window in self.windows.items()}
        over = {name for name, size in keep.items() if self.tensors[name].shape[2] > size + self.windows[name] // 2}
        if not over:
            return self
        tensors = {
            name: np.ascontiguousarray(t[:, :, -keep[name] :]) if name in over else t
            for name, t in self.tensors.items()
        }
        return KVCache(tensors, self.length, self.windows)
