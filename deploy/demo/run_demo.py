"""`make demo`: a local mosquitto, the daemon on the bundled config, and what a subscriber sees.

DEMO_KEEP_BROKER=1 (or --keep) leaves the broker and a node running afterwards, to try the README's
`mosquitto_rr` line against them; the demo prints that line and how to stop both.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt

HERE = Path(__file__).resolve().parent
EDGE_AGENT = [sys.executable, "-m", "edge_agent"]
NODE = "demo-node"
INTRO = """\
demo: what you are looking at
  - a real edge-agent daemon on deploy/demo/config.yaml: a recorded garage camera (garage.mp4), a recorded
    voice ("Turn on the kitchen light.", voice.wav) and a local MQTT broker;
  - a tiny RANDOM-WEIGHT model (models/tiny-gemma4): it has never learnt anything, so its answers are
    meaningless. They are still valid: constrained decoding keeps every answer to the task's schema (a yes/no,
    a number from 0 to 3) and every tool call to a declared tool. That is the point: the plumbing is real,
    only the weights are not;
  - [subscriber] lines: what Home Assistant (or any MQTT client) receives; the other lines are the daemon's log."""
NEXT_STEPS = """\
next: the same with a real model and your own camera and microphone (commands in .venv/bin/):
  .venv/bin/edge-agent models pull e2b --dir ~/models          # Gemma 4 E2B, INT4, about 3 GB
  .venv/bin/edge-agent init --dir ~/models --broker homeassistant.local:1883   # ./config.yaml for this machine
  .venv/bin/edge-agent run -c config.yaml
  As a service: sudo deploy/install.sh (README, "Running as a service")."""


def free_port(preferred: int | None = None) -> int:
    """`preferred` when it is free on 127.0.0.1, else any free TCP port there."""
    for port in (preferred, 0) if preferred else (0,):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise OSError("no free TCP port on 127.0.0.1")


