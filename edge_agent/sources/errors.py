"""What a failing source raises."""

from __future__ import annotations


class SourceError(Exception):
    """A frame source failed; `permanent` means retrying cannot help (e.g. a missing file)."""

    def __init__(self, message: str, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
