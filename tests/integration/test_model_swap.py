"""Memory pressure in a fake /proc swaps the primary model for the fallback (E4B -> E2B; two tiny fixtures stand
in), and recovery swaps it back, while the MQTT link stays up and questions keep being answered."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber
from test_mqtt_ask import Requester

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import asyncio, sys
from pathlib import Path
from edge_agent import app
from edge_agent.config import load_config
from edge_agent.health.probes import Probes
from edge_agent.log import setup_logging

setup_logging("info")
probes = Probes(Path(sys.argv[2]), vcgencmd=None)
sys.exit(asyncio.run(app.run(load_config(Path(sys.argv[1])), probes=probes)))
"""


def write_meminfo(root: Path, available_mb: int) -> None:
    (root / "proc").mkdir(parents=True, exist_ok=True)
    text = f"MemTotal: 4096000 kB\nMemFree: {available_mb * 1024} kB\nMemAvailable: {available_mb * 1024} kB\n"
    (root / "proc" / "meminfo.tmp").write_text(text)
    (root / "proc" / "meminfo.tmp").replace(root / "proc" / "meminfo")


def ask_model(requester: Requester, correlation: bytes) -> str:
    requester.ask("edge_agent/swap1/ask", json.dumps({"question": "Which model are you?"}).encode(), correlation)
    requester.wait(lambda: correlation in requester.replies, 60)
    reply = requester.replies[correlation][0]
    assert reply["status"] == "ok", reply
    return str(reply["model"])


def test_memory_pressure_swaps_to_the_fallback_and_back_without_dropping_mqtt(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    root = tmp_path / "fake-root"
    write_meminfo(root, 2000)
    config = write_config(
        f"""
        device: {{id: swap1}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, spool_path: {tmp_path / "spool.db"}}}
        model:
          path: {REPO / "models" / "tiny-gemma4"}
          fallback_path: {REPO / "models" / "tiny-gemma4-b"}
          max_new_tokens: 8
        health: {{interval_s: 0.3, memory_low_mb: 300, memory_hysteresis_mb: 200, cooldown_s: 1, step_interval_s: 1}}
        """
    )
    availability = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/swap1/availability"])
    requester = Requester(mosquitto)
    daemon = Daemon(config, argv=[sys.executable, "-c", SCRIPT, str(config), str(root)])
    try:
        daemon.wait_for_lines("model loaded: tiny-gemma4 (q4)")
        daemon.wait_for_lines("mqtt: connected")
        assert ask_model(requester, b"before") == "tiny-gemma4 (q4)"
        write_meminfo(root, 100)  # below memory_low_mb: straight to level 4, the fallback model
        daemon.wait_for_lines("loading the fallback model")
        daemon.wait_for_lines("model loaded: tiny-gemma4-b (q4)")
        assert ask_model(requester, b"pressed") == "tiny-gemma4-b (q4)"
        write_meminfo(root, 2000)  # recovery walks back up after the cool-down and reloads the primary
        daemon.wait_for_lines("loading the primary model", timeout_s=60)
        daemon.wait_for_lines("model loaded: tiny-gemma4 (q4)", count=2)
        assert ask_model(requester, b"after") == "tiny-gemma4 (q4)"
        assert availability.on("edge_agent/swap1/availability") == [b"online"], "the link never went offline"
        assert len([line for _, line in daemon.lines if "mqtt: connected" in line]) == 1
    finally:
        assert daemon.stop() == 0
        requester.close()
        availability.close()