def start_broker(workdir: Path, port: int, detached: bool) -> subprocess.Popen[bytes]:
    """Start mosquitto on 127.0.0.1:port and wait until it accepts connections."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if binary is None:
        sys.exit("demo: mosquitto is not installed: run `sudo apt-get install -y mosquitto`")
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen(
        [binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=detached
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return broker
        except OSError:
            time.sleep(0.05)
    broker.kill()
    sys.exit(f"demo: mosquitto did not start on port {port}")


class Subscriber:
    """A subscriber to everything, printing each message as a user would see it and saving snapshots as files."""

    def __init__(self, port: int, snapshots: Path) -> None:
        self.seen: list[str] = []
        self.snapshots = snapshots
        self.saved: list[Path] = []
        self.online = threading.Event()  # the node said `online`: it is up and handles SIGTERM
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-subscriber")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([("edge_agent/#", 1), ("homeassistant/#", 1), ("zigbee2mqtt/#", 1)])
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.payload[:3] == b"\xff\xd8\xff":  # a snapshot: write it to a file rather than print bytes
            name = message.topic.removeprefix(f"edge_agent/{NODE}/").replace("/", "-")
            path = self.snapshots / f"{len(self.saved) + 1:03d}-{name}.jpg"
            path.write_bytes(message.payload)
            self.saved.append(path)
            payload = f"JPEG image, {len(message.payload)} bytes, saved as {path}"
        else:
            payload = message.payload.decode("utf-8", "replace")
        payload = payload if len(payload) <= 200 else payload[:200] + "..."
        if message.topic == f"edge_agent/{NODE}/availability" and message.payload == b"online":
            self.online.set()
        retained = " (retained)" if message.retain else ""
        self.seen.append(message.topic)
        print(f"[subscriber] {message.topic}{retained}: {payload}", flush=True)

    def stop(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()


def _summary(code: int, subscriber: Subscriber) -> None:
    seen = subscriber.seen
    print(f"demo: daemon exited with {code}; the subscriber saw {len(seen)} MQTT message(s):", flush=True)
    for label, part in (
        ("watch answers", "/task/garage"),
        ("car counts", "/task/cars"),
        ("voice commands", "/task/voice"),
        ("tool calls audited", "/tools/audit"),
        ("light commands", "zigbee2mqtt/kitchen_light/set"),
        ("replies to asks", "/answer"),
    ):
        print(f"  {label}: {sum(1 for topic in seen if part in topic and not topic.endswith('/snapshot'))}")
    if subscriber.saved:
        print(f"  snapshots written: {len(subscriber.saved)}, in {subscriber.snapshots}/ (e.g. {subscriber.saved[-1]})")


def _wait_online(port: int, seconds: float) -> bool:
    """Whether the node announces `online` on its availability topic within `seconds` (it then takes questions)."""
    online = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-wait")
    client.on_message = lambda _c, _u, message: online.set() if message.payload == b"online" else None
    client.connect("127.0.0.1", port)
    client.subscribe(f"edge_agent/{NODE}/availability", qos=1)
    client.loop_start()
    try:
        return online.wait(seconds)
    finally:
        client.loop_stop()
        client.disconnect()


def _keep_running(config: Path, env: dict[str, str], workdir: Path, port: int, broker: int) -> None:
    """Start a node that outlives the demo, next to the broker, and say how to ask it and stop both."""
    log = workdir / "daemon.log"
    with log.open("ab") as out:
        node = subprocess.Popen(
            [*EDGE_AGENT, "run", "-c", str(config)], env=env, stdout=out, stderr=out, start_new_session=True
        )
    if not _wait_online(port, seconds=60):
        print(f"demo: the node did not come online within 60 s; see {log}", flush=True)
    question = json.dumps({"id": "q1", "question": "Is the garage door open?", "camera": "garage"})
    print(
        f"demo: the broker (pid {broker}, 127.0.0.1:{port}) and a node (pid {node.pid}, log {log}) keep running.\n"
        f"  ask it (-W: give up after 30 s without a reply):\n"
        f"    mosquitto_rr -p {port} -W 30 -t edge_agent/{NODE}/ask -e replies/me -m '{question}'\n"
        f"  stop both: kill {node.pid} {broker}",
        flush=True,
    )


def main() -> int:
    """Run the demo for --seconds and stop everything (or, with --keep, leave a broker and a node running)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the daemon runs")
    parser.add_argument("--config", type=Path, default=HERE / "config.yaml")
    parser.add_argument("--keep", action="store_true", default=os.environ.get("DEMO_KEEP_BROKER", "") not in ("", "0"))
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "edge-agent-demo")
    args = parser.parse_args()
    port = free_port(1883 if args.keep else None)
    env = {**os.environ, "DEMO_MQTT_PORT": str(port)}
    print(INTRO, flush=True)
    print(f"demo: checking {args.config}", flush=True)
    if subprocess.run([*EDGE_AGENT, "check-config", "-c", str(args.config)], env=env).returncode:
        return 2
    shutil.rmtree(args.out, ignore_errors=True)
    (args.out / "snapshots").mkdir(parents=True)
    (args.out / "state").mkdir()
    env["STATE_DIRECTORY"] = str(args.out / "state")  # the demo's spool, away from a real node's
    broker = start_broker(args.out, port, detached=args.keep)
    subscriber = Subscriber(port, args.out / "snapshots")
    print(f"demo: broker on 127.0.0.1:{port}; daemon runs for {args.seconds:.0f} s; files in {args.out}/", flush=True)
    # a stand-in for a Zigbee2MQTT light, so the kitchen_light_state tool has a value to read
    subscriber.client.publish("zigbee2mqtt/kitchen_light", json.dumps({"state": "OFF"}), qos=1, retain=True)
    daemon = subprocess.Popen([*EDGE_AGENT, "run", "-c", str(args.config)], env=env)
    try:
        time.sleep(min(5.0, args.seconds / 2))
        question = json.dumps({"id": "demo-1", "question": "Is the garage door open?", "camera": "garage"})
        print(f"[demo] asking on edge_agent/{NODE}/ask: {question}", flush=True)
        subscriber.client.publish(f"edge_agent/{NODE}/ask", question, qos=1)
        daemon.wait(timeout=max(1.0, args.seconds - min(5.0, args.seconds / 2)))
    except subprocess.TimeoutExpired:
        subscriber.online.wait(30)  # a short --seconds: let it finish starting, so that it stops cleanly
        daemon.send_signal(signal.SIGTERM)
    finally:
        code = daemon.wait(timeout=15)
        time.sleep(0.5)
        subscriber.stop()
        if not args.keep:
            broker.terminate()
            broker.wait(timeout=5)
    _summary(code, subscriber)
    if args.keep:
        _keep_running(args.config, env, args.out, port, broker.pid)
    print(NEXT_STEPS, flush=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
