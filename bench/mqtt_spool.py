"""Results/s through the durable spool to a subscriber, against plain paho publishing in the same run.

Starts a private mosquitto on a free loopback port, a QoS 1 subscriber, then sends --count JSON results
(a) straight from a paho client with the same in-flight window and (b) through edge-agent's MqttLink and
its SQLite spool (each result on disk, fsynced, before it is sent; deleted on PUBACK), and (c) the same with
`mqtt.spool_fsync: false` (survives a crash of the daemon, not a power cut).
The clock runs from the first publish until the subscriber holds every id. Prints both rates and the ratio.
Run: .venv/bin/python bench/mqtt_spool.py [--count 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import MqttConfig
from edge_agent.sinks.mqtt import MAX_INFLIGHT, MqttLink
from edge_agent.sinks.spool import Spool


def start_broker(workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A mosquitto on a free 127.0.0.1 port."""
    binary = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin")
    if binary is None:
        raise SystemExit("mosquitto is not installed: apt-get install -y mosquitto")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    (workdir / "m.conf").write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n"
    )
    process = subprocess.Popen([binary, "-c", str(workdir / "m.conf")], stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return process, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit("mosquitto did not start")


class Counter:
    """A QoS 1 subscriber that counts distinct result ids."""

    def __init__(self, port: int, topic: str) -> None:
        self.ids: set[str] = set()
        self.done = threading.Event()
        self.expected = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        subscribed.wait(10)

    def expect(self, count: int) -> None:
        self.ids.clear()
        self.done.clear()
        self.expected = count

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        self.ids.add(json.loads(message.payload)["id"])
        if len(self.ids) >= self.expected:
            self.done.set()


def direct(port: int, counter: Counter, count: int) -> float:
    """Plain paho: publish QoS 1 with the same in-flight window; results/s."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(MAX_INFLIGHT)
    client.connect("127.0.0.1", port)
    client.loop_start()
    counter.expect(count)
    start = time.monotonic()
    for n in range(count):
        body = {"id": uuid.uuid4().hex, "ts": time.time(), "n": n}
        client.publish("bench/direct/result", json.dumps(body).encode(), qos=1)
    assert counter.done.wait(120), f"the subscriber got {len(counter.ids)} of {count}"
    elapsed = time.monotonic() - start
    client.loop_stop()
    client.disconnect()
    return count / elapsed


async def spooled(port: int, counter: Counter, count: int, spool_path: Path, fsync: bool) -> float:
    """edge-agent's MqttLink with its SQLite spool; results/s."""
    config = MqttConfig(host="127.0.0.1", port=port, client_id="bench-spool", discovery=False)
    link = MqttLink(config, "spool", Spool(spool_path, max_messages=count * 2, sync=fsync))
    link.start()
    await asyncio.wait_for(link.connected.wait(), 10)
    counter.expect(count)
    start = time.monotonic()
    for n in range(count):
        link.publish_result("result", {"n": n})
        if n % 50 == 0:
            await asyncio.sleep(0)  # let PUBACKs in, as a real producer would between results
    while not counter.done.is_set():
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - start
    await link.stop()
    link.spool.close()
    return count / elapsed


def main() -> None:
    """Run both and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="results per run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker, port = start_broker(Path(tmp))
        try:
            direct_counter = Counter(port, "bench/direct/result")
            spool_counter = Counter(port, "edge_agent/spool/result")
            direct_rate = direct(port, direct_counter, args.count)
            spool_rate = asyncio.run(spooled(port, spool_counter, args.count, Path(tmp) / "full.db", True))
            normal_rate = asyncio.run(spooled(port, spool_counter, args.count, Path(tmp) / "normal.db", False))
        finally:
            broker.terminate()
            broker.wait()
    print(f"paho direct (no spool):              {direct_rate:8.0f} results/s")
    print(f"edge-agent spool, fsync per result:  {spool_rate:8.0f} results/s  ({direct_rate / spool_rate:.2f}x slower)")
    print(
        f"edge-agent spool, spool_fsync false: {normal_rate:8.0f} results/s  ({direct_rate / normal_rate:.2f}x slower)"
    )
    print(f"({args.count} results per run, QoS 1, {MAX_INFLIGHT} in flight, to one subscriber on 127.0.0.1)")


if __name__ == "__main__":
    main()
