"""One model, one inference at a time: a bounded priority queue of jobs with deadlines and cancellation."""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

log = logging.getLogger(__name__)


class Priority(IntEnum):
    """Lower runs first: questions and voice before standing watch questions."""

    INTERACTIVE = 0  # ask, voice
    BACKGROUND = 1  # watch


class JobRefusedError(Exception):
    """A job that did not run: the queue was full, it was superseded, too late, or the node is stopping."""

    def __init__(self, status: str, why: str) -> None:
        super().__init__(why)
        self.status = status  # "busy", "superseded", "deadline", "stopping", "paused"


@dataclass(frozen=True)
class JobContext:
    """What a running job gets: a cancel flag for the inference thread and its deadline (monotonic)."""

    cancel: threading.Event
    deadline: float | None


JobFn = Callable[[JobContext], Awaitable[Any]]


@dataclass(eq=False)
class Job:
    """A unit of model work; `future` gets its result or a JobRefusedError."""

    name: str
    priority: Priority
    run: JobFn
    deadline: float | None = None  # time.monotonic() after which it must not start (and generation stops)
    replaces: str | None = None  # a newer job with the same key replaces this one while it waits
    submitted: float = field(default_factory=time.monotonic)
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    def refuse(self, status: str, why: str) -> None:
        """Complete the job without running it."""
        if not self.future.done():
            self.future.set_exception(JobRefusedError(status, why))
            self.future.exception()  # mark it retrieved: a refused watch job has no one awaiting it


class Scheduler:
    """Runs jobs one at a time, most urgent first, FIFO within a priority; refuses beyond `size` waiting."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._heap: list[tuple[int, int, Job]] = []
        self._seq = 0
        self._added = asyncio.Event()
        self.current: Job | None = None
        self._cancel: threading.Event | None = None
        self.completed = 0
        self.refused: dict[str, int] = {}
        # wraps each running job: the systemd watchdog counts a job that never ends as a stalled stage
        self.busy: Callable[[str], AbstractContextManager[object]] = lambda _name: nullcontext()

    @property
    def depth(self) -> int:
        """Jobs waiting (not counting the running one)."""
        return len(self._heap)

    def _drop(self, job: Job, status: str, why: str) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1
        job.refuse(status, why)

    def submit(self, job: Job) -> Job:
        """Queue a job; a full queue evicts a less urgent one or refuses this one as `busy`."""
        if job.replaces is not None:
            for entry in self._heap:
                if entry[2].replaces == job.replaces:
                    self._heap.remove(entry)
                    heapq.heapify(self._heap)
                    self._drop(entry[2], "superseded", f"{entry[2].name}: replaced by a newer request")
                    break
        if len(self._heap) >= self.size:
            worst = max(self._heap)
            if worst[0] <= job.priority:
                self._drop(job, "busy", f"busy: {self.depth} requests waiting for the model")
                return job
            self._heap.remove(worst)
            heapq.heapify(self._heap)
            self._drop(worst[2], "busy", f"{worst[2].name}: pushed out by a more urgent request")
        self._seq += 1
        heapq.heappush(self._heap, (int(job.priority), self._seq, job))
        self._added.set()
        return job

    async def _next(self) -> Job:
        while not self._heap:
            self._added.clear()
            await self._added.wait()
        return heapq.heappop(self._heap)[2]

    async def serve(self) -> None:
        """Run queued jobs forever, one at a time."""
        while True:
            job = await self._next()
            if job.future.done():  # cancelled by whoever submitted it
                continue
            if job.deadline is not None and time.monotonic() >= job.deadline:
                self._drop(job, "deadline", f"{job.name}: waited past its deadline")
                continue
            self.current, self._cancel = job, threading.Event()
            try:
                with self.busy(job.name):
                    result = await job.run(JobContext(self._cancel, job.deadline))
            except JobRefusedError as exc:
                self._drop(job, exc.status, str(exc))
            except Exception as exc:
                log.exception("%s failed", job.name)
                if not job.future.done():
                    job.future.set_exception(exc)
                    job.future.exception()
            else:
                self.completed += 1
                if not job.future.done():
                    job.future.set_result(result)
            finally:
                self.current, self._cancel = None, None

    def cancel_current(self) -> None:
        """Ask the running job's generation to stop at its next token."""
        if self._cancel is not None:
            self._cancel.set()

    def drain(self, why: str) -> int:
        """Refuse every waiting job (on shutdown or pause); returns how many there were."""
        waiting = [entry[2] for entry in self._heap]
        self._heap.clear()
        for job in waiting:
            self._drop(job, "stopping", f"{job.name}: {why}")
        return len(waiting)
