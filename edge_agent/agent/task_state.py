"""Whether each watch task can answer now: `task/<name>/availability` (retained `online`/`offline`, what Home
Assistant's entity follows) and one error on `task/<name>/error` and one log line when it stops being able to
(its camera's frames are too old, the model cannot see), never one per trigger."""

from __future__ import annotations

import logging
from typing import Any

from edge_agent.agent.shared import ResultPublisher

log = logging.getLogger("edge_agent.agent.watch")
ONLINE, OFFLINE = b"online", b"offline"


class TaskAvailability:
    """Per task: down (with the kind of problem and why) or up; a change is published once."""

    def __init__(self, publisher: ResultPublisher) -> None:
        self.publisher = publisher
        self._down: dict[str, tuple[str, str]] = {}  # task -> (reason code, message)
        self._online: set[str] = set()  # tasks whose `online` was published by this run

    def down(self, task: str, reason: str, message: str, **context: Any) -> bool:
        """The task cannot answer (`reason` e.g. 'stale_frame', 'no_vision'); published and logged when this is new
        (a task already down for the same reason stays quiet). True when it was new."""
        if self.is_down(task, reason):
            return False
        self._down[task] = (reason, message)
        self._online.discard(task)
        log.error("task %s: unavailable: %s", task, message)
        self.publisher.publish_result(
            f"task/{task}/error", {"task": task, "error": message, "reason": reason, **context}
        )
        self.publisher.publish_spooled(f"task/{task}/availability", OFFLINE, retain=True)
        return True

    def is_down(self, task: str, reason: str) -> bool:
        """The task is unavailable for `reason`."""
        return self._down.get(task, ("", ""))[0] == reason

    def clear(self, task: str, reason: str) -> None:
        """The problem `reason` is gone (e.g. a model that can see was loaded); `online` waits for an answer."""
        if self.is_down(task, reason):
            del self._down[task]

    def up(self, task: str) -> None:
        """The task answered: `online`, once per change."""
        was = self._down.pop(task, None)
        if was is not None:
            log.info("task %s: available again (%s is over)", task, was[0])
        if task not in self._online:
            self._online.add(task)
            self.publisher.publish_spooled(f"task/{task}/availability", ONLINE, retain=True)

    def problems(self, tasks: list[str]) -> dict[str, str]:
        """Why each of `tasks` that is down cannot answer."""
        return {task: self._down[task][1] for task in tasks if task in self._down}
