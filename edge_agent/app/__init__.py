"""The one wiring place: builds the daemon's stages from the config (`node`, `capture`), supervises them, reloads
them on SIGHUP (`reload`) and shuts them down in order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from functools import partial
from pathlib import Path

from edge_agent import __version__
from edge_agent.agent.tool_host import ToolSubscriptions
from edge_agent.app.capture import Capture
from edge_agent.app.last_event import LastEvents
from edge_agent.app.node import Node, make_toolbox
from edge_agent.app.reload import Reloader
from edge_agent.app.timeline import TimelineQueries, open_timeline, recording_asks
from edge_agent.config import Config
from edge_agent.health.liveness import DrainCheck
from edge_agent.health.probes import Probes
from edge_agent.health.systemd import ProgressWatchdog, SystemdNotifier
from edge_agent.service import Supervisor
from edge_agent.sinks.announce import Announcer
from edge_agent.sinks.ask import AskHandler, AskService, ReplyTopics
from edge_agent.sinks.mqtt import MqttLink, MqttSetupError, open_spool

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


def reply_topics(node: Node) -> ReplyTopics:
    """Where replies may go: under mqtt.reply_topic_prefixes, never into the node's or HA's topics or a tool's."""
    mqtt, link = node.config.mqtt, node.link
    reserved = ((f"{mqtt.base_topic}/", "edge-agent topics"), (f"{mqtt.discovery_prefix}/", "Home Assistant discovery"))

    def protected() -> list[str]:  # asked at each request: a reload changes the tools
        return [*node.agent.toolbox.topic_filters(), *link.subscriptions()]

    return ReplyTopics(tuple(mqtt.reply_topic_prefixes), reserved, protected)


def serve_questions(link: MqttLink, config: Config, handler: AskHandler, replies: ReplyTopics) -> AskService:
    """Subscribe `ask` (JSON), `ask/text` (Home Assistant text) and `analyze` (button) to the ask service."""
    mqtt = config.mqtt
    service = AskService(
        link,
        link.topic("answer"),
        handler,
        queue_size=mqtt.ask_queue,
        max_bytes=mqtt.ask_max_bytes,
        timeout_s=mqtt.ask_timeout_s,
        reply_topics=replies,
    )
    link.subscribe(link.topic("ask"), service.on_ask)
    link.subscribe(link.topic("ask/text"), service.on_text)
    link.subscribe(link.topic("analyze"), service.on_button)
    return service


def subscribe_inputs(node: Node, config_path: Path | None) -> Reloader:
    """Tools' topics, the listen trigger and Home Assistant discovery; the reloader that redoes what changes."""
    link, config, capture = node.link, node.config, node.capture
    subscribe_tools = ToolSubscriptions(link, node.agent)
    subscribe_tools()
    if config.microphone is not None and config.microphone.vad.mode == "triggered":
        link.subscribe(link.topic("listen"), lambda _message: capture.listen("MQTT trigger"))
    announcer = Announcer(config, link) if config.mqtt.discovery else None
    if announcer is not None:
        announcer.attach()
    toolbox = partial(make_toolbox, link=link, capture=capture)
    return Reloader(config, config_path, node, announcer, toolbox=toolbox, subscribe_tools=subscribe_tools)


STATUS_TICK_S = 1.0  # how often the start-up STATUS= (and, while the model loads, the timeout extension) is sent
EXTEND_BY_S = 30.0  # each EXTEND_TIMEOUT_USEC asks for this much more start-up time, from now


def node_status(node: Node, *, starting: bool) -> str:
    """The STATUS= text: what start-up waits for, or what runs; an unreachable broker is a degradation, not a wait."""
    agent, connected = node.agent, node.link.connected.is_set()
    broker = "" if connected else "MQTT broker unreachable, retrying (results are spooled)"
    if starting:
        return "waiting for the MQTT broker; loading the model" if broker else "loading the model"
    model = "running" if agent.model is not None else f"running without a model: {agent.model_error}"
    return f"{model}; {broker}" if broker else model


async def announce_ready(node: Node, notifier: SystemdNotifier, watchdog: ProgressWatchdog) -> None:
    """READY=1 once this node works: the model load has settled (loaded or refused) and capture runs (`run` starts
    it before it first yields). The broker is not waited for: results are spooled, and STATUS= says it is
    unreachable. While the model loads, EXTEND_TIMEOUT_USEC keeps systemd's start timeout ahead of it (unless the
    load is stalled, as the watchdog counts it: then TimeoutStartSec applies). Then STATUS= follows broker and model."""
    while not node.model_settled.is_set():
        notifier.status(node_status(node, starting=True))
        if not watchdog.stalled():
            notifier.extend_timeout(EXTEND_BY_S)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(node.model_settled.wait(), STATUS_TICK_S)
    status = node_status(node, starting=False)
    watchdog.set_status(status)
    notifier.ready(status)
    log.info("ready: %s", status)
    while True:
        await asyncio.sleep(STATUS_TICK_S)
        watchdog.set_status(node_status(node, starting=False))


