"""sd_notify and the progress watchdog against a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from edge_agent.health.liveness import DrainCheck
from edge_agent.health.systemd import ProgressWatchdog, SystemdNotifier, notify_address, watchdog_interval_s


class FakeSystemd:
    """A bound datagram socket that collects what the service sends."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.05)

    def receive(self, seconds: float) -> list[str]:
        """Every datagram that arrives within `seconds`."""
        deadline = time.monotonic() + seconds
        messages = []
        while time.monotonic() < deadline:
            try:
                messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
        return messages

    def wait_for(self, wanted: Callable[[str], bool], timeout_s: float = 5.0) -> list[str]:
        """Datagrams up to and including the first one `wanted` accepts; fails after `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        seen: list[str] = []
        while time.monotonic() < deadline:
            try:
                seen.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            if wanted(seen[-1]):
                return seen
        raise AssertionError(f"no wanted datagram within {timeout_s} s; got {seen}")


def pings(messages: list[str]) -> int:
    return sum("WATCHDOG=1" in m.split("\n") for m in messages)


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    path = tmp_path / "notify"
    fake = FakeSystemd(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    yield fake
    fake.sock.close()


@pytest.fixture
def pinger(systemd: FakeSystemd) -> Iterator[ProgressWatchdog]:
    """A running watchdog thread with a 0.3 s stall limit."""
    watchdog = ProgressWatchdog(SystemdNotifier(), stall_limit_s=0.3)
    stop = threading.Event()
    thread = threading.Thread(target=watchdog.run, args=(stop,), daemon=True)
    thread.start()
    yield watchdog
    stop.set()
    thread.join(timeout=5)
    assert not thread.is_alive()


def test_ready_status_stopping_arrive_as_sent(systemd: FakeSystemd) -> None:
    notifier = SystemdNotifier()
    assert notifier.enabled
    assert notifier.ready("model loaded\nmqtt connected")
    assert notifier.stopping()
    assert notifier.extend_timeout(90)
    got = systemd.receive(0.3)
    assert got == ["READY=1\nSTATUS=model loaded mqtt connected", "STOPPING=1", "EXTEND_TIMEOUT_USEC=90000000"]


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"edge-agent-test-{uuid.uuid4().hex}"
    fake = FakeSystemd("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert SystemdNotifier().ready()
        assert fake.receive(0.2) == ["READY=1"]
    finally:
        fake.sock.close()


def test_without_notify_socket_everything_is_a_quiet_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert not notifier.ready() and not notifier.status("x") and not notifier.watchdog() and not notifier.stopping()
    watchdog = ProgressWatchdog(notifier, interval_s=0.1)
    with watchdog.busy("inference"):
        watchdog.progress("capture")
    assert not watchdog.tick()
    stop = threading.Event()
    watchdog.run(stop)  # returns at once instead of blocking
    asyncio.run(asyncio.wait_for(watchdog.run_async(), timeout=1))


def test_a_socket_that_vanished_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    notifier = SystemdNotifier()
    assert notifier.enabled and not notifier.ready() and not notifier.watchdog()


def test_addresses_and_watchdog_interval_from_the_environment() -> None:
    assert notify_address({"NOTIFY_SOCKET": "@x/y"}) == "\0x/y"
    assert notify_address({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "/run/systemd/notify"
    assert notify_address({"NOTIFY_SOCKET": "vsock:2:1"}) is None and notify_address({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}, pid=5) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "5"}, pid=5) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "6"}, pid=5) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}) is None and watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "soon"}) is None


def test_watchdog_meant_for_another_pid_sends_no_pings(systemd: FakeSystemd, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    watchdog = ProgressWatchdog(SystemdNotifier())
    assert watchdog.interval_s is None and not watchdog.tick()
    assert pings(systemd.receive(0.2)) == 0


def test_idle_keeps_pinging(systemd: FakeSystemd, pinger: ProgressWatchdog) -> None:
    got = systemd.receive(1.0)  # nothing ever happens: no motion, no questions
    assert pings(got) >= 4  # every 0.1 s; at least a few despite the busy cores
    assert "STATUS=running; idle" in got


def test_pings_stop_while_inference_hangs_and_resume_when_it_finishes(
    systemd: FakeSystemd, pinger: ProgressWatchdog
) -> None:
    systemd.wait_for(lambda m: m == "WATCHDOG=1")
    release = threading.Event()

    def stuck_inference() -> None:
        with pinger.busy("inference"):
            release.wait()

    worker = threading.Thread(target=stuck_inference, daemon=True)
    worker.start()
    try:
        systemd.wait_for(lambda m: "STALLED: inference" in m)
        assert pings(systemd.receive(1.0)) == 0
        for _ in range(3):
            pinger.progress("capture")  # other stages still working does not hide the stuck one
        assert pings(systemd.receive(0.5)) == 0
    finally:
        release.set()
        worker.join(timeout=5)
    resumed = systemd.wait_for(lambda m: m == "WATCHDOG=1")
    assert any(m.startswith("STATUS=running; idle") for m in resumed)
    assert pinger.completed("inference") == 1 and pinger.completed("capture") == 3


def test_busy_within_the_limit_keeps_pinging(systemd: FakeSystemd, pinger: ProgressWatchdog) -> None:
    pinger.set_status("connected, model loaded")
    for _ in range(5):
        with pinger.busy("inference"):
            time.sleep(0.1)  # well under the 0.3 s limit
    got = systemd.receive(0.5)
    assert pings(got) >= 2
    assert not any("STALLED" in m for m in got)
    assert pinger.completed("inference") == 5


def test_per_stage_limits_and_status_text() -> None:
    now = [100.0]
    watchdog = ProgressWatchdog(
        SystemdNotifier({}), interval_s=10, stall_limit_s=5, stage_limits_s={"inference": 60}, clock=lambda: now[0]
    )
    with watchdog.busy("inference"), watchdog.busy("capture"):
        assert watchdog.status_text() == "running; busy: capture, inference"
        now[0] += 30  # capture's 5 s limit is past, inference's 60 s is not
        assert watchdog.stalled() == [("capture", 30.0)]
        assert watchdog.status_text() == "running; STALLED: capture busy for longer than the limit (capture 5 s)"
    assert watchdog.stalled() == [] and watchdog.status_text() == "running; idle"


def test_run_async_pings_from_the_event_loop(systemd: FakeSystemd) -> None:
    watchdog = ProgressWatchdog(SystemdNotifier())

    async def main() -> None:
        task = asyncio.create_task(watchdog.run_async())
        await asyncio.sleep(0.6)
        task.cancel()

    asyncio.run(main())
    assert pings(systemd.receive(0.3)) >= 2


def test_a_watched_check_that_says_stuck_stops_the_pings_until_it_recovers(
    systemd: FakeSystemd, pinger: ProgressWatchdog
) -> None:
    systemd.wait_for(lambda m: m == "WATCHDOG=1")
    why: list[str] = ["3 result(s) waiting and none delivered for 301 s while connected"]
    pinger.watch("publish", lambda: why[0] or None)
    stuck = systemd.wait_for(lambda m: "STALLED" in m)
    assert (
        stuck[-1]
        == "STATUS=running; STALLED: publish: 3 result(s) waiting and none delivered for 301 s while connected"
    )
    assert pings(systemd.receive(0.5)) == 0
    why[0] = ""  # delivered again
    resumed = systemd.wait_for(lambda m: m == "WATCHDOG=1")
    assert any(m == "STATUS=running; idle" for m in resumed)


def test_quiet_busy_stages_stall_like_the_others_but_are_not_listed_as_busy() -> None:
    now = [0.0]
    watchdog = ProgressWatchdog(SystemdNotifier({}), interval_s=10, stall_limit_s=5, clock=lambda: now[0])
    with watchdog.busy("camera garage", quiet=True):
        assert watchdog.status_text() == "running; idle"  # a frame read, many a second: not news
        now[0] += 6
        assert watchdog.stalled() == [("camera garage", 6.0)]
        assert "STALLED: camera garage busy for longer than the limit (camera garage 5 s)" in watchdog.status_text()
    assert watchdog.completed("camera garage") == 1


def test_publishing_is_stuck_only_when_connected_with_results_waiting_and_none_delivered() -> None:
    now, connected, depth = [0.0], [True], [0]
    check = DrainCheck(lambda: connected[0], lambda: depth[0], limit_s=10, clock=lambda: now[0])
    assert check() is None
    now[0], depth[0] = 100.0, 0  # idle for long: not stuck
    assert check() is None
    depth[0] = 3
    now[0] = 105.0
    assert check() is None  # waiting, within the limit
    now[0] = 111.0
    assert check() == "3 result(s) waiting and none delivered for 11 s while connected"
    depth[0] = 2  # one delivered: progress
    assert check() is None
    connected[0], now[0], depth[0] = False, 200.0, 50  # a broker outage: results are spooled, paho reconnects
    assert check() is None
    connected[0], now[0] = True, 205.0
    assert check() is None  # reconnected: the limit counts from the outage seen last
    now[0] = 211.0
    assert check() == "50 result(s) waiting and none delivered for 11 s while connected"
