"""Builds the daemon's stages from the config, supervises them and shuts them down in order."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from functools import partial

from edge_agent import __version__
from edge_agent.config import Config
from edge_agent.health.admission import fallback_location
from edge_agent.health.degrade import DegradationLadder, DegradationState, Limits, Reading
from edge_agent.health.probes import Probes
from edge_agent.health.report import read_health
from edge_agent.health.systemd import ProgressWatchdog, SystemdNotifier
from edge_agent.messages import MotionResult, Utterance
from edge_agent.pipeline import Capture
from edge_agent.service import Supervisor
from edge_agent.sinks.announce import Announcer
from edge_agent.sinks.ask import AskHandler, AskService, no_model
from edge_agent.sinks.metrics import open_metrics
from edge_agent.sinks.mqtt import MqttLink, MqttSetupError, open_spool
from edge_agent.sources.camera import CameraStatus

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


class Node:
    """What the node tells the world: state, health and results, over its MQTT link."""

    def __init__(self, config: Config, link: MqttLink, capture: Capture) -> None:
        self.config, self.link, self.capture = config, link, capture
        self.started = time.time()
        self.probes = Probes()
        self.ladder = DegradationLadder(
            config.health,
            Limits.from_model_config(config.model),
            fallback_available=fallback_location(config.model) is not None,
        )
        self.degradation: DegradationState = self.ladder.state()
        self.metrics = open_metrics(config.health.prometheus_host, config.health.prometheus_port)
        capture.on_motion_change = self.motion_changed
        capture.on_utterance = self.heard
        capture.on_camera_status = self.camera_status

    def state(self) -> dict[str, object]:
        """The retained `state` JSON."""
        return {
            "status": "running",
            "version": __version__,
            "started": self.started,
            "model": {"path": str(self.config.model.path), "variant": self.config.model.variant, "loaded": False},
            "degradation": self.degradation.to_json(),
            "cameras": {name: camera.status.state for name, camera in self.capture.cameras.items()},
        }

    def publish_state(self) -> None:
        """Publish the retained `state`."""
        self.link.publish_state("state", json.dumps(self.state()))

    def camera_status(self, status: CameraStatus) -> None:
        """A camera changed state (ok / reconnecting / failed / ended)."""
        self.publish_state()

    def motion_changed(self, result: MotionResult) -> None:
        """Motion started or stopped on a camera."""
        self.link.publish_result(
            f"motion/{result.camera}", {"camera": result.camera, "motion": result.motion, "area": round(result.area, 4)}
        )

    def heard(self, utterance: Utterance) -> None:
        """The voice gate cut out an utterance."""
        self.link.publish_result(
            "utterance",
            {"start_s": round(utterance.start_s, 3), "end_s": round(utterance.end_s, 3), "reason": utterance.reason},
        )

    def degrade(self, reading: Reading) -> None:
        """Move along the degradation ladder; a change is logged and published in `state`."""
        self.degradation = self.ladder.update(reading, time.monotonic())
        if self.degradation.changed:
            log.warning(
                "degradation: level %d %s (%s)", self.degradation.level, self.degradation.name, self.degradation.reason
            )
            self.publish_state()

    async def report_health(self) -> None:
        """Publish the retained `health` JSON every health.interval_s, and walk the degradation ladder."""
        while True:
            report, reading = await asyncio.to_thread(read_health, self.probes)
            self.degrade(reading)
            report.update(spool_depth=self.link.spool.depth, spool_dropped=self.link.spool.dropped)
            report["degradation"] = {"level": int(self.degradation.level), "name": self.degradation.name}
            if self.metrics is not None:
                cameras = {name: camera.status.state for name, camera in self.capture.cameras.items()}
                self.metrics.update(report, int(self.degradation.level), cameras)
            self.link.publish_state("health", json.dumps(report))
            await asyncio.sleep(self.config.health.interval_s)


def serve_questions(link: MqttLink, config: Config, handler: AskHandler) -> AskService:
    """Subscribe `ask` (JSON), `ask/text` (Home Assistant text) and `analyze` (button) to the ask service."""
    mqtt = config.mqtt
    service = AskService(
        link,
        link.topic("answer"),
        handler,
        queue_size=mqtt.ask_queue,
        max_bytes=mqtt.ask_max_bytes,
        timeout_s=mqtt.ask_timeout_s,
    )
    link.subscribe(link.topic("ask"), service.on_ask)
    link.subscribe(link.topic("ask/text"), service.on_text)
    link.subscribe(link.topic("analyze"), service.on_button)
    return service


async def announce_ready(link: MqttLink, notifier: SystemdNotifier, watchdog: ProgressWatchdog) -> None:
    """Tell systemd READY=1 once the broker is connected (STATUS says what is awaited until then)."""
    notifier.status("waiting for the MQTT broker")
    await link.connected.wait()
    watchdog.set_status("running")
    notifier.ready("running")


async def run(config: Config, stop: asyncio.Event | None = None, ask_handler: AskHandler = no_model) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `stop` is set); returns the process exit code."""
    stop = stop or asyncio.Event()
    _install_signal_handlers(asyncio.get_running_loop(), stop)
    supervisor = Supervisor()
    log.info("edge-agent %s starting: %s", __version__, describe(config))
    try:
        link = MqttLink(config.mqtt, config.device.id, open_spool(config.mqtt))
    except MqttSetupError as exc:
        log.error("%s", exc)
        return 1
    capture = Capture(config)
    node = Node(config, link, capture)
    notifier = SystemdNotifier()
    watchdog = ProgressWatchdog(notifier, stall_limit_s=config.health.watchdog_stall_s)
    capture.on_progress = watchdog.progress
    questions = serve_questions(link, config, ask_handler)
    if config.microphone is not None and config.microphone.vad.mode == "triggered":
        link.subscribe(link.topic("listen"), lambda _message: capture.listen("MQTT trigger"))
    if config.mqtt.discovery:
        Announcer(config, link).attach()
    try:
        link.start()
        supervisor.start("ask", questions.serve)
        capture.start(supervisor)
        node.publish_state()
        supervisor.start("health", node.report_health)
        supervisor.start("ready", partial(announce_ready, link, notifier, watchdog))
        if watchdog.period_s is not None:  # only under systemd with WatchdogSec=
            supervisor.start("watchdog", watchdog.run_async)
        await stop.wait()
    finally:
        log.info("stopping")
        notifier.stopping("stopping")
        capture.stop_threads.set()  # capture threads end at their next read; then their services return
        await supervisor.stop()
        await link.stop()
        link.spool.close()
        if node.metrics is not None:
            node.metrics.close()
    notifier.close()
    log.info("stopped")
    return 0
