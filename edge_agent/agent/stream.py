"""A streamed answer: the model's raw pieces become additions to the text a person reads, sent at a bounded rate."""

from __future__ import annotations

import time
from collections.abc import Callable

STREAM_INTERVAL_S = 0.1  # at most one partial message per this many seconds (the rest waits for the next one)


class TextStream:
    """Feeds `send(text, reset)` with what was added to the readable text since the last call; `reset` means the
    text replaces everything sent before (a tool step started over). Joined from the last reset, the texts sent are
    the readable text of the generation so far; after `flush()`, of all of it. Used on one thread at a time."""

    def __init__(
        self, readable: Callable[[str], str], send: Callable[[str, bool], None], interval_s: float = STREAM_INTERVAL_S
    ) -> None:
        self.readable, self.send, self.interval_s = readable, send, interval_s
        self._raw = ""  # the current generation's output, special tokens included
        self._sent = ""  # the readable text the receiver has now
        self._last = -float("inf")

    def restart(self) -> None:
        """A new generation (the next tool step) begins; what was sent stays until its text differs."""
        self._raw = ""

    def feed(self, piece: str) -> None:
        """One decoded piece of the generation; sends when the last send is `interval_s` old."""
        self._raw += piece
        if time.monotonic() - self._last >= self.interval_s:
            self.flush()

    def flush(self, whole: str | None = None) -> None:
        """Send what the receiver does not have yet, if anything; `whole`: the generation's final output."""
        if whole is not None:
            self._raw = whole
        text = self.readable(self._raw)
        if text == self._sent:
            return
        if text.startswith(self._sent):
            self.send(text[len(self._sent) :], False)
        else:
            self.send(text, True)
        self._sent, self._last = text, time.monotonic()
