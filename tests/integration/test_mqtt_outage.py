"""Nothing is lost: 1,000 results through three broker restarts and a kill -9 of the producer."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from rig.broker import Mosquitto
from rig.subscriber import Subscriber

PRODUCER = """
import asyncio, sys
from pathlib import Path
from edge_agent.config import MqttConfig
from edge_agent.sinks.mqtt import MqttLink
from edge_agent.sinks.spool import Spool

port, spool, first, last = int(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

async def main() -> None:
    config = MqttConfig(host="127.0.0.1", port=port, keepalive=5, reconnect_max_s=1, client_id="producer")
    link = MqttLink(config, "prod", Spool(spool))
    link.start()
    for n in range(first, last):
        link.publish_result("result", {"n": n})
        print(n, flush=True)
        await asyncio.sleep(0.004)
    while link.spool.depth:  # until the broker has acknowledged everything
        await asyncio.sleep(0.05)
    await link.stop()
    print("done", flush=True)

asyncio.run(main())
"""


class Producer:
    """The real MqttLink + Spool in a separate process, so it can be killed -9."""

    def __init__(self, port: int, spool: Path, first: int, last: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PRODUCER, str(port), str(spool), str(first), str(last)],
            stdout=subprocess.PIPE,
            text=True,
        )
        self.last_spooled = first - 1

    def drain(self) -> None:
        """Read what an ended producer printed, to know the last result it spooled."""
        assert self.process.stdout is not None
        for line in self.process.stdout.read().splitlines():
            if line.strip().isdigit():
                self.last_spooled = int(line)

    def wait_until(self, n: int) -> None:
        assert self.process.stdout is not None
        while self.last_spooled < n:
            line = self.process.stdout.readline()
            assert line, "producer ended early"
            if line.strip().isdigit():
                self.last_spooled = int(line)


def test_every_result_arrives_in_order_through_outages_and_kill_9(
    make_broker: Callable[..., Mosquitto], tmp_path: Path
) -> None:
    broker = make_broker(persistent=True)
    subscriber = Subscriber(broker.host, broker.port, ["edge_agent/prod/result"], session="outage-subscriber")
    spool = tmp_path / "spool.db"

    def outage() -> None:
        broker.stop()
        time.sleep(1.5)  # results keep being produced (and spooled) meanwhile
        broker.start()

    first = Producer(broker.port, spool, 0, 700)
    first.wait_until(120)
    outage()
    first.wait_until(300)
    outage()
    first.wait_until(450)
    first.process.send_signal(signal.SIGKILL)  # power cut: what was spooled must still go out
    first.process.wait()
    first.drain()  # it may have spooled (and printed) a few more before it died
    second = Producer(broker.port, spool, first.last_spooled + 1, 1000)
    second.wait_until(first.last_spooled + 200)
    outage()
    second.wait_until(999)
    assert second.process.wait(timeout=120) == 0

    def numbers(messages: list) -> list[int]:  # type: ignore[type-arg]
        seen: dict[str, int] = {}
        for message in messages:
            body = json.loads(message.payload)
            seen.setdefault(body["id"], body["n"])  # QoS 1 is at-least-once: ids de-duplicate
        return list(seen.values())

    try:
        subscriber.wait_for(lambda messages: len(set(numbers(messages))) >= 1000, timeout_s=120)
    except AssertionError:
        pass  # reported below, with what is missing
    finally:
        subscriber.close()
    got = numbers(subscriber.messages)
    missing = sorted(set(range(1000)) - set(got))
    assert not missing, f"{len(missing)} results never arrived: {missing[:20]}..."
    assert got == list(range(1000))
