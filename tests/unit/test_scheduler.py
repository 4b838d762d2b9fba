"""The model's job queue: priorities, the bound, busy refusals, superseded watch jobs, deadlines, drain, cancel,
close; model loads that are never refused as busy and never leave `model_pending` stuck."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import shared
from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority, Scheduler
from edge_agent.agent.shared import AgentCore
from edge_agent.config import parse_config


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


def test_a_closed_scheduler_refuses_new_jobs_and_starts_nothing_more() -> None:
    async def scenario() -> None:
        scheduler, ran, flags = Scheduler(4), [], []

        async def generation(ctx: JobContext) -> str:
            flags.append(ctx.cancel)
            while not ctx.cancel.is_set():
                await asyncio.sleep(0.001)
            await asyncio.sleep(0.05)  # winds down (publishes what it has) while new work arrives
            return "wound down"

        running = scheduler.submit(Job("ask", Priority.INTERACTIVE, generation))
        server = asyncio.create_task(scheduler.serve())
        while not flags:
            await asyncio.sleep(0.001)
        waiting = scheduler.submit(job("watch", Priority.BACKGROUND, ran))
        assert scheduler.close("the node is stopping") == 1
        assert flags[0].is_set()  # close() cancels the running generation
        late = [scheduler.submit(job(f"late-{p.name}", p, ran)) for p in Priority]
        assert await running.future == "wound down"
        await asyncio.sleep(0.05)
        assert ran == [] and scheduler.depth == 0 and scheduler.current is None
        for item in [waiting, *late]:
            with pytest.raises(JobRefusedError, match="the node is stopping") as caught:
                await item.future
            assert caught.value.status == "stopping"
        server.cancel()

    asyncio.run(scenario())


def steps_until_cancelled(ctx: JobContext, steps: list[int]) -> None:
    """A decode loop on the inference thread: one step per 10 ms until its cancel flag is set."""
    while not ctx.cancel.is_set() and len(steps) < 1000:
        steps.append(len(steps))
        time.sleep(0.01)


def test_cancelling_serve_sets_the_running_generations_cancel_flag() -> None:
    async def scenario() -> tuple[int, int]:
        scheduler, steps = Scheduler(4), []
        running = scheduler.submit(
            Job("ask", Priority.INTERACTIVE, lambda ctx: asyncio.to_thread(steps_until_cancelled, ctx, steps))
        )
        server = asyncio.create_task(scheduler.serve())
        while len(steps) < 5:
            await asyncio.sleep(0.005)
        server.cancel()  # the node stops without a drain: the task running the job is cancelled
        with pytest.raises(asyncio.CancelledError):
            await server
        at_cancel = len(steps)
        await asyncio.sleep(0.3)  # 30 more steps if the thread never heard of it
        assert await refusal(running) == "stopping"
        return at_cancel, len(steps)

    at_cancel, final = asyncio.run(scenario())
    assert final - at_cancel <= 2


def test_a_submitter_that_gives_up_stops_the_running_generation() -> None:
    async def scenario() -> int:
        scheduler, steps = Scheduler(4), []
        running = scheduler.submit(
            Job("ask", Priority.INTERACTIVE, lambda ctx: asyncio.to_thread(steps_until_cancelled, ctx, steps))
        )
        server = asyncio.create_task(scheduler.serve())
        while len(steps) < 5:
            await asyncio.sleep(0.005)
        running.future.cancel()
        await asyncio.sleep(0.3)
        server.cancel()
        return len(steps)

    assert asyncio.run(scenario()) < 10


def test_system_jobs_are_never_refused_as_busy_and_run_next() -> None:
    async def scenario() -> None:
        scheduler, ran = Scheduler(1), []
        watch = scheduler.submit(job("watch", Priority.BACKGROUND, ran))
        ask = scheduler.submit(job("ask", Priority.INTERACTIVE, ran))  # pushes the watch job out: the queue is full
        loads = [scheduler.submit(job(f"model-load-{i}", Priority.SYSTEM, ran)) for i in range(2)]
        busy = scheduler.submit(job("ask-2", Priority.INTERACTIVE, ran))  # the bound still holds for the others
        assert scheduler.depth == 3
        assert await refusal(watch) == "busy" and await refusal(busy) == "busy"
        server = asyncio.create_task(scheduler.serve())
        await asyncio.gather(ask.future, *(load.future for load in loads))
        server.cancel()
        assert ran == ["model-load-0", "model-load-1", "ask"]

    asyncio.run(scenario())


def core_with_a_full_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[AgentCore, list[str]]:
    loads: list[str] = []

    def load_model(model: Any, _health: Any, use_fallback: bool, _memory: Any = None) -> str:
        loads.append("fallback" if use_fallback else "primary")
        return f"model ({loads[-1]})"

    monkeypatch.setattr(shared, "load_model", load_model)
    config = parse_config(f"model: {{path: {tmp_path}}}\nagent: {{queue_size: 1}}\n", env={})
    core = AgentCore(config, None, None, lambda _camera: None, lambda: None)  # type: ignore[arg-type]
    core.scheduler.submit(job("ask", Priority.INTERACTIVE, []))  # the queue is full
    return core, loads


def test_a_model_load_on_a_full_queue_runs_and_clears_model_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def scenario() -> None:
        core, loads = core_with_a_full_queue(tmp_path, monkeypatch)
        reload = core.schedule_model_load([(core.config.model, core.config.health, True)], "degradation")
        assert core.model_pending and not reload.future.done()
        server = asyncio.create_task(core.scheduler.serve())
        await reload.future
        await asyncio.sleep(0)  # done callbacks run
        assert loads == ["fallback"] and core.model == "model (fallback)" and not core.model_pending
        server.cancel()

    asyncio.run(scenario())


def test_model_pending_clears_whatever_happens_to_the_load_job(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        core, loads = core_with_a_full_queue(tmp_path, monkeypatch)
        choices = [(core.config.model, core.config.health, False)]
        first = core.schedule_model_load(choices, "reloading")
        second = core.schedule_model_load(choices, "reloading again")
        first.future.cancel()  # whoever waited gave up
        await asyncio.sleep(0)
        assert core.model_pending  # the second one still waits
        core.scheduler.close("the node is stopping")  # refuses the second one
        assert await refusal(second) == "stopping"
        await asyncio.sleep(0)
        assert not core.model_pending and loads == []
        refused = core.schedule_model_load(choices, "reloading after the stop")
        assert await refusal(refused) == "stopping"
        await asyncio.sleep(0)
        assert not core.model_pending

    asyncio.run(scenario())


def test_jobs_run_their_blocking_work_on_one_inference_thread_of_their_own() -> None:
    def where() -> tuple[str, int, str]:
        thread = threading.current_thread()
        comm = Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip()
        return thread.name, threading.get_ident(), comm

    async def scenario() -> list[tuple[str, int, str]]:
        scheduler, seen = Scheduler(10), []

        async def run(ctx: JobContext) -> None:
            seen.append(await ctx.offload(where))

        jobs = [scheduler.submit(Job(f"ask-{i}", Priority.INTERACTIVE, run)) for i in range(3)]
        serving = asyncio.create_task(scheduler.serve())
        await asyncio.gather(*(j.future for j in jobs))
        serving.cancel()
        scheduler.thread.shutdown()
        return seen

    seen = asyncio.run(scenario())
    assert len({ident for _, ident, _ in seen}) == 1  # the same thread every time, not the loop's executor
    assert all(name.startswith("inference") and comm == "inference" for name, _, comm in seen), seen
