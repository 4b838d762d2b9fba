"""Clip questions: windows, the plan at each degradation level, the clip built from kept frames, the post-roll wait,
the config keys and which cameras keep frames."""

from __future__ import annotations

import asyncio
import itertools
import time
from pathlib import Path

import numpy as np
import pytest
from rig.camera import write_video

from edge_agent.agent.clip import PendingClips, camera_clip, clip_fields, clip_plan, clip_question, clip_window
from edge_agent.app.capture import CLIP_WAIT_S, Capture, clip_seconds, make_ring
from edge_agent.config import ConfigError, parse_config
from edge_agent.config.agent import ClipConfig
from edge_agent.health.degrade import DegradationState, Level, Limits
from edge_agent.messages import Frame
from edge_agent.model.media.video import sample_indices
from edge_agent.service import Supervisor
from edge_agent.sources.frame_ring import FrameRing, StoredFrame, decode

WALL = 1_700_000_000.0


def state(level: Level) -> DegradationState:
    return DegradationState(level, "test", Limits(image_budget=280, max_new_tokens=64), changed=False)


def kept_frames(count: int, start: float = 50.0, step: float = 0.5) -> list[StoredFrame]:
    """Frames whose grey level is their number * 20, kept at `step` seconds apart from monotonic `start`."""
    ring = FrameRing(seconds=1e9, fps=1e9, max_bytes=10**8, quality=100)
    for n in range(count):
        image = np.full((48, 64, 3), n * 20, np.uint8)
        ring.offer(Frame("yard", image, n + 1, WALL + start + n * step, start + n * step))
    return ring.window(0, 1e9)


def test_a_clip_is_around_the_event_or_the_last_seconds() -> None:
    clip = ClipConfig(pre_roll_s=3, post_roll_s=2)
    assert clip_window(clip, now=100.0, event=90.0) == (87.0, 92.0)
    assert clip_window(clip, now=100.0, event=None) == (95.0, 100.0)


@pytest.mark.parametrize(
    ("level", "frames", "budget"),
    [
        (Level.NORMAL, 8, 140),
        (Level.LOWER_IMAGE_BUDGET, 4, 70),
        (Level.LOWER_WATCH_RATE, 4, 70),
        (Level.SHORTER_ANSWERS, 2, 70),
        (Level.PAUSE_WATCH, 2, 70),
    ],
)
def test_frames_and_budget_step_down_with_the_degradation_level(level: Level, frames: int, budget: int) -> None:
    assert clip_plan(ClipConfig(frames=8, frame_budget=140), state(level)) == (frames, budget)


def test_never_below_one_frame_or_70_tokens() -> None:
    for level in Level:
        count, budget = clip_plan(ClipConfig(frames=1, frame_budget=70), state(level))
        assert (count, budget) == (1, 70)
    assert clip_plan(ClipConfig(frames=3), state(Level.SHORTER_ANSWERS)) == (1, 70)


def test_the_clip_samples_evenly_with_times_from_its_first_frame_and_shows_the_event_frame() -> None:
    kept = kept_frames(10)
    event = 50.0 + 3 * 0.5 + 0.2  # between the 4th and 5th kept frames
    clip = camera_clip(kept, 4, event)
    picked = [int(i) for i in sample_indices(10, 4)]
    assert clip.clip.timestamps == tuple(i * 0.5 for i in picked)
    assert [int(frame[0, 0, 0]) for frame in clip.clip.frames] == [i * 20 for i in picked]
    assert clip.kept == 10 and clip.start_at == WALL + 50.0 and clip.end_at == WALL + 54.5
    assert clip.snapshot.index == 5 and int(clip.snapshot.image[0, 0, 0]) == 80  # first frame at/after the event
    assert clip.event_at == pytest.approx(WALL + event)
    fields = clip_fields(clip, 70)
    assert fields["frames"] == 4 and fields["frames_kept"] == 10 and fields["frame_budget"] == 70
    assert fields["frame_offsets_s"] == [i * 0.5 for i in picked]


def test_without_an_event_the_snapshot_is_the_middle_frame_and_a_short_clip_keeps_all() -> None:
    clip = camera_clip(kept_frames(3), 8, None)
    assert len(clip.clip.frames) == 3 and clip.event_at is None
    assert clip.snapshot.index == 2
    with pytest.raises(ValueError, match="at least one"):
        camera_clip([], 4, None)


def test_the_question_carries_the_clip_at_its_budget(model_dir: Path) -> None:
    config = parse_config(task_yaml(model_dir, "clip: {frames: 4}"), env={})
    task = config.tasks[0]
    clip = camera_clip(kept_frames(6), 4, None)
    question = clip_question(task, clip, 140)  # type: ignore[arg-type]
    assert question.videos == (clip.clip,) and question.video_budget == 140 and question.video_frames == 4
    assert question.images == () and question.system is not None and "video clip" in question.system


