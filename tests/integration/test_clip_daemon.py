"""Clip questions end to end: the real daemon reads a camera file with a scripted event (a still yard, then a box
appears at a known second), keeps its frames, and a clip task's answer about the frames around the event arrives over
MQTT from the real broker, with the clip's times; the timeline holds the motion and the answer at those times, and a
timeline query over MQTT returns them and answers from them; an interval clip task asks about the last seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from rig.broker import Mosquitto
from rig.camera import write_video
from rig.daemon import Daemon
from rig.subscriber import Subscriber
from test_mqtt_ask import Requester

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
FPS = 10.0
APPEARS_S = 8.0  # the box appears at this second of the file and stays
BOX = (200, 90, 260, 150)  # x0, y0, x1, y1 of the box in the 320x240 frame
PRE_S, POST_S, RING_FPS = 2.0, 2.0, 4.0


def yard(index: int) -> np.ndarray:
    """A still, textured yard; from APPEARS_S on a white box stands in it."""
    frame = np.full((240, 320, 3), 64, np.uint8)
    cv2.rectangle(frame, (20, 160), (120, 230), (40, 110, 40), -1)  # a hedge that never moves
    if index >= APPEARS_S * FPS:
        cv2.rectangle(frame, BOX[:2], BOX[2:], (255, 255, 255), -1)
    return frame


def config_text(broker: Mosquitto, tmp_path: Path, camera: Path) -> str:
    return f"""
        device: {{id: clips1}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}}}
        model: {{path: {MODEL}, max_new_tokens: 8, image_budget: 70}}
        cameras:
          - {{name: yard, source: {camera}, fps: {FPS}, loop: false, clip_buffer: {{fps: {RING_FPS}, max_mb: 4}}}}
        tasks:
          - kind: watch
            name: visitor
            camera: yard
            question: What happened in the yard?
            cooldown_s: 600
            snapshot: true
            clip: {{pre_roll_s: {PRE_S}, post_roll_s: {POST_S}, frames: 4}}
          - kind: watch
            name: recent
            camera: yard
            question: Did anything move?
            on_motion: false
            interval_s: 2
            clip: {{pre_roll_s: 1, post_roll_s: 1, frames: 2, frame_budget: 140}}
          - kind: watch
            name: too_long
            camera: yard
            question: Did anything move?
            on_motion: false
            interval_s: 5
            clip: {{pre_roll_s: 4, frames: 8, frame_budget: 280}}
        """


def answers(subscriber: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(body) for body in subscriber.on(topic)]


def timeline_query(requester: Requester, body: dict[str, Any], correlation: bytes) -> dict[str, Any]:
    requester.ask("edge_agent/clips1/timeline/query", json.dumps(body).encode(), correlation)
    requester.wait(lambda: correlation in requester.replies, timeout_s=60)
    return requester.replies[correlation][0]


def check_timeline(requester: Requester, visitor: dict[str, Any], motion_at: float) -> None:
    """The event and the clip's answer are in the timeline at their times, and a question is answered from them."""
    reply = timeline_query(requester, {"id": "t1", "camera": "yard", "kind": ["motion", "answer"]}, b"t1")
    assert reply["status"] == "ok", reply
    started = [e for e in reply["entries"] if e["kind"] == "motion" and e["payload"]["motion"] is True]
    assert started and started[-1]["ts"] == pytest.approx(motion_at, abs=0.6)  # the first motion: the scripted event
    (answer,) = [e for e in reply["entries"] if e["kind"] == "answer" and e["task"] == "visitor"]
    assert answer["ts"] == round(visitor["ts"], 3) and answer["payload"]["clip"] == visitor["clip"]
    assert answer["snapshot"] and answer["thumbnail"]  # the event frame, kept as a file
    asked = {"id": "t2", "question": "When did something appear in the yard?", "since": "10m", "task": "visitor"}
    answered = timeline_query(requester, asked, b"t2")
    assert answered["status"] == "ok" and isinstance(answered["answer"], str) and answered["entries_in_prompt"] == 1