def make_watchdog(config: Config, link: MqttLink, capture: Capture, node: Node) -> ProgressWatchdog:
    """The systemd watchdog over every stage: the event loop (it pings from the loop), inference (a job that never
    ends), capture (an open, read or close of a camera or the microphone that never returns; a camera waiting to
    reconnect is not busy) and publishing (connected, with results waiting, and none delivered)."""
    stall_s = config.health.watchdog_stall_s
    watchdog = ProgressWatchdog(SystemdNotifier(), stall_limit_s=stall_s)
    capture.on_progress = watchdog.progress
    capture.busy = partial(watchdog.busy, quiet=True)
    node.agent.scheduler.busy = lambda _job: watchdog.busy("inference")
    watchdog.watch("publish", DrainCheck(link.connected.is_set, lambda: link.spool.depth, stall_s))
    for camera in config.cameras:
        longest = max(camera.open_timeout_s, camera.read_timeout_s)
        timed = isinstance(camera.source, str) and ("://" in camera.source or camera.source.startswith("exec:"))
        if timed and longest >= stall_s:  # the timeouts apply to streams and commands
            log.warning(
                "camera %s: its open/read timeout (%g s) is not below health.watchdog_stall_s (%g s): under systemd, "
                "a source that slow stops the watchdog and the service is restarted",
                camera.name,
                longest,
                stall_s,
            )
    return watchdog


def make_link(config: Config) -> MqttLink:
    """The MQTT link; with the HTTP API on, one that also records what the status page shows."""
    if config.http.enabled:
        from edge_agent.web.recorder import RecordingLink

        return RecordingLink(config.mqtt, config.device.id, open_spool(config.mqtt))
    return MqttLink(config.mqtt, config.device.id, open_spool(config.mqtt))


def start_http(supervisor: Supervisor, node: Node) -> None:
    """The OpenAI/Ollama API, the status page and the timeline (aiohttp is imported only when the API is on)."""
    from edge_agent.web.recorder import Recorded, RecordingLink, StatusFeed
    from edge_agent.web.server import serve

    recorded = node.link.record() if isinstance(node.link, RecordingLink) else Recorded()
    feed = StatusFeed(recorded, node.state, node.capture.latest_frame, node.config.device.id)
    serving = partial(serve, node.agent, node.config.http, __version__, feed, timeline=node.timeline)
    supervisor.start("http", serving)


def serve_timeline(node: Node, handler: AskHandler) -> tuple[AskHandler, TimelineQueries | None]:
    """The timeline (when enabled): fed what the link spools and each answered ask, queried on `timeline/query`;
    each camera's last event is published whether or not the timeline is kept."""
    node.link.on_spooled.append(LastEvents(node.link, {camera.name for camera in node.config.cameras}))
    node.timeline = open_timeline(node.config, node.link)
    if node.timeline is None:
        return handler, None
    queries = TimelineQueries(node.link, node.timeline, node.agent, reply_topics(node))
    queries.subscribe()
    return recording_asks(handler, node.timeline), queries


async def close_timeline(node: Node, queries: TimelineQueries | None) -> None:
    """Cancel running timeline queries, then write what was recorded and close the file."""
    if queries is not None:
        await queries.stop()
    if node.timeline is not None:
        await asyncio.to_thread(node.timeline.close)


async def drain(node: Node, timeout_s: float = 2.0) -> None:
    """On SIGTERM: close the scheduler (waiting and later jobs are refused, nothing new starts), cancel the running
    generation at its next token and give it a moment to publish."""
    scheduler = node.agent.scheduler
    current = scheduler.current
    dropped = scheduler.close("the node is stopping")
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
        link = make_link(config)
    except MqttSetupError as exc:
        log.error("%s", exc)
        return 1
    capture = Capture(config)
    node = Node(config, link, capture, probes)
    watchdog = make_watchdog(config, link, capture, node)
    notifier = watchdog.notifier
    handler, timeline_queries = serve_timeline(node, ask_handler or node.agent.ask)
    questions = serve_questions(link, config, handler, reply_topics(node))
    reloader = subscribe_inputs(node, config_path)
    try:
        supervisor.start("ready", partial(announce_ready, node, notifier, watchdog))  # first: STATUS= before anything
        link.start()
        supervisor.start("ask", questions.serve)
        supervisor.start("model", partial(node.load_model, notifier))
        supervisor.start("scheduler", node.agent.scheduler.serve)
        supervisor.start("watch-timers", node.agent.run_timers)
        capture.start(supervisor)
        node.publish_state()
        supervisor.start("health", node.report_health)
        supervisor.start("reload", partial(reloader.serve, reload))
        if config.http.enabled:
            start_http(supervisor, node)
        if watchdog.period_s is not None:  # only under systemd with WatchdogSec=
            supervisor.start("watchdog", watchdog.run_async)
        await stop.wait()
    finally:
        log.info("stopping")
        notifier.stopping("stopping")
        await drain(node)
        capture.stop()  # capture threads end at their next read (an `exec:` command at once); their services return
        await supervisor.stop(timeout_s=1.0)
        await link.stop()
        link.spool.close()
        await close_timeline(node, timeline_queries)
        if node.metrics is not None:
            node.metrics.close()
    notifier.close()
    log.info("stopped")
    return 0
