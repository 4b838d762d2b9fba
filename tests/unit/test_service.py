"""Supervised services restart with backoff and stop in reverse order."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from edge_agent.service import Backoff, Supervisor, run_in_thread


def test_backoff_doubles_up_to_the_cap_and_resets_after_a_healthy_run() -> None:
    backoff = Backoff(initial_s=1, maximum_s=5, healthy_after_s=30)
    assert [backoff.delay(0.1) for _ in range(5)] == [1, 2, 4, 5, 5]
    assert backoff.delay(31) == 1


def test_failing_service_is_restarted(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def flaky() -> None:
        runs.append(len(runs))
        if len(runs) < 3:
            raise RuntimeError("camera unplugged")
        await asyncio.sleep(3600)

    async def scenario() -> Supervisor:
        supervisor = Supervisor(backoff=lambda: Backoff(initial_s=0.01, maximum_s=0.02))
        supervisor.start("camera", flaky)
        for _ in range(200):
            await asyncio.sleep(0.01)
            if len(runs) == 3:
                break
        await supervisor.stop()
        return supervisor

    supervisor = asyncio.run(scenario())
    assert runs == [0, 1, 2]
    assert supervisor.restarts["camera"] == 2
    assert "service camera failed" in caplog.text and "camera unplugged" in caplog.text


def test_stop_cancels_in_reverse_start_order() -> None:
    stopped: list[str] = []

    def service(name: str):  # type: ignore[no-untyped-def]
        async def run() -> None:
            try:
                await asyncio.sleep(3600)
            finally:
                stopped.append(name)

        return run

    async def scenario() -> None:
        supervisor = Supervisor()
        for name in ("mqtt", "model", "camera"):
            supervisor.start(name, service(name))
        await asyncio.sleep(0)
        await supervisor.stop()

    asyncio.run(scenario())
    assert stopped == ["camera", "model", "mqtt"]


def test_starting_a_name_twice_is_refused() -> None:
    async def scenario() -> None:
        supervisor = Supervisor()
        supervisor.start("a", lambda: asyncio.sleep(1))
        with pytest.raises(ValueError, match="already running"):
            supervisor.start("a", lambda: asyncio.sleep(1))
        await supervisor.stop()

    asyncio.run(scenario())


def test_run_in_thread_runs_on_a_named_thread_and_raises_its_error_in_the_task() -> None:
    seen: list[str] = []

    def work() -> None:
        thread = threading.current_thread()
        seen.append(thread.name)
        seen.append(Path(f"/proc/self/task/{threading.get_native_id()}/comm").read_text().strip())
        raise RuntimeError("device gone")

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="device gone"):
            await run_in_thread("capture-garage", work)

    asyncio.run(scenario())
    assert seen == ["capture-garage", "capture-garage"]  # Python's name and the kernel's (`top -H`, /proc)


def test_run_in_thread_holds_no_executor_thread_and_a_cancel_interrupts_it() -> None:
    release, hung = threading.Event(), threading.Event()  # hung: a read that an interrupt cannot end
    interrupted: list[bool] = []

    async def scenario() -> float:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(max_workers=1))
        waits = [asyncio.create_task(run_in_thread(f"capture-{i}", release.wait)) for i in range(4)]
        await asyncio.sleep(0.1)
        answer = await asyncio.wait_for(asyncio.to_thread(lambda: 42), 5)  # the executor is free
        assert answer == 42
        stuck = asyncio.create_task(run_in_thread("capture-hung", hung.wait, lambda: interrupted.append(True), 0.1))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        took = time.monotonic() - started
        release.set()
        hung.set()
        await asyncio.gather(*waits)
        return took

    took = asyncio.run(scenario())
    assert interrupted == [True] and took < 1.0  # interrupted, then left behind after its grace
