"""The configured reference images, decoded once (again when a file changes) and looked up by name for a question."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from edge_agent.config.references import ReferenceImageConfig, reference_image_problem
from edge_agent.model.media.vision import ImageError, load_image
from edge_agent.model.runtime.feature_cache import ReferenceImage, reference_image


class UnknownReferenceError(ValueError):
    """A question named a reference image the config does not define."""


def unknown_reference(name: str, known: Sequence[str]) -> str:
    """The one line an asker gets for a name that is not configured."""
    configured = ", ".join(sorted(known)) or "none configured"
    return f"references: no reference image named {name[:64]!r} (known: {configured})"


class ReferenceLibrary:
    """Reference images by name, from the current config (read at each call, so a SIGHUP reload takes effect)."""

    def __init__(self, configs: Callable[[], Sequence[ReferenceImageConfig]]) -> None:
        self.configs = configs
        self._decoded: dict[tuple[str, Path, int, int], ReferenceImage] = {}
        self._lock = threading.Lock()  # asks and watch tasks resolve from worker threads

    def resolve(self, names: Sequence[str], budget: Callable[[int], int] = int) -> tuple[ReferenceImage, ...]:
        """The named references in order, each at `budget(its configured budget)` (the degradation ladder);
        UnknownReferenceError for a name not configured, ImageError when a file no longer decodes (blocking)."""
        configured = {config.name: config for config in self.configs()}
        references = []
        for name in dict.fromkeys(names):  # a name given twice is shown once
            config = configured.get(name)
            if config is None:
                raise UnknownReferenceError(unknown_reference(name, list(configured)))
            reference = self._load(config)
            references.append(replace(reference, budget=budget(reference.budget)))
        return tuple(references)

    def _load(self, config: ReferenceImageConfig) -> ReferenceImage:
        try:
            status = config.image.stat()
        except OSError as exc:
            raise ImageError(f"reference {config.name!r}: {config.image}: {exc.strerror or exc}") from None
        key = (config.name, config.image, status.st_mtime_ns, status.st_size)
        with self._lock:
            found = self._decoded.get(key)
        if found is not None and found.description == config.description and found.budget == config.budget:
            return found
        problem = reference_image_problem(config.image)  # the file may have changed since the config was read
        if problem is not None:
            raise ImageError(f"reference {config.name!r}: {problem}")
        try:
            image = load_image(config.image)
        except ImageError as exc:
            raise ImageError(f"reference {config.name!r}: {exc}") from None
        loaded = reference_image(config.name, image, config.budget, config.description)
        with self._lock:
            self._decoded = {old: value for old, value in self._decoded.items() if old[0] != config.name}
            self._decoded[key] = loaded
        return loaded