def wall(monotonic: float) -> float:
    """A test-side monotonic time as wall clock (the daemon stamps frames with time.time() on this machine)."""
    return time.time() - (time.monotonic() - monotonic)


@pytest.mark.timeout(120)
def test_a_clip_task_answers_about_the_frames_around_the_event(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, tmp_path: Path
) -> None:
    camera = write_video(tmp_path / "yard.mp4", frames=int(14 * FPS), fps=FPS, frame_fn=yard)
    base = "edge_agent/clips1"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#"])
    requester = Requester(mosquitto)
    daemon = Daemon(write_config(config_text(mosquitto, tmp_path, camera)))
    try:
        daemon.wait_for_lines("model loaded")
        first_frame = daemon.wait_for_lines("camera yard: ok")[0][0]
        motion = daemon.wait_for_lines("camera yard: motion started", timeout_s=30)[0][0]
        assert motion - first_frame == pytest.approx(APPEARS_S, abs=0.6)  # the scripted event, seen when it happened
        topic = f"{base}/task/visitor"
        subscriber.wait_for(lambda _: bool(subscriber.on(topic)), timeout_s=30)
        visitor = answers(subscriber, topic)[0]
        clip = visitor["clip"]
        assert visitor["trigger"] == "motion" and isinstance(visitor["value"], bool)
        assert visitor["degradation_level"] == 0 and visitor["model"] == "tiny-gemma4 (q4)"
        # the clip spans pre-roll before the event to post-roll after it, at the ring's rate
        assert clip["event_at"] == pytest.approx(wall(motion), abs=0.6)
        assert clip["event_at"] - clip["start"] == pytest.approx(PRE_S, abs=1 / RING_FPS + 0.15)
        assert clip["end"] - clip["event_at"] == pytest.approx(POST_S, abs=1 / RING_FPS + 0.15)
        assert abs(clip["frames_kept"] - (PRE_S + POST_S) * RING_FPS) <= 2
        assert clip["frames"] == 4 and clip["frame_budget"] == 70
        offsets = clip["frame_offsets_s"]
        assert offsets[0] == 0.0 and offsets == sorted(offsets) and offsets[-1] <= clip["end"] - clip["start"]
        # the snapshot is the event frame: the box is there, the rest of the yard as before
        assert visitor["frame_captured_at"] >= clip["event_at"] - 0.01
        jpeg = subscriber.on(f"{topic}/snapshot")[0]
        shown = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert shown is not None
        assert shown[BOX[1] + 5 : BOX[3] - 5, BOX[0] + 5 : BOX[2] - 5].mean() > 230
        assert abs(float(shown[10:60, 10:100].mean()) - 64) < 8
        check_timeline(requester, visitor, wall(motion))
        # the interval task asks about the last pre-roll + post-roll seconds, at its own frame count and budget
        recent = next(a for a in answers(subscriber, f"{base}/task/recent") if a["clip"]["frames"] > 1)
        assert recent["trigger"] == "timer" and recent["clip"]["event_at"] is None
        assert 0 < recent["clip"]["end"] - recent["clip"]["start"] <= 2.0 + 0.01
        assert recent["clip"]["frames"] <= 2 and recent["clip"]["frame_budget"] == 140
        # a clip longer than the model's context: one clear line on the task's error topic, and the node stays up
        subscriber.wait_for(lambda _: bool(subscriber.on(f"{base}/task/too_long/error")))
        assert "context holds 512" in answers(subscriber, f"{base}/task/too_long/error")[0]["error"]
        assert not any("Traceback" in line for _, line in daemon.lines)
        assert daemon.alive
    finally:
        daemon.stop()
        subscriber.close()
        requester.close()
        print("\n".join(line for _, line in daemon.lines[-60:]))  # shown when the test fails
