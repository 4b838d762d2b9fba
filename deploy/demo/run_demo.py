"""`make demo`: a local mosquitto, the daemon on the bundled config, and what a subscriber sees."""

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
import time
from pathlib import Path

import paho.mqtt.client as mqtt

HERE = Path(__file__).resolve().parent
EDGE_AGENT = [sys.executable, "-m", "edge_agent"]


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_broker(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    """Start mosquitto on 127.0.0.1:port and wait until it accepts connections."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/sbin")
    if binary is None:
        sys.exit("demo: mosquitto is not installed: run `sudo apt-get install -y mosquitto`")
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([binary, "-c", str(conf)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return broker
        except OSError:
            time.sleep(0.05)
    broker.kill()
    sys.exit(f"demo: mosquitto did not start on port {port}")


def subscribe_and_print(port: int, seen: list[str]) -> mqtt.Client:
    """A subscriber to everything, printing each message as a user would see it."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="demo-subscriber")

    def on_message(_c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        if message.payload[:3] == b"\xff\xd8\xff":  # a snapshot: say what it is rather than print bytes
            payload = f"<JPEG image, {len(message.payload)} bytes>"
        else:
            payload = message.payload.decode("utf-8", "replace")
        payload = payload if len(payload) <= 200 else payload[:200] + "..."
        retained = " (retained)" if message.retain else ""
        seen.append(message.topic)
        print(f"[subscriber] {message.topic}{retained}: {payload}", flush=True)

    client.on_message = on_message
    client.connect("127.0.0.1", port)
    client.subscribe([("edge_agent/#", 1), ("homeassistant/#", 1), ("zigbee2mqtt/#", 1)])
    client.loop_start()
    return client


def main() -> int:
    """Run the demo for --seconds and stop everything."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the daemon runs")
    parser.add_argument("--config", type=Path, default=HERE / "config.yaml")
    args = parser.parse_args()
    port = free_port()
    env = {**os.environ, "DEMO_MQTT_PORT": str(port)}
    print(f"demo: checking {args.config}", flush=True)
    if subprocess.run([*EDGE_AGENT, "check-config", "-c", str(args.config)], env=env).returncode:
        return 2
    with tempfile.TemporaryDirectory(prefix="edge-agent-demo-") as tmp:
        env["STATE_DIRECTORY"] = tmp  # the demo's spool goes away with it
        broker = start_broker(Path(tmp), port)
        seen: list[str] = []
        subscriber = subscribe_and_print(port, seen)
        print(f"demo: broker on 127.0.0.1:{port}; daemon runs for {args.seconds:.0f} s", flush=True)
        # a stand-in for a Zigbee2MQTT light, so the kitchen_light_state tool has a value to read
        subscriber.publish("zigbee2mqtt/kitchen_light", json.dumps({"state": "OFF"}), qos=1, retain=True)
        daemon = subprocess.Popen([*EDGE_AGENT, "run", "-c", str(args.config)], env=env)
        try:
            time.sleep(min(5.0, args.seconds / 2))
            question = json.dumps({"id": "demo-1", "question": "Is the garage door open?", "camera": "garage"})
            print(f"[demo] asking on edge_agent/demo-node/ask: {question}", flush=True)
            subscriber.publish("edge_agent/demo-node/ask", question, qos=1)
            daemon.wait(timeout=max(1.0, args.seconds - min(5.0, args.seconds / 2)))
        except subprocess.TimeoutExpired:
            daemon.send_signal(signal.SIGTERM)
        finally:
            code = daemon.wait(timeout=15)
            time.sleep(0.5)
            subscriber.loop_stop()
            subscriber.disconnect()
            broker.terminate()
            broker.wait(timeout=5)
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
    return code


if __name__ == "__main__":
    sys.exit(main())
