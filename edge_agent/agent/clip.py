"""Clip questions: a watch task with `clip:` asks about its camera's kept frames around an event (pre-roll before
the motion to post-roll after it; on a timer or the button, the last pre-roll + post-roll seconds). A motion clip
waits for its post-roll on the loop's timer, never on the inference thread or in the queue."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edge_agent.config.agent import ClipConfig, WatchTaskConfig
from edge_agent.health.degrade import DegradationState
from edge_agent.messages import Frame
from edge_agent.model.media.video import Clip, sample_indices
from edge_agent.model.runtime.answer import Question
from edge_agent.sources.frame_ring import StoredFrame, decode

ClipFrames = Callable[[str, float, float], list[StoredFrame]]  # camera, monotonic start, end -> kept frames


@dataclass(frozen=True)
class CameraClip:
    """The frames a clip question is asked about, what they came from, and the frame its snapshot shows."""

    clip: Clip  # the sampled frames (BGR) with their seconds from the first kept frame of the window
    kept: int  # frames kept in the window, before sampling
    start_at: float  # wall clock of the window's first and last kept frames
    end_at: float
    event_at: float | None  # wall clock of the motion event (None: a timer, the button, ...)
    snapshot: Frame  # the first kept frame at or after the event, else the middle one


def clip_window(clip: ClipConfig, now: float, event: float | None) -> tuple[float, float]:
    """Monotonic start and end of a clip: around the event, or the last pre-roll + post-roll seconds."""
    if event is None:
        return now - clip.pre_roll_s - clip.post_roll_s, now
    return event - clip.pre_roll_s, event + clip.post_roll_s


def clip_plan(clip: ClipConfig, state: DegradationState) -> tuple[int, int]:
    """Frames and image tokens per frame of a clip question at the degradation level."""
    return state.clip_frames(clip.frames), state.image_budget(clip.frame_budget)


def _snapshot_position(kept: Sequence[StoredFrame], event: float | None) -> int:
    if event is None:
        return len(kept) // 2
    return next((i for i, frame in enumerate(kept) if frame.monotonic >= event), len(kept) - 1)


def camera_clip(kept: Sequence[StoredFrame], count: int, event: float | None) -> CameraClip:
    """`count` frames spread evenly over the kept ones (as the video processor samples), decoded, with their
    seconds from the first kept frame."""
    if not kept:
        raise ValueError("a clip needs at least one kept frame")
    picked = [kept[int(i)] for i in sample_indices(len(kept), count)]
    start = kept[0].monotonic
    images = tuple(decode(frame) for frame in picked)
    clip = Clip(images, tuple(max(0.0, frame.monotonic - start) for frame in picked))
    shown = kept[_snapshot_position(kept, event)]
    image = next((images[i] for i, frame in enumerate(picked) if frame is shown), None)
    if image is None:
        image = decode(shown)
    snapshot = Frame(shown.camera, image, shown.index, shown.captured_at, shown.monotonic)
    event_at = None if event is None else shown.captured_at + (event - shown.monotonic)
    return CameraClip(clip, len(kept), kept[0].captured_at, kept[-1].captured_at, event_at, snapshot)


def clip_system_prompt(schema: dict[str, Any]) -> str:
    """The instruction that pairs a standing question about a clip with its answer schema."""
    return (
        "You watch a camera. Look at the video clip (its frames in order, each with its time) and answer the "
        "question. Reply with JSON only, valid against this JSON Schema: " + json.dumps(schema, sort_keys=True)
    )


def clip_question(task: WatchTaskConfig, clip: CameraClip, budget: int) -> Question:
    """The task's question about the clip, every sampled frame at `budget` image tokens."""
    return Question(
        task.question,
        videos=(clip.clip,),
        system=clip_system_prompt(task.answer),
        video_budget=budget,
        video_frames=len(clip.clip.frames),
        thinking=task.thinking,
    )


def clip_fields(clip: CameraClip, budget: int) -> dict[str, Any]:
    """What a clip answer's result says about its clip."""
    return {
        "start": round(clip.start_at, 3),
        "end": round(clip.end_at, 3),
        "event_at": None if clip.event_at is None else round(clip.event_at, 3),
        "frames": len(clip.clip.frames),
        "frames_kept": clip.kept,
        "frame_budget": budget,
        "frame_offsets_s": [round(t, 3) for t in clip.clip.timestamps],
    }


class PendingClips:
    """Motion clips waiting for their post-roll on the loop's timer: one per task (more motion meanwhile is part of
    the same clip)."""

    def __init__(self) -> None:
        self._waiting: dict[str, asyncio.TimerHandle] = {}

    def waiting(self, task: str) -> bool:
        """A clip of this task waits for its post-roll."""
        return task in self._waiting

    def defer(self, task: str, delay_s: float, submit: Callable[[], object]) -> None:
        """Call `submit` after `delay_s` seconds (unless one of this task already waits)."""
        if task in self._waiting:
            return

        def due() -> None:
            self._waiting.pop(task, None)
            submit()

        self._waiting[task] = asyncio.get_running_loop().call_later(delay_s, due)

    def cancel(self) -> None:
        """Drop every waiting clip (the node stops or the tasks changed)."""
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
