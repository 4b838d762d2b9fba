"""The capture side of the daemon: cameras -> motion gate, microphone -> voice gate, as supervised services."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

from edge_agent.config import CameraConfig, Config, WatchTaskConfig
from edge_agent.gating.motion import MotionDetector
from edge_agent.gating.vad import VoiceGate, make_scorer
from edge_agent.messages import AudioChunk, Frame, MotionResult, Utterance
from edge_agent.service import Supervisor, run_in_thread
from edge_agent.sources.audio import FileMicrophone, SoundDeviceMicrophone, open_microphone
from edge_agent.sources.camera import Camera, CameraStatus, LatestFrame
from edge_agent.sources.frame_ring import FrameRing, StoredFrame

log = logging.getLogger(__name__)
T = TypeVar("T")
_AUDIO_QUEUE_CHUNKS = 320  # ~10 s of 32 ms chunks between the capture thread and the voice gate
CLIP_WAIT_S = 30.0  # frames kept beyond a clip's length by default: the question may wait its turn this long


def clip_seconds(config: Config, camera: str) -> float | None:
    """Seconds of frames a camera keeps for the clip tasks that watch it (None: no task takes clips from it)."""
    rolls = [
        task.clip.pre_roll_s + task.clip.post_roll_s
        for task in config.tasks
        if isinstance(task, WatchTaskConfig) and task.clip is not None and task.camera == camera
    ]
    return max(rolls) + CLIP_WAIT_S if rolls else None


def make_ring(camera: CameraConfig, seconds: float) -> FrameRing:
    """A camera's clip ring as its `clip_buffer` says (`seconds` unless set there), at most at the camera's fps."""
    buffer = camera.clip_buffer
    return FrameRing(
        buffer.seconds or seconds,
        min(buffer.fps, camera.fps),
        int(buffer.max_mb * 1024 * 1024),
        buffer.width,
        buffer.jpeg_quality,
    )


class Handoff(Generic[T]):
    """Items from a thread to the loop with at most one pending wake-up: a source that runs faster than the loop
    batches up instead of filling the loop's wake-up pipe (which would also swallow SIGTERM)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[list[T]], None], limit: int) -> None:
        self._loop, self._deliver, self._limit = loop, deliver, limit
        self._lock = threading.Lock()
        self._items: list[T] = []
        self.dropped = 0  # oldest items dropped while the loop was too slow to take them

    def put(self, item: T) -> None:
        """Hand over one item (from any thread)."""
        with self._lock:
            if len(self._items) >= self._limit:
                del self._items[0]
                self.dropped += 1
            self._items.append(item)
            wake = len(self._items) == 1
        if wake:
            self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._lock:
            items, self._items = self._items, []
        self._deliver(items)


