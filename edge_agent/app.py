"""Builds the daemon's stages from the config, supervises them and shuts them down in order."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import time
from functools import partial
from pathlib import Path

from edge_agent import __version__
from edge_agent.agent.core import Agent
from edge_agent.agent.tool_host import LinkToolHost, serve_tools
from edge_agent.config import Config
from edge_agent.health.admission import fallback_location
from edge_agent.health.degrade import DegradationLadder, DegradationState, Limits, Reading
from edge_agent.health.probes import Probes
from edge_agent.health.report import read_health
from edge_agent.health.systemd import ProgressWatchdog, SystemdNotifier
from edge_agent.messages import MotionResult, Utterance
from edge_agent.pipeline import Capture
from edge_agent.reload import Reloader
from edge_agent.service import Supervisor
from edge_agent.sinks.announce import Announcer
from edge_agent.sinks.ask import AskHandler, AskService
from edge_agent.sinks.metrics import open_metrics
from edge_agent.sinks.mqtt import MqttLink, MqttSetupError, open_spool
from edge_agent.sources.camera import CameraStatus
from edge_agent.tools import Toolbox

log = logging.getLogger(__name__)


def describe(config: Config) -> str:
    """One line saying what this node is configured to do."""
    mic = "microphone" if config.microphone else "no microphone"
    return (
        f"device {config.device.id!r}: model {config.model.path} ({config.model.variant}), "
        f"{len(config.cameras)} camera(s), {mic}, {len(config.tasks)} task(s), {len(config.tools)} tool(s), "
        f"broker {config.mqtt.host}:{config.mqtt.port}"
    )


def _install_signal_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event, reload: asyncio.Event) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)


def make_toolbox(config: Config, link: MqttLink, capture: Capture) -> Toolbox:
    """The declared tools, acting through the link and the cameras."""
    host = LinkToolHost(link, capture.latest_frame, config.agent.snapshot_quality)
    return Toolbox(config.tools, host, confirm_ttl_s=config.agent.confirm_timeout_s)


class Node:
    """What the node tells the world: state, health and results, over its MQTT link."""

    def __init__(self, config: Config, link: MqttLink, capture: Capture, probes: Probes | None = None) -> None:
        self.config, self.link, self.capture = config, link, capture
        self.started = time.time()
        self.model_settled = asyncio.Event()
        self.probes = probes or Probes()
        self._swap_tried: bool | None = None
        self.ladder = DegradationLadder(
            config.health,
            Limits.from_model_config(config.model),
            fallback_available=fallback_location(config.model) is not None,
        )
        self.degradation: DegradationState = self.ladder.state()
        self.metrics = open_metrics(config.health.prometheus_host, config.health.prometheus_port)
        self.agent = Agent(
            config, make_toolbox(config, link, capture), link, capture.latest_frame, lambda: self.degradation
        )
        self.agent.on_model_change = self.publish_state
        capture.on_motion = self.agent.on_motion
        capture.on_motion_change = self.motion_changed
        capture.on_utterance = self.heard
        capture.on_camera_status = self.camera_status

    def state(self) -> dict[str, object]:
        """The retained `state` JSON."""
        return {
            "status": "running",
            "version": __version__,
            "started": self.started,
            "model": self.model_state(),
            "queue": {"depth": self.agent.scheduler.depth, "busy": self.agent.scheduler.current is not None},
            "degradation": self.degradation.to_json(),
            "cameras": {name: camera.status.state for name, camera in self.capture.cameras.items()},
        }

    def model_state(self) -> dict[str, object]:
        """What `state` says about the model: which one is loaded, or why none is."""
        model = self.agent.model
        if model is None:
            return {"path": str(self.config.model.path), "loaded": False, "error": self.agent.model_error}
        return {
            "path": str(model.files.root),
            "variant": model.files.variant,
            "label": model.label,
            "loaded": True,
            "load_s": round(model.load_s, 2),
            "admission": model.admission.decision,
        }

    async def load_model(self, notifier: SystemdNotifier) -> None:
        """Load the configured model as the queue's first job (questions wait behind it); a failure is reported
        (`state`, and `error: no model loaded: <why>` to questions) and the node stays up."""
        notifier.status("loading the model")
        job = self.agent.schedule_model_load([(self.config.model, self.config.health, False)], "loading")
        await asyncio.wait({job.future})
        self.model_settled.set()

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
        """The voice gate cut out an utterance: announce it and hand it to the voice task."""
        self.link.publish_result(
            "utterance",
            {"start_s": round(utterance.start_s, 3), "end_s": round(utterance.end_s, 3), "reason": utterance.reason},
        )
        self.agent.on_utterance(utterance)

    def degrade(self, reading: Reading) -> None:
        """Move along the degradation ladder; a change is logged and published in `state`."""
        self.degradation = self.ladder.update(reading, time.monotonic())
        if self.degradation.changed:
            log.warning(
                "degradation: level %d %s (%s)", self.degradation.level, self.degradation.name, self.degradation.reason
            )
            self.publish_state()
        self.follow_ladder_with_model()

    def follow_ladder_with_model(self) -> None:
        """From level 4 on run the fallback model (E4B -> E2B), below it the primary; the MQTT link stays up."""
        model, agent = self.agent.model, self.agent
        if model is None or agent.model_pending or model.admitted_fallback:
            return
        want = self.degradation.limits.use_fallback_model
        if want == model.fallback:
            self._swap_tried = None
            return
        if self._swap_tried == want:  # tried and it did not load: do not reload on every health tick
            return
        self._swap_tried = want
        which = "the fallback model" if want else "the primary model"
        choices = [(self.config.model, self.config.health, want), (self.config.model, self.config.health, not want)]
        agent.schedule_model_load(choices, f"degradation level {int(self.degradation.level)}: loading {which}")

    async def report_health(self) -> None:
        """Publish the retained `health` JSON every health.interval_s, and walk the degradation ladder."""
        while True:
            report, reading = await asyncio.to_thread(read_health, self.probes)
            self.degrade(reading)
            report.update(spool_depth=self.link.spool.depth, spool_dropped=self.link.spool.dropped)
            report["degradation"] = {"level": int(self.degradation.level), "name": self.degradation.name}
            report["agent"] = self.agent.stats()
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


def subscribe_inputs(node: Node, config_path: Path | None) -> Reloader:
    """Tools' topics, the listen trigger and Home Assistant discovery; the reloader that redoes what changes."""
    link, config, capture = node.link, node.config, node.capture
    subscribe_tools = partial(serve_tools, link, lambda: node.agent.toolbox)
    subscribe_tools()
    if config.microphone is not None and config.microphone.vad.mode == "triggered":
        link.subscribe(link.topic("listen"), lambda _message: capture.listen("MQTT trigger"))
    announcer = Announcer(config, link) if config.mqtt.discovery else None
    if announcer is not None:
        announcer.attach()
    toolbox = partial(make_toolbox, link=link, capture=capture)
    return Reloader(config, config_path, node, announcer, toolbox=toolbox, subscribe_tools=subscribe_tools)


