"""Memory pressure never makes the model swaps oscillate: 30 simulated minutes of a node whose memory reacts to the
model it has loaded. Everything is real but the clock and the machine: the real Node (ladder, probes, scheduler,
MQTT link to a real mosquitto) loads the two tiny models for real, and its probes read a scratch /proc and cgroup v2
tree in which this service's `memory.max` (systemd's MemoryMax=) is the binding limit and `memory.current` grows by
what the loaded model holds. The admission estimates of the two tiny models are nearly equal (and the fallback's is
the larger), so what keeps the primary away is the swap the node measured, not the estimate."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber

from edge_agent.app.capture import Capture
from edge_agent.app.node import Node
from edge_agent.config import Config, load_config
from edge_agent.health.admission import swap_back_mb
from edge_agent.health.probes import Probes
from edge_agent.health.systemd import SystemdNotifier
from edge_agent.model.store.verified import VerifiedCache
from edge_agent.sinks.mqtt import MqttLink, open_spool

REPO = Path(__file__).resolve().parents[2]
MIB = 2**20
LIMIT_MB = 4096  # the unit's MemoryMax=4G
FOOTPRINT_MB = {False: 1500, True: 500}  # what the primary and the fallback really hold once loaded
TICK_S = 10.0  # health.interval_s
UNIT = "/system.slice/edge-agent.service"


@dataclass
class Machine:
    """A scratch root: /proc/meminfo with plenty free, and a cgroup whose usage is other use + the loaded model."""

    root: Path
    node: Node | None = None
    others_mb: float = 1000.0
    written: list[float] = field(default_factory=list)

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def update(self) -> None:
        model = self.node.agent.model if self.node else None
        used = self.others_mb + (FOOTPRINT_MB[model.fallback] if model is not None else 0)
        self.write("proc/meminfo", "MemTotal: 16000000 kB\nMemAvailable: 12000000 kB\nSwapTotal: 0 kB\n")
        self.write("proc/self/cgroup", f"0::{UNIT}\n")
        rss_mb = 200 + (FOOTPRINT_MB[model.fallback] if model is not None else 0)  # the model is in our own RSS
        self.write("proc/self/status", f"Name:\tedge-agent\nVmRSS:\t{rss_mb * 1024} kB\n")
        cgroup = "sys/fs/cgroup" + UNIT
        self.write(f"{cgroup}/memory.max", f"{LIMIT_MB * MIB}\n")
        self.write(f"{cgroup}/memory.current", f"{round(used * MIB)}\n")
        self.write(f"{cgroup}/memory.stat", "anon 1\ninactive_file 0\n")
        self.write("sys/fs/cgroup/system.slice/memory.max", "max\n")
        self.written.append(LIMIT_MB - used)


def others_at(minute: float) -> float:
    """Other use in the cgroup: calm, then 23 minutes of fluctuating pressure, then calm again."""
    if minute < 2 or minute >= 25:
        return 1000.0
    return 2300.0 + 200.0 * ((minute * 6) % 4 < 2)  # 2300 / 2500 MB, alternating every 20 s


@pytest.fixture
def config(tmp_path: Path, mosquitto: Mosquitto) -> Config:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(
            f"""
            device: {{id: pressure1}}
            mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, spool_path: {tmp_path / "spool.db"}, discovery: false}}
            model:
              path: {REPO / "models" / "tiny-gemma4"}
              fallback_path: {REPO / "models" / "tiny-gemma4-b"}
              max_new_tokens: 8
            health: {{interval_s: {TICK_S}, memory_low_mb: 300, memory_hysteresis_mb: 200, step_interval_s: 30,
                      cooldown_s: 120}}
            """
        )
    )
    return load_config(path)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    machine = Machine(tmp_path / "machine")
    machine.update()
    yield machine


async def simulate(config: Config, machine: Machine, minutes: float) -> tuple[Node, list[str], list[int]]:
    """Run the node's health ticks on a simulated clock; the models it loaded, in order, and the levels."""
    now = [0.0]
    link = MqttLink(config.mqtt, config.device.id, open_spool(config.mqtt))
    node = Node(config, link, Capture(config), Probes(machine.root, vcgencmd=None), clock=lambda: now[0])
    machine.node = node
    probes_memory = node.agent.memory
    assert probes_memory is not None  # admission reads the same memory view as the ladder

    def memory_now() -> object:  # the machine's memory follows the model in place, also during a swap
        machine.update()
        return probes_memory()

    node.agent.memory = memory_now  # type: ignore[assignment]
    link.start()
    scheduler = asyncio.create_task(node.agent.scheduler.serve())
    loaded, levels = [], []
    try:
        await node.load_model(SystemdNotifier())
        assert node.agent.model is not None, node.agent.model_error
        loaded.append(node.agent.model.label)
        while now[0] < minutes * 60:
            machine.others_mb = others_at(now[0] / 60)
            machine.update()
            await node.health_tick()
            levels.append(int(node.degradation.level))
            while node.agent.model_pending:  # a swap takes no simulated time
                await asyncio.sleep(0.01)
            model = node.agent.model
            assert model is not None, node.agent.model_error
            if model.label != loaded[-1]:
                loaded.append(model.label)
            now[0] += TICK_S
    finally:
        scheduler.cancel()
        await link.stop()
        link.spool.close()
    return node, loaded, levels


