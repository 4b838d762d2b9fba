"""Never an answer about the past, never a model asked to see without eyes: faults injected into the real daemon
(tiny model, real mosquitto, a real MJPEG stream over HTTP that is unplugged and plugged back).

- A camera whose stream stops keeps its last frame; an ask about it, or a watch task on it, once that frame is older
  than the camera's `max_frame_age_s`, is refused (the ask with an error naming the camera and the age, the watch
  task once on `task/<name>/error` with its availability `offline`); every answer carries `frame_age_s`.
- A text-only export (no vision encoder) with a watch task is refused by `check-config` and `doctor`, and at run
  time once (log, `task/<name>/error`, availability `offline`, `state`) instead of a traceback per trigger.
- A question of whitespace only is refused without reaching the model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paho.mqtt import publish
from rig.broker import Mosquitto
from rig.camera import MjpegServer
from rig.daemon import Daemon
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
PORCH = MODEL / "examples" / "porch.png"
MAX_AGE_S = 2.0


def node_config(broker: Mosquitto, tmp_path: Path, device: str, model: Path, camera: str, *, tasks: str = "") -> str:
    return f"""
        device: {{id: {device}}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}, discovery: false}}
        model: {{path: {model}, max_new_tokens: 8, image_budget: 70}}
        cameras:
          - {camera}
        tasks:
          - {{kind: watch, name: door, camera: porch, question: "Is the door open?", on_motion: false,
              interval_s: 1, cooldown_s: 0}}
          {tasks}
        """


def payloads(subscriber: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(body) for body in subscriber.on(topic) if body]


def ask(broker: Mosquitto, subscriber: Subscriber, base: str, body: dict[str, Any]) -> dict[str, Any]:
    """Publish a question on `<base>/ask` and wait for the reply with its id on `<base>/answer`."""
    publish.single(f"{base}/ask", json.dumps(body), qos=1, hostname=broker.host, port=broker.port)

    def replied(_: object) -> bool:
        return any(reply.get("id") == body["id"] for reply in payloads(subscriber, f"{base}/answer"))

    subscriber.wait_for(replied, timeout_s=60)
    return next(reply for reply in payloads(subscriber, f"{base}/answer") if reply.get("id") == body["id"])


def camera_state(subscriber: Subscriber, base: str) -> str | None:
    states = payloads(subscriber, f"{base}/state")
    return states[-1]["cameras"].get("porch") if states else None


def test_a_camera_that_stops_gives_no_answer_about_the_past(
    tmp_path: Path, mosquitto: Mosquitto, mjpeg_server: MjpegServer, write_config: Callable[[str], Path]
) -> None:
    camera = (
        f'{{name: porch, source: "{mjpeg_server.url}", fps: 5, max_frame_age_s: {MAX_AGE_S}, '
        "open_timeout_s: 1, read_timeout_s: 1, motion: {enabled: false}}"
    )
    gate = '- {kind: watch, name: gate, camera: porch, question: "Is the gate shut?", on_motion: true}'
    config = write_config(node_config(mosquitto, tmp_path, "stale1", MODEL, camera, tasks=gate))
    base = "edge_agent/stale1"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#"])
    daemon = Daemon(config)
    try:
        # fresh frames: answers carry how old their frame was
        subscriber.wait_for(lambda _: bool(payloads(subscriber, f"{base}/task/door")), timeout_s=60)
        result = payloads(subscriber, f"{base}/task/door")[-1]
        assert 0 <= result["frame_age_s"] < MAX_AGE_S
        assert subscriber.on(f"{base}/task/door/availability") == [b"online"]  # sent before the value
        fresh = ask(mosquitto, subscriber, base, {"id": "fresh", "question": "What do you see?", "camera": "porch"})
        assert fresh["status"] == "ok", fresh
        assert 0 <= fresh["frame_age_s"] < MAX_AGE_S and fresh["camera"] == "porch"
        no_camera = ask(mosquitto, subscriber, base, {"id": "plain", "question": "Hello?"})
        assert no_camera["status"] == "ok" and no_camera["frame_age_s"] is None

        # the stream stops: the last frame stays, and ages past max_frame_age_s
        mjpeg_server.stop()
        subscriber.wait_for(lambda _: camera_state(subscriber, base) == "reconnecting", timeout_s=30)
        subscriber.wait_for(lambda _: bool(payloads(subscriber, f"{base}/task/door/error")), timeout_s=30)
        (error,) = payloads(subscriber, f"{base}/task/door/error")
        assert error["reason"] == "stale_frame" and error["camera"] == "porch" and error["frame_age_s"] > MAX_AGE_S
        assert "camera porch" in error["error"] and "s old" in error["error"]
        subscriber.wait_for(lambda _: subscriber.on(f"{base}/task/door/availability")[-1] == b"offline")
        stale = ask(mosquitto, subscriber, base, {"id": "stale", "question": "What do you see?", "camera": "porch"})
        assert stale["status"] == "error" and stale["answer"] is None, stale
        assert "camera porch" in stale["error"] and "s old" in stale["error"]
        assert "max_frame_age_s (2 s)" in stale["error"]
        answers = len(payloads(subscriber, f"{base}/task/door"))
        time.sleep(3)  # three more timer ticks: no answer from the old frame, and no second error
        assert len(payloads(subscriber, f"{base}/task/door")) == answers
        assert len(payloads(subscriber, f"{base}/task/door/error")) == 1
        assert len([line for _, line in daemon.lines if "task door: unavailable" in line]) == 1
        # a motion-only task (never triggered here: motion is off) is made unavailable too, between answers
        (gate_error,) = payloads(subscriber, f"{base}/task/gate/error")
        assert gate_error["reason"] == "stale_frame" and "camera porch" in gate_error["error"]
        assert subscriber.on(f"{base}/task/gate/availability") == [b"offline"]
        assert not payloads(subscriber, f"{base}/task/gate")

        # plugged back: answers again, and the entities are available again
        mjpeg_server.start()
        back_again(mosquitto, subscriber, base, answers)
        assert not [line for _, line in daemon.lines if "Traceback" in line]
    finally:
        daemon.stop()
        print("\n".join(line for _, line in daemon.lines[-40:]))  # shown when the test fails
        subscriber.close()


def back_again(broker: Mosquitto, subscriber: Subscriber, base: str, answers: int) -> None:
    """After the stream is back: fresh answers, both tasks `online`, and an ask about the camera answered."""
    subscriber.wait_for(lambda _: len(payloads(subscriber, f"{base}/task/door")) > answers, timeout_s=60)
    assert payloads(subscriber, f"{base}/task/door")[-1]["frame_age_s"] < MAX_AGE_S
    subscriber.wait_for(lambda _: subscriber.on(f"{base}/task/door/availability")[-1] == b"online")
    # the motion-only task is asked once when the frames are fresh again: available without waiting for motion
    subscriber.wait_for(lambda _: bool(payloads(subscriber, f"{base}/task/gate")), timeout_s=60)
    (gate_answer,) = payloads(subscriber, f"{base}/task/gate")
    assert gate_answer["trigger"] == "recovered" and gate_answer["frame_age_s"] < MAX_AGE_S
    assert subscriber.on(f"{base}/task/gate/availability") == [b"offline", b"online"]
    back = ask(broker, subscriber, base, {"id": "back", "question": "And now?", "camera": "porch"})
    assert back["status"] == "ok" and back["frame_age_s"] < MAX_AGE_S, back


def text_only_copy(tmp_path: Path) -> Path:
    """The tiny model without its vision encoder (a text-only export): its manifest still lists the removed files,
    which is fine, since only the files a variant uses are checked against it."""
    copy = tmp_path / "text-only"
    shutil.copytree(MODEL, copy, ignore=shutil.ignore_patterns("vision_encoder*", ".cache"))
    assert not list((copy / "onnx").glob("vision_encoder*"))
    return copy


def edge_agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge_agent", *args], capture_output=True, text=True, timeout=120)


def test_a_model_that_cannot_see_is_refused_by_check_config_and_doctor(
    tmp_path: Path, mosquitto: Mosquitto, write_config: Callable[..., Path]
) -> None:
    camera = f'{{name: porch, source: "{PORCH}", fps: 2, motion: {{enabled: false}}}}'
    blind = write_config(node_config(mosquitto, tmp_path, "blind1", text_only_copy(tmp_path), camera), "blind.yaml")
    seeing = write_config(node_config(mosquitto, tmp_path, "blind1", MODEL, camera), "seeing.yaml")

    done = edge_agent("check-config", "-c", str(blind))
    assert done.returncode == 2 and "OK" not in done.stdout, done.stdout
    assert "tasks[0]: task 'door' (watch) needs images" in done.stderr
    assert "has no vision encoder (onnx/vision_encoder_q4.onnx is missing" in done.stderr
    assert edge_agent("check-config", "-c", str(seeing)).returncode == 0

    done = edge_agent("doctor", "-c", str(blind), "--json", "--timeout", "5")
    assert done.returncode == 1, done.stdout
    checks = {line["name"]: line for line in json.loads(done.stdout)}
    assert checks["model"]["verdict"] == "ok"  # the files themselves are fine: what is missing is for the task
    assert checks["tasks"]["verdict"] == "fail" and "task 'door' (watch) needs images" in checks["tasks"]["detail"]
    assert "no vision encoder" in checks["tasks"]["detail"]
    done = edge_agent("doctor", "-c", str(seeing), "--json", "--timeout", "5")
    assert {line["name"]: line for line in json.loads(done.stdout)}["tasks"]["verdict"] == "ok"


def test_a_model_that_cannot_see_says_so_once_at_run_time(
    tmp_path: Path, mosquitto: Mosquitto, write_config: Callable[[str], Path]
) -> None:
    camera = f'{{name: porch, source: "{PORCH}", fps: 2, motion: {{enabled: false}}}}'
    config = write_config(node_config(mosquitto, tmp_path, "blind2", text_only_copy(tmp_path), camera))
    base = "edge_agent/blind2"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#"])
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("model loaded")
        subscriber.wait_for(lambda _: bool(payloads(subscriber, f"{base}/task/door/error")), timeout_s=30)
        time.sleep(3)  # six timer ticks at 1 s intervals, each of which used to log a traceback
        (error,) = payloads(subscriber, f"{base}/task/door/error")
        assert error["reason"] == "no_vision" and "no vision encoder" in error["error"], error
        subscriber.wait_for(lambda _: subscriber.on(f"{base}/task/door/availability") == [b"offline"])
        assert not payloads(subscriber, f"{base}/task/door")
        assert len([line for _, line in daemon.lines if "no vision encoder" in line]) == 1
        assert not [line for _, line in daemon.lines if "Traceback" in line or "watch:door failed" in line]
        state = payloads(subscriber, f"{base}/state")[-1]
        assert state["model"]["loaded"] is True
        assert "no vision encoder" in state["tasks"]["door"]
        # a question about the camera is refused in one line; one without a camera is still answered
        seen = ask(mosquitto, subscriber, base, {"id": "look", "question": "What do you see?", "camera": "porch"})
        assert seen["status"] == "error" and "cannot see images" in seen["error"], seen
        plain = ask(mosquitto, subscriber, base, {"id": "talk", "question": "Hello?"})
        assert plain["status"] == "ok", plain
        # whitespace only: refused at once, the model never asked
        asked = len(payloads(subscriber, f"{base}/answer"))
        blank = ask(mosquitto, subscriber, base, {"id": "blank", "question": " \n\t "})
        assert blank["status"] == "error" and "question: must not be empty or only whitespace" in blank["error"]
        assert blank["model"] is None and len(payloads(subscriber, f"{base}/answer")) == asked + 1
        assert daemon.alive
    finally:
        daemon.stop()
        print("\n".join(line for _, line in daemon.lines[-40:]))  # shown when the test fails
        subscriber.close()
