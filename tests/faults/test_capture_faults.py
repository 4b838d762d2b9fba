"""Capture and publishing faults injected into the real daemon (tiny model, real mosquitto, real OpenCV, sounddevice
through ALSA, real child processes): more cameras than asyncio's default executor has threads, a microphone that is
not there, a camera whose command hangs in the middle of a read, one whose command fails with a message on stderr,
and a broker that hangs (SIGSTOP) while connected, then goes away."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from paho.mqtt import publish
from rig.alsa import capture_env, write_raw
from rig.binaries import require_library
from rig.broker import Mosquitto
from rig.camera import moving_square, write_video
from rig.daemon import Daemon
from rig.notify import receive_until
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
CAMERAS = min(32, (os.cpu_count() or 1) + 4) + 4  # more than asyncio's default executor has threads


def node_config(device: str, port: int, tmp_path: Path, extra: str, health: str = "interval_s: 1") -> str:
    return f"""
        device: {{id: {device}}}
        mqtt: {{host: 127.0.0.1, port: {port}, spool_path: {tmp_path / "spool.db"}, discovery: false}}
        model: {{path: {MODEL}, max_new_tokens: 8, max_context: 1024}}
        health: {{{health}}}
        {extra}
        """


def thread_names(pid: int) -> list[str]:
    """What the kernel calls each thread of a process (`top -H`, `ps -L`)."""
    return [(task / "comm").read_text().strip() for task in Path(f"/proc/{pid}/task").iterdir()]


def ask(mosquitto: Mosquitto, base: str, subscriber: Subscriber, question_id: str) -> dict[str, object]:
    """Ask a question over MQTT; the node's reply."""
    body = json.dumps({"id": question_id, "question": "What do you see?"})
    publish.single(f"{base}/ask", body, hostname=mosquitto.host, port=mosquitto.port)

    def replies() -> list[dict[str, object]]:
        return [json.loads(p) for p in subscriber.on(f"{base}/answer") if json.loads(p).get("id") == question_id]

    subscriber.wait_for(lambda _: bool(replies()), timeout_s=60)
    return replies()[0]


def test_many_cameras_and_a_microphone_that_is_not_there_leave_asks_and_health_working(
    tmp_path: Path, mosquitto: Mosquitto, write_config: Callable[[str], Path]
) -> None:
    require_library("portaudio", "libportaudio2")
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), moving_square(3, width=64, height=48))
    cameras = "\n".join(
        f"          - {{name: cam{i}, source: {image}, fps: 2, motion: {{enabled: false}}}}" for i in range(CAMERAS)
    )
    extra = f"cameras:\n{cameras}\n        microphone: {{device: no such mic}}"
    config = write_config(node_config("many", mosquitto.port, tmp_path, extra))
    env = capture_env(tmp_path / "home", write_raw(tmp_path / "mic.raw", np.zeros(16000, np.int16)))
    base = "edge_agent/many"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#"])
    daemon = Daemon(config, env=env)
    try:
        daemon.wait_for_lines("model loaded")
        healths = len(subscriber.on(f"{base}/health"))
        subscriber.wait_for(lambda _: len(subscriber.on(f"{base}/health")) >= healths + 2, timeout_s=30)
        reply = ask(mosquitto, base, subscriber, "q1")
        assert reply["status"] == "ok", reply

        def all_cameras_ok(_: object) -> bool:
            states = [json.loads(body) for body in subscriber.on(f"{base}/state") if body]
            return bool(states) and set(states[-1]["cameras"].values()) == {"ok"}

        subscriber.wait_for(all_cameras_ok)
        names = thread_names(daemon.process.pid)
        assert {f"capture-cam{i}" for i in range(CAMERAS)} <= set(names), names  # one thread per camera
        assert "capture-microph" in names, names  # "capture-microphone", cut to the kernel's 15 bytes
        assert "inference" in names, names  # the model ran on the scheduler's own thread
        (_, line), *_ = daemon.wait_for_lines("microphone: failed (no input device matching 'no such mic'")
        assert "WARNING" in line, line
        time.sleep(8)  # retried with backoff (1, 2, 4 s), said once, never restarted
        assert ask(mosquitto, base, subscriber, "q2")["status"] == "ok"
        assert daemon.alive
        log = [line for _, line in daemon.lines]
        assert len([line for line in log if "microphone: failed" in line]) == 1, log
        assert not any("service microphone" in line or "Traceback" in line for line in log), log
    finally:
        daemon.stop()
        print("\n".join(line for _, line in daemon.lines[-40:]))  # shown when the test fails
        subscriber.close()


# Writes MJPEG frames for a while, then hangs in the middle of the stream without closing it: the camera's read
# blocks (for up to its read timeout of 60 s, far past the 3 s stall limit of this node).
WEDGING_CAMERA = """
import sys, time, cv2, numpy as np
jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 128, np.uint8))[1].tobytes()
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    sys.stdout.buffer.write(jpeg)
    sys.stdout.buffer.flush()
    time.sleep(0.1)
sys.stdout.buffer.write(jpeg[: len(jpeg) // 2])
sys.stdout.buffer.flush()
time.sleep(300)
"""