def test_thirty_minutes_of_pressure_swap_down_once_and_back_once(config: Config, machine: Machine) -> None:
    verified = VerifiedCache.for_model(config.model.path)  # the daemon's own record of files it has hashed
    skipped = verified.hashes_skipped
    node, loaded, levels = asyncio.run(simulate(config, machine, 30))
    assert verified.hashes_skipped > skipped, "swapping the primary back in did not hash its files again"
    # one swap down when the pressure starts, one swap back when it ends: no E4B -> E2B -> E4B in between
    assert loaded == ["tiny-gemma4 (q4)", "tiny-gemma4-b (q4)", "tiny-gemma4 (q4)"], loaded
    assert node.ladder.swap_back_mb == 0.0  # the estimates say the fallback is no smaller ...
    assert 800 <= node.ladder.measured_swap_back_mb <= 1200  # ... the swap measured what the primary holds
    pressure = levels[2 * 6 + 1 : 25 * 6]
    assert min(pressure) >= 4, "the fallback stayed for the whole of the pressure"
    assert levels[-1] < 4 and min(machine.written[-6:]) >= 500, "after it, the primary came back and has room"


def test_the_ladder_learns_the_admission_estimate_of_each_loaded_model(config: Config, machine: Machine) -> None:
    reversed_roles = config.model.model_copy(
        update={"path": config.model.fallback_path, "fallback_path": config.model.path}
    )
    node, loaded, _ = asyncio.run(simulate(config.model_copy(update={"model": reversed_roles}), machine, 0))
    model = node.agent.model
    assert loaded == ["tiny-gemma4-b (q4)"] and model is not None
    assert node.ladder.swap_back_mb == swap_back_mb(model.admission) > 0  # the larger primary, less the fallback


RUN_WITH_PROBES = """
import asyncio, sys
from pathlib import Path
from edge_agent import app
from edge_agent.config import load_config
from edge_agent.health.probes import Probes
from edge_agent.log import setup_logging

setup_logging("info")
path, probes = Path(sys.argv[1]), Probes(Path(sys.argv[2]), vcgencmd=None)
sys.exit(asyncio.run(app.run(load_config(path), config_path=path, probes=probes)))
"""


def daemon_config(port: int, tmp_path: Path, model: str, memory_low_mb: int) -> str:
    return textwrap.dedent(
        f"""
        device: {{id: hup1}}
        mqtt: {{host: 127.0.0.1, port: {port}, spool_path: {tmp_path / "spool.db"}, discovery: false}}
        model: {{path: {REPO / "models" / "tiny-gemma4"}, max_new_tokens: 8{model}}}
        health: {{interval_s: 0.3, memory_low_mb: {memory_low_mb}, memory_hysteresis_mb: 200, cooldown_s: 1,
                  step_interval_s: 1}}
        """
    )


def test_sighup_gives_the_ladder_new_limits_and_a_new_fallback(
    mosquitto: Mosquitto, machine: Machine, tmp_path: Path
) -> None:
    machine.others_mb = LIMIT_MB - 400  # 400 MB left: above memory_low_mb 300 (inside the hysteresis band)
    machine.update()
    path = tmp_path / "node.yaml"
    path.write_text(daemon_config(mosquitto.port, tmp_path, "", 300))
    states = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/hup1/state"])
    daemon = Daemon(path, argv=[sys.executable, "-c", RUN_WITH_PROBES, str(path), str(machine.root)])

    def degradation() -> dict[str, object]:
        return dict(json.loads(states.on("edge_agent/hup1/state")[-1])["degradation"])

    try:
        daemon.wait_for_lines("model loaded: tiny-gemma4 (q4)")
        daemon.wait_for_lines("mqtt: connected")
        states.wait_for(lambda got: len(got) >= 2)
        assert degradation()["level"] == 0
        fallback = f", fallback_path: {REPO / 'models' / 'tiny-gemma4-b'}"
        path.write_text(daemon_config(mosquitto.port, tmp_path, fallback, 500))  # now 400 MB is too little
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_lines("reload: degradation ladder at level 0 normal under the new limits")
        daemon.wait_for_lines("degradation: level 4 fallback_model (memory available 400 MB < 500 MB)")
        daemon.wait_for_lines("model loaded: tiny-gemma4-b (q4)")
        states.wait_for(lambda _: degradation()["use_fallback_model"] is True, timeout_s=30)
        assert not [line for _, line in daemon.lines if "reload refused" in line]
    finally:
        assert daemon.stop() == 0
        states.close()
