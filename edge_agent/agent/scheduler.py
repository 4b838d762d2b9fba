"""One model, one inference at a time: a bounded priority queue of jobs with deadlines and cancellation."""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from enum import IntEnum
from functools import partial
from typing import Any, TypeVar

from edge_agent.service import name_os_thread

log = logging.getLogger(__name__)
R = TypeVar("R")


class Priority(IntEnum):
    """Lower runs first: questions and voice before standing watch questions."""

    SYSTEM = -1  # model loads: never refused as busy (not counted against the bound), next between two inferences
    INTERACTIVE = 0  # ask, voice
    BACKGROUND = 1  # watch


class JobRefusedError(Exception):
    """A job that did not run: the queue was full, it was superseded, too late, or the node is stopping."""

    def __init__(self, status: str, why: str) -> None:
        super().__init__(why)
        self.status = status  # "busy", "superseded", "deadline", "stopping", "paused"


@dataclass(frozen=True)
class JobContext:
    """What a running job gets: a cancel flag for the inference thread, its deadline (monotonic), and the inference
    thread itself (`offload`)."""

    cancel: threading.Event
    deadline: float | None
    thread: ThreadPoolExecutor | None = None  # the scheduler's inference thread

    async def offload(self, fn: Callable[..., R], *args: Any) -> R:
        """Run blocking `fn(*args)` (onnxruntime) on the inference thread, never on asyncio's shared executor."""
        return await asyncio.get_running_loop().run_in_executor(self.thread, partial(fn, *args))


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
        self.closed: str | None = None  # why the scheduler takes no more work (set by close(), for good)
        # wraps each running job: the systemd watchdog counts a job that never ends as a stalled stage
        self.busy: Callable[[str], AbstractContextManager[object]] = lambda _name: nullcontext()
        # one thread for every onnxruntime call (jobs run one at a time), started at the first; named `inference`
        self.thread = ThreadPoolExecutor(1, "inference", initializer=name_os_thread, initargs=("inference",))

    @property
    def depth(self) -> int:
        """Jobs waiting (not counting the running one)."""
        return len(self._heap)

    def _drop(self, job: Job, status: str, why: str) -> None:
        self.refused[status] = self.refused.get(status, 0) + 1
        job.refuse(status, why)

    def submit(self, job: Job) -> Job:
        """Queue a job; a full queue evicts a less urgent one or refuses this one as `busy`; a closed scheduler
        refuses every job as `stopping`. SYSTEM jobs (model loads) are never refused as busy."""
        if self.closed is not None:
            self._drop(job, "stopping", f"{job.name}: {self.closed}")
            return job
        if job.replaces is not None:
            for entry in self._heap:
                if entry[2].replaces == job.replaces:
                    self._heap.remove(entry)
                    heapq.heapify(self._heap)
                    self._drop(entry[2], "superseded", f"{entry[2].name}: replaced by a newer request")
                    break
        bounded = [entry for entry in self._heap if entry[0] > Priority.SYSTEM]
        if job.priority > Priority.SYSTEM and len(bounded) >= self.size:
            worst = max(bounded)
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
        """Run queued jobs forever, one at a time (none after close())."""
        while True:
            job = await self._next()
            if job.future.done():  # cancelled by whoever submitted it
                continue
            if self.closed is not None:
                self._drop(job, "stopping", f"{job.name}: {self.closed}")
                continue
            if job.deadline is not None and time.monotonic() >= job.deadline:
                self._drop(job, "deadline", f"{job.name}: waited past its deadline")
                continue
            await self._run(job)

    async def _run(self, job: Job) -> None:
        cancel = threading.Event()
        self.current, self._cancel = job, cancel
        # whoever gives up on the job (its future cancelled) stops its generation at the next token too
        job.future.add_done_callback(lambda _future: cancel.set())
        try:
            with self.busy(job.name):
                result = await job.run(JobContext(cancel, job.deadline, self.thread))
        except asyncio.CancelledError:  # serve() itself is cancelled: the inference thread must not go on
            cancel.set()
            log.info("%s cancelled: the scheduler stopped", job.name)
            self._drop(job, "stopping", f"{job.name}: the scheduler stopped")
            raise
        except JobRefusedError as exc:
            if exc.status == "stopping":
                log.info("%s stopped: %s", job.name, exc)
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

    def close(self, why: str) -> int:
        """Stop for good (shutdown): refuse every waiting and every later job as `stopping`, start nothing new, and
        cancel the running generation at its next token; returns how many waiting jobs were refused."""
        self.closed = why
        self.cancel_current()
        return self.drain(why)