def test_a_motion_clip_waits_once_per_task_on_the_loop_timer() -> None:
    async def scenario() -> list[str]:
        pending, calls = PendingClips(), []
        pending.defer("door", 0.05, lambda: calls.append("door"))
        pending.defer("door", 0.0, lambda: calls.append("again"))  # more motion: part of the same clip
        pending.defer("gate", 10.0, lambda: calls.append("gate"))
        assert pending.waiting("door") and calls == []
        await asyncio.sleep(0.15)
        assert not pending.waiting("door") and pending.waiting("gate")
        pending.cancel()
        assert not pending.waiting("gate")
        return calls

    assert asyncio.run(scenario()) == ["door"]


def task_yaml(model_dir: Path, clip: str, buffer: str = "") -> str:
    return f"""
model: {{path: {model_dir}}}
cameras:
  - {{name: yard, source: /dev/video0 {buffer}}}
  - {{name: gate, source: /dev/video1}}
tasks:
  - {{kind: watch, name: door, camera: yard, question: "What happened?", {clip}}}
  - {{kind: watch, name: plain, camera: gate, question: "Anyone?"}}
"""


def test_only_cameras_clip_tasks_watch_keep_frames(model_dir: Path) -> None:
    config = parse_config(task_yaml(model_dir, "clip: {pre_roll_s: 4, post_roll_s: 2}"), env={})
    assert clip_seconds(config, "yard") == 6 + CLIP_WAIT_S
    assert clip_seconds(config, "gate") is None
    ring = make_ring(config.cameras[0], 6 + CLIP_WAIT_S)
    assert (ring.seconds, ring.fps, ring.max_bytes, ring.width) == (36.0, 2.0, 16 * 1024 * 1024, 640)


def test_a_clip_buffer_is_set_per_camera_and_capped_at_the_camera_rate(model_dir: Path) -> None:
    buffer = ", fps: 1, clip_buffer: {seconds: 90, fps: 5, max_mb: 2.5, width: 320, jpeg_quality: 60}"
    config = parse_config(task_yaml(model_dir, "clip: {}", buffer), env={})
    ring = make_ring(config.cameras[0], 10.0)
    assert (ring.seconds, ring.fps, ring.max_bytes, ring.width, ring.quality) == (90.0, 1.0, 2621440, 320, 60)


@pytest.mark.parametrize(
    ("clip", "buffer", "said"),
    [
        ("clip: {pre_roll_s: 0, post_roll_s: 0}", "", "pre_roll_s or post_roll_s"),
        ("clip: {frames: 0}", "", "frames"),
        ("clip: {frame_budget: 100}", "", "frame_budget"),
        ("clip: {seconds: 3}", "", "seconds"),
        ("clip: {}", ", clip_buffer: {max_mb: 0}", "max_mb"),
        ("clip: {}", ", clip_buffer: {size: 3}", "size"),
    ],
)
def test_bad_clip_settings_are_refused_with_their_key(model_dir: Path, clip: str, buffer: str, said: str) -> None:
    with pytest.raises(ConfigError, match=said):
        parse_config(task_yaml(model_dir, clip, buffer), env={})


def test_capture_keeps_frames_of_the_cameras_clip_tasks_watch_at_the_ring_rate(tmp_path: Path, model_dir: Path) -> None:
    video = write_video(tmp_path / "yard.mp4", frames=40, fps=10.0)
    config = parse_config(
        f"""
model: {{path: {model_dir}}}
cameras:
  - {{name: yard, source: {video}, fps: 10, motion: {{enabled: false}}, clip_buffer: {{fps: 4}}}}
  - {{name: gate, source: {video}, fps: 10, motion: {{enabled: false}}}}
tasks:
  - {{kind: watch, name: door, camera: yard, question: "What happened?", clip: {{pre_roll_s: 1, post_roll_s: 1}}}}
""",
        env={},
    )

    async def scenario() -> tuple[list[StoredFrame], list[StoredFrame], list[StoredFrame], set[str]]:
        capture, supervisor = Capture(config), Supervisor()
        capture.start(supervisor)
        try:
            await asyncio.sleep(2.0)
            now = time.monotonic()
            yard = capture.clip_frames("yard", now - 2.0, now)
            rings = set(capture.rings)
            stats = capture.clip_buffers()["yard"]
            assert stats["frames"] >= 6 and 0 < stats["bytes"] <= 16 * 1024 * 1024 and stats["refused"] == 0
            gate_at_first = capture.clip_frames("gate", now - 2.0, now)  # as after a reload added a clip task
            await asyncio.sleep(1.0)
            now = time.monotonic()
            return yard, gate_at_first, capture.clip_frames("gate", now - 2.0, now), rings
        finally:
            capture.stop()
            await supervisor.stop()

    yard, gate_at_first, gate_later, rings = asyncio.run(scenario())
    assert rings == {"yard"}  # the camera no clip task watches keeps no frames
    assert 6 <= len(yard) <= 9  # 2 s at the ring's 4 fps, not the camera's 10
    times = [frame.monotonic for frame in yard]
    assert times == sorted(times) and min(b - a for a, b in itertools.pairwise(times)) > 0.12  # never two in a row
    assert (times[-1] - times[0]) / (len(times) - 1) == pytest.approx(0.25, abs=0.04)
    assert decode(yard[-1]).shape == (240, 320, 3)
    assert gate_at_first == [] and 2 <= len(gate_later) <= 3  # kept from the first request on, at its 2 fps default
