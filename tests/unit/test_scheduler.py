"""The model's job queue: priorities, the bound, busy refusals, superseded watch jobs, deadlines, drain, cancel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority, Scheduler


def job(name: str, priority: Priority, ran: list[str], **kwargs: Any) -> Job:
    async def run(_ctx: JobContext) -> str:
        ran.append(name)
        await asyncio.sleep(0)
        return name

    return Job(name, priority, run, **kwargs)


async def refusal(item: Job) -> str:
    with pytest.raises(JobRefusedError) as caught:
        await item.future
    return caught.value.status


def test_interactive_jobs_run_before_background_ones_and_fifo_within_a_priority() -> None:
    async def scenario() -> list[str]:
        scheduler, ran = Scheduler(10), []
        jobs = [
            scheduler.submit(job("watch-1", Priority.BACKGROUND, ran)),
            scheduler.submit(job("ask-1", Priority.INTERACTIVE, ran)),
            scheduler.submit(job("watch-2", Priority.BACKGROUND, ran)),
            scheduler.submit(job("voice-1", Priority.INTERACTIVE, ran)),
        ]
        server = asyncio.create_task(scheduler.serve())
        results = [await item.future for item in jobs]
        server.cancel()
        assert results == ["watch-1", "ask-1", "watch-2", "voice-1"]
        return ran

    assert asyncio.run(scenario()) == ["ask-1", "voice-1", "watch-1", "watch-2"]


def test_the_bound_holds_busy_beyond_it_and_urgent_work_pushes_out_background_work() -> None:
    async def scenario() -> None:
        scheduler, ran = Scheduler(2), []
        first = scheduler.submit(job("watch-a", Priority.BACKGROUND, ran))
        second = scheduler.submit(job("ask-1", Priority.INTERACTIVE, ran))
        third = scheduler.submit(job("ask-2", Priority.INTERACTIVE, ran))  # pushes watch-a out
        fourth = scheduler.submit(job("ask-3", Priority.INTERACTIVE, ran))  # nothing less urgent left: busy
        fifth = scheduler.submit(job("watch-b", Priority.BACKGROUND, ran))
        assert scheduler.depth == 2
        assert await refusal(first) == "busy"
        assert await refusal(fourth) == "busy"
        assert await refusal(fifth) == "busy"
        server = asyncio.create_task(scheduler.serve())
        assert [await second.future, await third.future] == ["ask-1", "ask-2"]
        server.cancel()
        assert scheduler.refused == {"busy": 3}

    asyncio.run(scenario())


def test_a_newer_watch_request_replaces_the_waiting_one() -> None:
    async def scenario() -> None:
        scheduler, ran = Scheduler(4), []
        old = scheduler.submit(job("watch:garage", Priority.BACKGROUND, ran, replaces="watch:garage"))
        new = scheduler.submit(job("watch:garage", Priority.BACKGROUND, ran, replaces="watch:garage"))
        other = scheduler.submit(job("watch:porch", Priority.BACKGROUND, ran, replaces="watch:porch"))
        assert await refusal(old) == "superseded"
        server = asyncio.create_task(scheduler.serve())
        await new.future
        await other.future
        server.cancel()
        assert ran == ["watch:garage", "watch:porch"]

    asyncio.run(scenario())


def test_a_job_past_its_deadline_does_not_run_and_the_running_one_sees_it() -> None:
    async def scenario() -> None:
        scheduler, seen = Scheduler(4), []

        async def slow(ctx: JobContext) -> None:
            seen.append(ctx.deadline)
            await asyncio.sleep(0.05)

        deadline = time.monotonic() + 10
        running = scheduler.submit(Job("slow", Priority.INTERACTIVE, slow, deadline=deadline))
        late = scheduler.submit(Job("late", Priority.INTERACTIVE, slow, deadline=time.monotonic() + 0.01))
        server = asyncio.create_task(scheduler.serve())
        await running.future
        assert await refusal(late) == "deadline"
        server.cancel()
        assert seen == [deadline]

    asyncio.run(scenario())


def test_drain_refuses_waiting_jobs_and_cancel_reaches_the_running_one() -> None:
    async def scenario() -> None:
        scheduler, flags = Scheduler(4), []

        async def generation(ctx: JobContext) -> str:
            flags.append(ctx.cancel)
            while not ctx.cancel.is_set():  # like the decode loop checking between tokens
                await asyncio.sleep(0.001)
            return "cancelled"

        running = scheduler.submit(Job("ask", Priority.INTERACTIVE, generation))
        server = asyncio.create_task(scheduler.serve())
        while not flags:
            await asyncio.sleep(0.001)
        waiting = [scheduler.submit(job(f"w{i}", Priority.BACKGROUND, [])) for i in range(3)]
        assert scheduler.drain("stopping") == 3
        scheduler.cancel_current()
        assert await running.future == "cancelled"
        assert [await refusal(item) for item in waiting] == ["stopping"] * 3
        server.cancel()

    asyncio.run(scenario())


def test_a_failing_job_reports_its_error_and_the_queue_goes_on() -> None:
    async def scenario() -> None:
        scheduler, ran = Scheduler(4), []

        async def broken(_ctx: JobContext) -> None:
            raise RuntimeError("encoder failed")

        bad = scheduler.submit(Job("bad", Priority.INTERACTIVE, broken))
        good = scheduler.submit(job("good", Priority.INTERACTIVE, ran))
        server = asyncio.create_task(scheduler.serve())
        with pytest.raises(RuntimeError, match="encoder failed"):
            await bad.future
        assert await good.future == "good"
        server.cancel()

    asyncio.run(scenario())
