"""Builds the daemon's stages from the config, supervises them and shuts them down in order."""

from __future__ import annotations

import asyncio
import logging
import signal

from edge_agent import __version__
from edge_agent.config import Config
from edge_agent.pipeline import Capture
from edge_agent.service import Supervisor

log = logging.getLogger(__name__)


def describe(config: Config) -> str:
    """One line saying what this node is configured to do."""
    mic = "microphone" if config.microphone else "no microphone"
    return (
        f"device {config.device.id!r}: model {config.model.path} ({config.model.variant}), "
        f"{len(config.cameras)} camera(s), {mic}, {len(config.tasks)} task(s), {len(config.tools)} tool(s), "
        f"broker {config.mqtt.host}:{config.mqtt.port}"
    )


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def run(config: Config, stop: asyncio.Event | None = None) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `stop` is set); returns the process exit code."""
    stop = stop or asyncio.Event()
    _install_signal_handlers(asyncio.get_running_loop(), stop)
    supervisor = Supervisor()
    log.info("edge-agent %s starting: %s", __version__, describe(config))
    capture = Capture(config)
    try:
        capture.start(supervisor)
        await stop.wait()
    finally:
        log.info("stopping")
        capture.stop_threads.set()  # capture threads end at their next read; then their services return
        await supervisor.stop()
    log.info("stopped")
    return 0
