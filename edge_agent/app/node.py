"""The node's face to the world: state, health and results over its MQTT link, and the agent it drives."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable

import numpy as np

from edge_agent import __version__
from edge_agent.agent.core import Agent
from edge_agent.agent.tool_host import LinkToolHost
from edge_agent.app.capture import Capture
from edge_agent.config import Config
from edge_agent.health.admission import fallback_location, swap_back_mb
from edge_agent.health.degrade import DegradationLadder, DegradationState, Limits, Reading
from edge_agent.health.probes import Probes
from edge_agent.health.report import read_health
from edge_agent.health.systemd import SystemdNotifier
from edge_agent.messages import Frame, MotionResult, Utterance
from edge_agent.sinks.metrics import open_metrics
from edge_agent.sinks.mqtt import MqttLink
from edge_agent.sources.camera import CameraStatus
from edge_agent.sources.frame_ring import scaled_jpeg
from edge_agent.timeline import Timeline
from edge_agent.tools import Toolbox

log = logging.getLogger("edge_agent.app")
FRAME_WIDTH = 640  # frames published for Home Assistant's image entity are scaled down to at most this width
FRAME_QUALITY = 70


def preview_jpeg(image: np.ndarray, width: int = FRAME_WIDTH, quality: int = FRAME_QUALITY) -> bytes | None:
    """A JPEG of `image` scaled down to at most `width` pixels wide (None if it cannot be encoded)."""
    return scaled_jpeg(image, width, quality)


def make_toolbox(config: Config, link: MqttLink, capture: Capture) -> Toolbox:
    """The declared tools, acting through the link and the cameras."""
    host = LinkToolHost(link, capture.latest_frame, config.agent.snapshot_quality, config.agent.confirm_topic)
    return Toolbox(config.tools, host, confirm_ttl_s=config.agent.confirm_timeout_s)


class Node:
    """What the node tells the world: state, health and results, over its MQTT link."""

    def __init__(
        self,
        config: Config,
        link: MqttLink,
        capture: Capture,
        probes: Probes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.link, self.capture, self.clock = config, link, capture, clock
        self.started = time.time()
        self.model_settled = asyncio.Event()
        self.probes = probes or Probes()
        self.timeline: Timeline | None = None  # set by `run` when timeline.enabled; its health is reported
        self._swap_tried: bool | None = None
        self._last_reading = Reading(None)
        self.ladder = DegradationLadder(
            config.health,
            Limits.from_model_config(config.model),
            fallback_available=fallback_location(config.model) is not None,
        )
        self.degradation: DegradationState = self.ladder.state()
        self.metrics = open_metrics(config.health.prometheus_host, config.health.prometheus_port)
        self.agent = Agent(
            config,
            make_toolbox(config, link, capture),
            link,
            capture.latest_frame,
            lambda: self.degradation,
            clip_frames=capture.clip_frames,
        )
        self.agent.on_model_change = self.model_changed
        self.agent.memory = self.probes.memory  # admission reads the ladder's memory view
        capture.on_motion = self.agent.on_motion
        capture.on_microphone_status = self.publish_state
        capture.on_motion_change = self.motion_changed
        capture.on_utterance = self.heard
        capture.on_camera_status = self.camera_status
        capture.on_frame = self.publish_frame
        link.on_spool_change.append(self.publish_state)  # the spool's file became (un)writable

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
            "camera_errors": self.capture.camera_errors(),
            "microphone": self.capture.microphone_status(),
            "tasks": self.agent.watch.problems(),
            "spool": self.link.spool.state(),
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

    def model_changed(self) -> None:
        """A model (re)load settled: the ladder learns what swapping the primary back would take, then `state`."""
        model = self.agent.model
        if model is not None and model.admission.fallback is not None:
            self.ladder.swap_back_mb = swap_back_mb(model.admission)
        self.publish_state()

    def apply_health(self, config: Config) -> None:
        """SIGHUP: the ladder takes the new health thresholds, model limits and fallback; the level stays."""
        self.degradation = self.ladder.reconfigure(
            config.health, Limits.from_model_config(config.model), fallback_location(config.model) is not None
        )
        self._swap_tried = None  # a swap that failed under the old settings may work under the new ones
        log.info(
            "reload: degradation ladder at level %d %s under the new limits",
            self.degradation.level,
            self.degradation.name,
        )

    def publish_state(self) -> None:
        """Publish the retained `state`."""
        self.link.publish_state("state", json.dumps(self.state()))

    def camera_status(self, status: CameraStatus) -> None:
        """A camera changed state (ok / reconnecting / failed / ended)."""
        self.publish_state()

    async def publish_frame(self, camera: str, frame: Frame) -> None:
        """Publish a camera's newest frame, downscaled, retained on `camera/<name>/frame` while connected; like
        `state` it is a latest value, so it is never spooled."""
        if not self.link.connected.is_set():
            return
        jpeg = await asyncio.to_thread(preview_jpeg, frame.image)
        if jpeg is None:
            log.warning("camera %s: cannot encode frame %d as JPEG; not published", camera, frame.index)
            return
        self.link.publish_state(f"camera/{camera}/frame", jpeg)

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
        self._measure_swap(reading)
        self._last_reading = reading
        self.degradation = self.ladder.update(reading, self.clock())
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
        self.ladder.swap_requested(want, self._last_reading)
        which = "the fallback model" if want else "the primary model"
        choices = [(self.config.model, self.config.health, want), (self.config.model, self.config.health, not want)]
        agent.schedule_model_load(choices, f"degradation level {int(self.degradation.level)}: loading {which}")

    def _measure_swap(self, reading: Reading) -> None:
        """After a swap of the ladder's settles, tell the ladder what it freed or took (the first reading after)."""
        want, model = self.ladder.swapping, self.agent.model
        if want is not None and not self.agent.model_pending:
            self.ladder.swap_settled(reading, happened=model is not None and model.fallback == want)

    async def report_health(self) -> None:
        """Publish the retained `health` JSON every health.interval_s, and walk the degradation ladder."""
        while True:
            await self.health_tick()
            await asyncio.sleep(self.config.health.interval_s)

    async def health_tick(self) -> dict[str, object]:
        """One reading of the probes: a step of the ladder (and a model swap if it says so), then `health`."""
        report, reading = await asyncio.to_thread(read_health, self.probes)
        self.degrade(reading)
        report.update(self.link.spool.health())
        if self.timeline is not None:
            report["timeline"] = self.timeline.health()
        report["degradation"] = {"level": int(self.degradation.level), "name": self.degradation.name}
        report["agent"] = self.agent.stats()
        if buffers := self.capture.clip_buffers():
            report["clip_buffers"] = buffers
        if self.metrics is not None:
            cameras = {name: camera.status.state for name, camera in self.capture.cameras.items()}
            self.metrics.update(report, int(self.degradation.level), cameras)
        self.link.publish_state("health", json.dumps(report))
        return report
