"""The decoder's KV cache: past keys and values by input name; sliding layers may hold only their window."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

REWIND_MARGIN = 64  # positions kept beyond a window, so a request can step back over its last tokens (tool steps)
_HEADROOM = 256  # positions a grown buffer has to spare, at least (and half of what it holds)


class Rows:
    """A buffer of positions that grows in place: views of its first `filled` rows are caches; only the cache
    that ends at `filled` may append (an older view stays valid, its rows are never written again)."""

    __slots__ = ("buffer", "filled")

    def __init__(self, held: np.ndarray, extra: int) -> None:
        shape = (*held.shape[:2], held.shape[2] + max(extra, _HEADROOM, held.shape[2] // 2), held.shape[3])
        self.buffer = np.empty(shape, dtype=held.dtype)
        self.buffer[:, :, : held.shape[2]] = held
        self.filled = held.shape[2]

    def append(self, held: np.ndarray, new: np.ndarray) -> np.ndarray | None:
        """The view of `held` + `new` written in place, or None when `held` is not this buffer's tip or no room."""
        end = held.shape[2] + new.shape[2]
        tip = held.shape[2] == self.filled and (held.size == 0 or held.base is self.buffer)
        if not tip or end > self.buffer.shape[2]:
            return None
        self.buffer[:, :, self.filled : end] = new
        self.filled = end
        return self.buffer[:, :, :end]


def _grown(held: np.ndarray, new: np.ndarray, rows: Rows | None) -> tuple[np.ndarray, Rows | None]:
    """`held` followed by `new`: in place for one KV head (the past input must be contiguous), else a copy."""
    if held.shape[1] != 1:
        return np.concatenate([held, new], axis=2), None
    view = rows.append(held, new) if rows is not None else None
    if view is not None:
        return view, rows
    rows = Rows(held, new.shape[2])
    view = rows.append(rows.buffer[:, :, : held.shape[2]], new)
    assert view is not None
    return view, rows


@dataclass(frozen=True)
class KVCache:
    """Past keys/values by decoder input name, and how many positions they hold. A tensor named in `windows`
    belongs to a sliding layer and may hold only its last positions (at least the window before the next one)."""

    tensors: dict[str, np.ndarray]
    length: int
    windows: dict[str, int] = field(default_factory=dict)  # input name -> sliding window (only when trimmable)
    rows: dict[str, Rows | None] = field(default_factory=dict, compare=False, repr=False)  # growable buffers

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
        """The first `length` positions, copied (both stay valid: only a buffer's tip is ever appended to)."""
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
        rows = {name: buffer for name, buffer in self.rows.items() if name not in over}  # the others grow on
        return KVCache(tensors, self.length, self.windows, rows)

    def appended(self, new: dict[str, np.ndarray]) -> KVCache:
        """This cache followed by `new` positions (same names), grown in place where this cache is a buffer's tip."""
        steps = next(iter(new.values())).shape[2]
        tensors, rows = {}, {}
        for name, held in self.tensors.items():
            tensors[name], rows[name] = _grown(held, new[name], self.rows.get(name))
        return KVCache(tensors, self.length + steps, self.windows, rows)
