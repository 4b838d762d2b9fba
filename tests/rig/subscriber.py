"""A real MQTT subscriber for tests: collects messages and waits for conditions."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


@dataclass(frozen=True)
class Received:
    """One message as the subscriber saw it."""

    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """Subscribes to `topics` at QoS 1; with `session` the broker keeps its messages while it is away."""

    def __init__(
        self,
        host: str,
        port: int,
        topics: list[str],
        session: str | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.messages: list[Received] = []
        self._changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=session or "", protocol=mqtt.MQTTv5)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe([(t, 1) for t in topics])
        properties = None
        if session:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
        self.client.connect(host, port, clean_start=session is None, properties=properties)
        self.client.loop_start()

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        with self._changed:
            self.messages.append(Received(message.topic, message.payload, bool(message.retain)))
            self._changed.notify_all()

    def wait_for(self, condition: Callable[[list[Received]], bool], timeout_s: float = 30.0) -> list[Received]:
        """Block until `condition(messages)` holds; AssertionError on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not condition(self.messages):
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; got {[(m.topic, m.payload[:60]) for m in self.messages[-10:]]}"
                self._changed.wait(left)
            return list(self.messages)

    def on(self, topic: str) -> list[bytes]:
        """Payloads received on one topic."""
        with self._changed:
            return [m.payload for m in self.messages if m.topic == topic]

    def close(self) -> None:
        """Disconnect."""
        self.client.loop_stop()
        self.client.disconnect()