async def announce_ready(node: Node, notifier: SystemdNotifier, watchdog: ProgressWatchdog) -> None:
    """Tell systemd READY=1 once the broker is connected and the model load has settled (loaded or refused)."""
    notifier.status("waiting for the MQTT broker")
    await node.link.connected.wait()
    await node.model_settled.wait()
    status = "running" if node.agent.model is not None else f"running without a model: {node.agent.model_error}"
    watchdog.set_status(status)
    notifier.ready(status)


async def drain(node: Node, timeout_s: float = 2.0) -> None:
    """On SIGTERM: refuse waiting jobs, cancel the running generation and give it a moment to publish."""
    scheduler = node.agent.scheduler
    dropped = scheduler.drain("the node is stopping")
    current = scheduler.current
    scheduler.cancel_current()
    if current is not None:
        log.info("stopping: cancelling %s (%d waiting request(s) refused)", current.name, dropped)
        await asyncio.wait({current.future}, timeout=timeout_s)


async def run(
    config: Config,
    stop: asyncio.Event | None = None,
    ask_handler: AskHandler | None = None,
    config_path: Path | None = None,
    probes: Probes | None = None,
) -> int:
    """Run the daemon until SIGTERM/SIGINT (or `stop` is set); SIGHUP reloads `config_path`; returns the exit code."""
    stop, reload = stop or asyncio.Event(), asyncio.Event()
    _install_signal_handlers(asyncio.get_running_loop(), stop, reload)
    supervisor = Supervisor()
    log.info("edge-agent %s starting: %s", __version__, describe(config))
    try:
        link = MqttLink(config.mqtt, config.device.id, open_spool(config.mqtt))
    except MqttSetupError as exc:
        log.error("%s", exc)
        return 1
    capture = Capture(config)
    node = Node(config, link, capture, probes)
    notifier = SystemdNotifier()
    watchdog = ProgressWatchdog(notifier, stall_limit_s=config.health.watchdog_stall_s)
    capture.on_progress = watchdog.progress
    node.agent.scheduler.busy = lambda _job: watchdog.busy("inference")
    questions = serve_questions(link, config, ask_handler or node.agent.ask)
    reloader = subscribe_inputs(node, config_path)
    try:
        link.start()
        supervisor.start("ask", questions.serve)
        supervisor.start("model", partial(node.load_model, notifier))
        supervisor.start("scheduler", node.agent.scheduler.serve)
        supervisor.start("watch-timers", node.agent.run_timers)
        capture.start(supervisor)
        node.publish_state()
        supervisor.start("health", node.report_health)
        supervisor.start("ready", partial(announce_ready, node, notifier, watchdog))
        supervisor.start("reload", partial(reloader.serve, reload))
        if watchdog.period_s is not None:  # only under systemd with WatchdogSec=
            supervisor.start("watchdog", watchdog.run_async)
        await stop.wait()
    finally:
        log.info("stopping")
        notifier.stopping("stopping")
        await drain(node)
        capture.stop_threads.set()  # capture threads end at their next read; then their services return
        await supervisor.stop(timeout_s=1.0)
        await link.stop()
        link.spool.close()
        if node.metrics is not None:
            node.metrics.close()
    notifier.close()
    log.info("stopped")
    return 0