def test_a_wedged_camera_stops_the_watchdog_but_a_failing_one_reconnecting_does_not(
    tmp_path: Path, mosquitto: Mosquitto, write_config: Callable[[str], Path]
) -> None:
    script = tmp_path / "wedging.py"
    script.write_text(WEDGING_CAMERA)
    cameras = f"""
        cameras:
          - {{name: wedged, source: "exec:{sys.executable} {script} 10", read_timeout_s: 60, fps: 5,
              motion: {{enabled: false}}}}
          - {{name: failing, source: "exec:sh -c 'echo boom >&2; exit 3'", motion: {{enabled: false}}}}
        """
    health = "interval_s: 1, watchdog_stall_s: 3"
    config = write_config(node_config("wedge", mosquitto.port, tmp_path, cameras, health))
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
        daemon = Daemon(config, env=env)
        try:
            receive_until(sock, "READY=1", timeout_s=60)
            started = time.monotonic()
            # the failing camera reconnects (1, 2, 4 s apart) meanwhile: each attempt is short, so pings go on
            before = receive_until(sock, lambda _: time.monotonic() - started > 4)
            assert sum("WATCHDOG=1" in m for m in before) >= 5, before
            (_, said), *_ = daemon.wait_for_lines("camera failing: sh: boom")
            assert "WARNING" in said, said
            (_, reconnect), *_ = daemon.wait_for_lines("camera failing: reconnecting")
            assert "exited with status 3: boom" in reconnect, reconnect
            # the wedged camera's command stops in the middle of a frame (10 s after it started)
            stalled = receive_until(sock, lambda m: "STALLED: camera wedged busy" in m, timeout_s=30)
            assert not any("STALLED" in m for m in stalled[:-1])
            after = _quiet(sock, 3.0)
            assert not any("WATCHDOG=1" in m for m in after), after
            (_, line), *_ = daemon.wait_for_lines("watchdog: camera wedged busy for")
            assert "ERROR" in line and "systemd will restart the service" in line, line
            assert daemon.alive  # systemd would kill it now; the daemon itself does not exit
        finally:
            daemon.stop()
            print("\n".join(line for _, line in daemon.lines[-40:]))


def _quiet(sock: socket.socket, seconds: float) -> list[str]:
    """Every datagram received within `seconds`."""
    got: list[str] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
    return got


def blinking(index: int) -> np.ndarray:
    """Four seconds still, four seconds a moving square, and so on (at 10 fps): motion starts, then stops once the
    motion gate's background has let go of the square's trail (about 2 s)."""
    return moving_square(index) if (index // 40) % 2 else moving_square(0, size=0)


def test_publishing_that_stops_while_connected_stops_the_watchdog_but_a_broker_outage_does_not(
    tmp_path: Path, make_broker: Callable[..., Mosquitto], write_config: Callable[[str], Path]
) -> None:
    broker = make_broker()
    video = write_video(tmp_path / "blinking.mp4", 160, fps=10, frame_fn=blinking)
    cameras = f"cameras:\n          - {{name: door, source: {video}, fps: 10}}"
    config = write_config(node_config("publish", broker.port, tmp_path, cameras, "interval_s: 1, watchdog_stall_s: 3"))
    base = "edge_agent/publish"
    subscriber = Subscriber(broker.host, broker.port, [f"{base}/motion/#"])
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"}
        daemon = Daemon(config, env=env)
        try:
            receive_until(sock, "READY=1", timeout_s=60)
            # read the notify socket while waiting: a full one would block the daemon's sends (systemd always reads)
            receive_until(sock, lambda _: len(subscriber.on(f"{base}/motion/door")) >= 2)  # results flow
            assert broker.process is not None
            broker.process.send_signal(signal.SIGSTOP)  # a hung broker: the connection stays up, no PUBACK comes
            stalled = receive_until(sock, lambda m: "STALLED: publish: " in m, timeout_s=30)
            assert "none delivered for" in stalled[-1] and "while connected" in stalled[-1], stalled[-1]
            assert not any("WATCHDOG=1" in m for m in _quiet(sock, 2.0))
            broker.process.send_signal(signal.SIGCONT)  # it answers again: what waited is delivered, pings resume
            receive_until(sock, "WATCHDOG=1", timeout_s=30)
            broker.stop()  # an outage: paho sees the connection close and reconnects with backoff
            receive_until(sock, lambda _: any("mqtt: disconnected" in line for _, line in daemon.lines))
            outage = _quiet(sock, 6.0)  # results keep being spooled meanwhile, far past the 3 s limit
            assert sum("WATCHDOG=1" in m for m in outage) >= 10, outage
            assert not any("STALLED" in m for m in outage), outage
            assert daemon.alive
        finally:
            if broker.process is not None:
                broker.process.send_signal(signal.SIGCONT)
            daemon.stop()
            print("\n".join(line for _, line in daemon.lines[-40:]))
            subscriber.close()
