"""A streamed answer's partial texts: bounded in rate, and joined they are the readable text."""

from __future__ import annotations

import re
import time

from edge_agent.agent.stream import TextStream


def readable(raw: str) -> str:
    """Like the agent's: tool-call blocks (also unfinished ones) and surrounding spaces removed."""
    return re.sub(r"<\|tool_call>.*?(<tool_call\|>|$)", "", raw, flags=re.DOTALL).strip()


class Receiver:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []

    def __call__(self, text: str, reset: bool) -> None:
        self.sent.append((text, reset))

    def text(self) -> str:
        start = max((i for i, (_, reset) in enumerate(self.sent) if reset), default=0)
        return "".join(text for text, _ in self.sent[start:])


def test_pieces_fed_faster_than_the_interval_are_sent_together() -> None:
    receiver = Receiver()
    stream = TextStream(readable, receiver, interval_s=60)
    words = [f" word{n}" for n in range(200)]
    for word in words:
        stream.feed(word)
    assert receiver.sent == [("word0", False)]  # the first at once, the rest waits for the interval
    stream.flush()
    assert len(receiver.sent) == 2 and receiver.text() == "".join(words).strip()


def test_a_piece_after_the_interval_is_sent_at_once() -> None:
    receiver = Receiver()
    stream = TextStream(readable, receiver, interval_s=0.05)
    for word in ("one", " two", " three"):
        stream.feed(word)
        time.sleep(0.06)
    assert receiver.sent == [("one", False), (" two", False), (" three", False)]


def test_trailing_space_and_an_unfinished_call_wait_and_a_new_step_resets() -> None:
    receiver = Receiver()
    stream = TextStream(readable, receiver, interval_s=0)
    for piece in ("Let me check", " ", "<|tool_call>", "call:clock{}", "<tool_call|>"):
        stream.feed(piece)
    assert receiver.text() == "Let me check" and all(not reset for _, reset in receiver.sent)
    stream.restart()  # the next tool step: its text replaces what was sent
    for piece in ("It is", " noon."):
        stream.feed(piece)
    stream.flush("It is noon. ")
    assert receiver.sent == [("Let me check", False), ("It is", True), (" noon.", False)]
    assert receiver.text() == "It is noon."
