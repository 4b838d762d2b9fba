"""The MQTT link (paho v2): availability with a last will, TLS and auth, reconnect with backoff, and results
published from the durable spool, in order, each removed only when the broker acknowledged it."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.config import MqttConfig
from edge_agent.messages import Inbound
from edge_agent.sinks.mqtt_client import MqttSetupError, make_client, session_options
from edge_agent.sinks.spool import Spool, Spooled
from edge_agent.sinks.spool_open import default_spool_path, open_spool

__all__ = ["MAX_INFLIGHT", "MqttLink", "MqttSetupError", "default_spool_path", "make_client", "open_spool"]
log = logging.getLogger(__name__)
MAX_INFLIGHT = 20  # spooled messages handed to paho before their PUBACKs; the rest wait on disk


class MqttLink:
    """Owns the paho client; every method runs on the asyncio loop (paho callbacks are handed over)."""

    def __init__(self, config: MqttConfig, device_id: str, spool: Spool) -> None:
        self.config = config
        self.base = f"{config.base_topic}/{device_id}"
        self.availability_topic = f"{self.base}/availability"
        self.spool = spool  # its writes run on its writer thread, never on the loop
        self.spool.writer  # noqa: B018  # created now: notes written from the loop go to it as well
        self.spool.on_change = lambda: self._hand_over(self._spool_changed)
        self.on_spool_change: list[Callable[[], None]] = []  # the spool's file became (un)writable
        self.client = make_client(config, config.client_id or f"edge-agent-{device_id}", self.availability_topic)
        self.client.reconnect_delay_set(min_delay=1, max_delay=int(config.reconnect_max_s))
        self.client.max_inflight_messages_set(MAX_INFLIGHT)
        self.connected = asyncio.Event()
        self.on_connected: list[Callable[[], None]] = []  # run after every (re)connect
        self.on_spooled: list[Callable[[str, bytes, float], None]] = []  # (suffix, body, created) of each result
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[int, int] = {}  # paho message id -> spool seq
        self._retained: dict[str, bytes] = {}  # latest state-like payloads, re-sent on every connect
        self._handlers: dict[str, Callable[[Inbound], None]] = {}
        self._last_failure = ""
        self._acked: list[int] = []
        self._reading = self._read_again = False  # a read of the spool is on the writer thread
        self.client.on_connect = self._paho_connect
        self.client.on_connect_fail = self._paho_connect_fail
        self.client.on_disconnect = self._paho_disconnect
        self.client.on_publish = self._paho_publish
        self.client.on_message = self._paho_message

    def topic(self, suffix: str) -> str:
        """`<base_topic>/<device.id>/<suffix>`."""
        return f"{self.base}/{suffix}"

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff on its own thread."""
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.config.host, self.config.port, **session_options(self.config))
        self.client.loop_start()

    async def stop(self, timeout_s: float = 3.0) -> None:
        """Say `offline` (retained), then disconnect; what is still spooled waits for the next start."""
        if self.connected.is_set():
            info = self.client.publish(self.availability_topic, "offline", qos=1, retain=True)
            deadline = time.monotonic() + timeout_s
            while not info.is_published() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def subscribe(self, topic: str, handler: Callable[[Inbound], None]) -> None:
        """Call `handler` on the loop for every message on `topic` (subscribed again after each reconnect)."""
        self._handlers[topic] = handler
        if self.connected.is_set():
            self.client.subscribe(topic, qos=1)

    def unsubscribe(self, topic: str) -> None:
        """Stop handling `topic` (e.g. a confirmation topic changed by a reload)."""
        if self._handlers.pop(topic, None) is not None and self.connected.is_set():
            self.client.unsubscribe(topic)

    def subscriptions(self) -> list[str]:
        """The topics the node handles messages on."""
        return list(self._handlers)

    def publish_result(self, suffix: str, payload: Mapping[str, Any], *, retain: bool = False) -> Future[Spooled]:
        """Spool a JSON result (with a unique id and its creation time), then send what the broker can take."""
        message_id, created = uuid.uuid4().hex, time.time()
        body = json.dumps({"id": message_id, "ts": created, **payload}).encode()
        return self.publish_spooled(suffix, body, retain=retain, message_id=message_id, created=created)

    def publish_spooled(
        self,
        suffix: str,
        body: bytes,
        *,
        retain: bool = False,
        message_id: str | None = None,
        created: float | None = None,
    ) -> Future[Spooled]:
        """Spool any payload (e.g. a JPEG snapshot) for `<base>/<suffix>`, then send what the broker can take; the
        write and its fsync run on the spool's writer thread, in order (a retained one replaces those waiting)."""
        stored = self.spool.put_later(
            self.topic(suffix), body, qos=self.config.qos, retain=retain, message_id=message_id, created=created
        )
        stored.add_done_callback(_log_failure)
        self._flush()
        for hook in self.on_spooled:  # e.g. the timeline: it queues and returns, its writes are on its own thread
            try:
                hook(suffix, body, created if created is not None else time.time())
            except Exception:
                log.exception("mqtt: a hook on the result for %s failed", suffix)
        return stored

    def publish_event(self, data: dict[str, Any]) -> None:
        """Spool an event for Home Assistant's event entity on `<base>/event` (events are never retained)."""
        self.publish_result("event", data, retain=False)

    def publish_state(self, suffix: str, payload: bytes | str, retain: bool = True) -> None:
        """Publish a latest-value topic (state, health); only the newest matters, so it is not spooled."""
        data = payload.encode() if isinstance(payload, str) else payload
        topic = self.topic(suffix)
        if retain:
            self._retained[topic] = data
        if self.connected.is_set():
            self.client.publish(topic, data, qos=1, retain=retain)

    def publish_now(
        self, topic: str, payload: bytes, *, retain: bool = False, correlation_data: bytes | None = None
    ) -> None:
        """Publish at QoS 1 without spooling (replies, discovery); paho keeps it over a short disconnect."""
        properties = None
        if correlation_data is not None and self.config.protocol == "5":
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.CorrelationData = correlation_data
        self.client.publish(topic, payload, qos=1, retain=retain, properties=properties)

    def _flush(self) -> None:
        """Read what waits and is not in flight (on the writer thread, after the writes submitted before it)."""
        room = MAX_INFLIGHT - len(self._inflight)
        if not self.connected.is_set() or room <= 0:
            return
        if self._reading:
            self._read_again = True
            return
        self._reading = True
        in_flight = {*self._inflight.values(), *self._acked}
        read = self.spool.writer.submit(self.spool.pending, 0, room, in_flight)
        read.add_done_callback(lambda done: self._hand_over(self._send, done))

    def _send(self, read: Future[list[Spooled]]) -> None:
        self._reading, again = False, self._read_again
        self._read_again = False
        if read.exception() is not None:
            log.error("mqtt: reading the spool failed: %s", read.exception())
            return
        for message in read.result() if self.connected.is_set() else []:
            info = self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            queued = info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and message.qos > 0  # paho resends it on reconnect
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not queued:
                log.warning("mqtt: publish to %s failed (%s); will retry", message.topic, mqtt.error_string(info.rc))
                return
            self._inflight[info.mid] = message.seq
        if again:
            self._flush()

    def _on_connect(self, reason: str, failed: bool) -> None:
        if failed:
            self._failure(f"the broker refused the connection: {reason}")
            return
        log.info("mqtt: connected to %s:%s", self.config.host, self.config.port)
        self._last_failure = ""
        if self._handlers:  # before `online`: once a client sees `online`, questions are heard
            self.client.subscribe([(topic, 1) for topic in self._handlers])
        self.client.publish(self.availability_topic, "online", qos=1, retain=True)
        for topic, data in self._retained.items():
            self.client.publish(topic, data, qos=1, retain=True)
        self.connected.set()
        for hook in self.on_connected:
            hook()
        self._flush()

    def _failure(self, why: str) -> None:
        level = logging.WARNING if why == self._last_failure else logging.ERROR
        log.log(level, "mqtt: %s:%s: %s; retrying with backoff", self.config.host, self.config.port, why)
        self._last_failure = why

    def _on_disconnect(self, reason: str) -> None:
        if self.connected.is_set():
            log.warning("mqtt: disconnected (%s); reconnecting with backoff", reason)
        self.connected.clear()

    def _on_publish(self, mid: int, failure: str | None) -> None:
        seq = self._inflight.pop(mid, None)
        if failure is not None:
            log.warning("mqtt: the broker rejected a message (%s); dropped", failure)
        if seq is not None:
            if not self._acked:  # PUBACKs handed over together are deleted in one transaction
                asyncio.get_running_loop().call_soon(self._commit_acks)
            self._acked.append(seq)

    def _commit_acks(self) -> None:
        acked, self._acked = self._acked, []
        self.spool.writer.submit(self.spool.ack, *acked).add_done_callback(_log_failure)
        self._flush()

    def _spool_changed(self) -> None:
        for hook in self.on_spool_change:
            hook()

    def _on_message(self, message: Inbound) -> None:
        handler = self._handlers.get(message.topic)
        if handler is None:
            return
        try:
            handler(message)
        except Exception:
            log.exception("mqtt: handling a message on %s failed", message.topic)

    # paho's thread -> the loop
    def _hand_over(self, callback: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _paho_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        sock = client.socket()
        if isinstance(sock, socket.socket):  # small replies and PUBACKs leave at once, not after Nagle's 40 ms
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._hand_over(self._on_connect, str(reason), bool(reason.is_failure))

    def _paho_connect_fail(self, _c: mqtt.Client, _u: Any) -> None:
        error = sys.exc_info()[1]  # paho calls this inside its `except OSError` around the connection attempt
        self._hand_over(self._failure, f"cannot connect: {error}" if error else "cannot connect")

    def _paho_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        self._hand_over(self._on_disconnect, str(reason))

    def _paho_publish(self, _c: mqtt.Client, _u: Any, mid: int, reason: Any, _p: Any = None) -> None:
        self._hand_over(self._on_publish, mid, str(reason) if reason.is_failure else None)

    def _paho_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        properties = getattr(message, "properties", None)
        response_topic = getattr(properties, "ResponseTopic", None)
        correlation = getattr(properties, "CorrelationData", None)
        user = tuple((str(name), str(value)) for name, value in getattr(properties, "UserProperty", None) or ())
        payload, retain = bytes(message.payload), bool(message.retain)
        inbound = Inbound(message.topic, payload, retain, response_topic, correlation, user)
        self._hand_over(self._on_message, inbound)


def _log_failure(done: Future[Any]) -> None:
    """A spool job that raised (the spool handles disk errors itself: this is a bug, said once per job)."""
    if not done.cancelled() and done.exception() is not None:
        log.error("mqtt: spool job failed: %r", done.exception())