@dataclass
class Capture:
    """Runs the inputs and their gates; motion and utterances go to the given callbacks. Each camera and the
    microphone read on a thread of their own (`capture-<name>`), never on the event loop's executor."""

    config: Config
    on_motion: Callable[[MotionResult], None] | None = None
    on_motion_change: Callable[[MotionResult], None] | None = None
    on_utterance: Callable[[Utterance], None] | None = None
    on_camera_status: Callable[[CameraStatus], None] | None = None
    on_microphone_status: Callable[[], None] | None = None  # the microphone's state changed (ok / failed / ...)
    on_progress: Callable[[str], None] | None = None  # "capture" after every frame the motion gate checked
    on_frame: Callable[[str, Frame], Awaitable[None]] | None = None  # a camera's newest frame, every frame_publish_s
    # wraps each blocking open/read of a source (the systemd watchdog's busy(), set by the app)
    busy: Callable[[str], AbstractContextManager[object]] = lambda _stage: nullcontext()
    stop_threads: threading.Event = field(default_factory=threading.Event)
    cameras: dict[str, Camera] = field(default_factory=dict)
    frames: dict[str, LatestFrame] = field(default_factory=dict)
    rings: dict[str, FrameRing] = field(default_factory=dict)  # recent frames of the cameras clip tasks watch
    voice_gate: VoiceGate | None = None
    microphone: SoundDeviceMicrophone | FileMicrophone | None = None
    audio_dropped: int = 0

    def start(self, supervisor: Supervisor) -> None:
        """Start one capture service and one gate service per input."""
        loop = asyncio.get_running_loop()
        for camera_config in self.config.cameras:
            name = camera_config.name
            slot = LatestFrame(loop)
            self.frames[name] = slot
            seconds = clip_seconds(self.config, name)
            if seconds is not None:
                self.rings[name] = make_ring(camera_config, seconds)
            deliver = partial(self._deliver, slot, name)
            camera = Camera(camera_config, deliver, on_status=partial(self._status_from_thread, loop), busy=self.busy)
            self.cameras[name] = camera
            run = partial(camera.run, self.stop_threads)
            supervisor.start(f"camera:{name}", partial(run_in_thread, f"capture-{name}", run, camera.interrupt))
            if camera_config.motion.enabled:
                supervisor.start(f"motion:{name}", partial(self._motion, camera_config, slot))
            if camera_config.frame_publish_s > 0:
                supervisor.start(f"frames:{name}", partial(self._publish_frames, camera_config, slot, camera))
        if self.config.microphone is not None:
            self._start_microphone(supervisor, loop)

    def stop(self) -> None:
        """Tell every capture thread to end at its next read, and interrupt the sources that can be (an `exec:`
        command is stopped now); a source blocked in an open or read with a timeout ends at that timeout."""
        self.stop_threads.set()
        for camera in self.cameras.values():
            camera.interrupt()

    def microphone_status(self) -> dict[str, str | None] | None:
        """The microphone's state and why it is not `ok` (None without a microphone)."""
        if self.microphone is None:
            return None
        return {"state": self.microphone.state, "error": self.microphone.last_error}

    def camera_errors(self) -> dict[str, str]:
        """Why each camera that is not `ok` is not (its last error: e.g. the last line an `exec:` command wrote on
        stderr before it failed)."""
        return {name: c.status.last_error for name, c in self.cameras.items() if c.status.last_error is not None}

    def _status_from_thread(self, loop: asyncio.AbstractEventLoop, status: CameraStatus) -> None:
        if self.on_camera_status is not None:
            loop.call_soon_threadsafe(self.on_camera_status, status)

    @staticmethod
    def _on_loop(loop: asyncio.AbstractEventLoop, callback: Callable[[], None] | None) -> None:
        if callback is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed: the node has stopped
                loop.call_soon_threadsafe(callback)

    def _start_microphone(self, supervisor: Supervisor, loop: asyncio.AbstractEventLoop) -> None:
        assert self.config.microphone is not None
        self.microphone = microphone = open_microphone(self.config.microphone)
        microphone.busy = self.busy
        microphone.on_state = lambda: self._on_loop(loop, self.on_microphone_status)
        queue: asyncio.Queue[AudioChunk | None] = asyncio.Queue(_AUDIO_QUEUE_CHUNKS)
        self.voice_gate = VoiceGate(self.config.microphone.vad, make_scorer(self.config.microphone.vad))

        def enqueue(chunks: list[AudioChunk | None]) -> None:  # runs on the loop
            for chunk in chunks:
                if queue.full():
                    queue.get_nowait()
                    self.audio_dropped += 1
                queue.put_nowait(chunk)

        handoff = Handoff(loop, enqueue, _AUDIO_QUEUE_CHUNKS)

        def capture() -> None:  # runs on its own thread
            microphone.run(handoff.put, self.stop_threads)
            handoff.put(None)  # the source ended (a file that does not loop)

        supervisor.start("microphone", partial(run_in_thread, "capture-microphone", capture))
        supervisor.start("voice-gate", partial(self._voice, queue))

    async def _motion(self, config: CameraConfig, slot: LatestFrame) -> None:
        detector = MotionDetector(config.motion)
        moving = False
        while True:
            frame = await slot.take()
            result = detector.check(frame)
            if self.on_progress is not None:
                self.on_progress("capture")
            if result.motion != moving:
                moving = result.motion
                log.info(
                    "camera %s: motion %s (area %.3f)", config.name, "started" if moving else "stopped", result.area
                )
                if self.on_motion_change is not None:
                    self.on_motion_change(result)
            if result.scene_change:
                log.info("camera %s: scene change (%.0f%% of the frame changed)", config.name, 100 * result.changed)
            if result.motion:
                if self.on_motion is not None:
                    self.on_motion(result)
                self._arm_on_motion(config.name)

    async def _publish_frames(self, config: CameraConfig, slot: LatestFrame, camera: Camera) -> None:
        """Hand the newest frame to `on_frame` at most every `frame_publish_s` while the camera is `ok` (a frame
        already handed over is not handed again; until the first, look every second)."""
        handed = None
        while True:
            frame = slot.latest()
            if (
                self.on_frame is not None
                and frame is not None
                and frame.index != handed
                and camera.status.state == "ok"
            ):
                handed = frame.index
                await self.on_frame(config.name, frame)
            await asyncio.sleep(config.frame_publish_s if handed is not None else min(1.0, config.frame_publish_s))

    def _deliver(self, slot: LatestFrame, camera: str, frame: Frame) -> None:
        """From a camera's thread: every frame to the newest-frame slot, and to the clip ring if the camera keeps one
        (which keeps one at its own rate)."""
        slot.put(frame)
        ring = self.rings.get(camera)
        if ring is not None:
            ring.offer(frame)

    def clip_frames(self, camera: str, start: float, end: float) -> list[StoredFrame]:
        """A camera's kept frames captured from monotonic `start` to `end`. A camera that keeps none (a clip task
        added by a reload) starts keeping them now, and has none yet."""
        ring = self.rings.get(camera)
        if ring is not None:
            ring.keep_seconds(end - start)
            return ring.window(start, end)
        config = next((c for c in self.config.cameras if c.name == camera), None)
        if config is not None and camera in self.cameras:
            log.info("camera %s: keeping frames for clips from now on", camera)
            self.rings[camera] = make_ring(config, end - start + CLIP_WAIT_S)
        return []

    def clip_buffers(self) -> dict[str, dict[str, float]]:
        """Each clip ring's frames, bytes held and frames dropped by its bounds (for the health report)."""
        return {
            name: {"frames": len(ring), "bytes": ring.bytes, "dropped": ring.dropped, "refused": ring.refused}
            for name, ring in self.rings.items()
        }

    def latest_frame(self, camera: str) -> Frame | None:
        """The newest frame of a camera (None before the first, or for an unknown camera)."""
        slot = self.frames.get(camera)
        return slot.latest() if slot is not None else None

    def listen(self, reason: str) -> None:
        """A trigger (motion, an MQTT message, a button) opens the voice gate for one utterance."""
        if self.voice_gate is None:
            return
        if not self.voice_gate.listening:
            log.info("voice gate: listening (%s)", reason)
        self.voice_gate.arm()

    def _arm_on_motion(self, camera: str) -> None:
        microphone = self.config.microphone
        if microphone is not None and camera in microphone.vad.arm_on_motion:
            self.listen(f"motion on {camera}")

    async def _voice(self, queue: asyncio.Queue[AudioChunk | None]) -> None:
        assert self.voice_gate is not None
        while True:
            chunk = await queue.get()
            utterance = self.voice_gate.flush() if chunk is None else self.voice_gate.feed(chunk)
            if utterance is not None:
                log.info("voice gate: utterance %.1f-%.1f s (%s)", utterance.start_s, utterance.end_s, utterance.reason)
                if self.on_utterance is not None:
                    self.on_utterance(utterance)
            if chunk is None:
                return
