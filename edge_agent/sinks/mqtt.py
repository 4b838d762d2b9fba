"""The MQTT link (paho v2): availability with a last will, TLS and auth, reconnect with backoff, and results
published from the durable spool, in order, each removed only when the broker acknowledged it."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from edge_agent.config import MqttConfig
from edge_agent.sinks.spool import Spool, Spooled

log = logging.getLogger(__name__)
MAX_INFLIGHT = 20


def default_spool_path() -> Path:
    """$STATE_DIRECTORY/spool.db under systemd, else ~/.local/state/edge-agent/spool.db."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(state) / "spool.db" if state else Path.home() / ".local/state/edge-agent/spool.db"


def open_spool(config: MqttConfig) -> Spool:
    """The spool the config asks for."""
    return Spool(config.spool_path or default_spool_path(), config.spool_max_messages, config.spool_max_age_h * 3600)


def make_client(config: MqttConfig, device_id: str, will_topic: str) -> mqtt.Client:
    """A configured but unconnected paho client."""
    v5 = config.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=config.client_id or f"edge-agent-{device_id}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
    )
    client.will_set(will_topic, "offline", qos=1, retain=True)
    if config.username is not None:
        password = config.password.get_secret_value() if config.password else None
        client.username_pw_set(config.username, password)
    if config.tls is not None:
        tls = config.tls
        client.tls_set(
            ca_certs=str(tls.ca) if tls.ca else None,
            certfile=str(tls.cert) if tls.cert else None,
            keyfile=str(tls.key) if tls.key else None,
            keyfile_password=tls.key_password.get_secret_value() if tls.key_password else None,
        )
        client.tls_insecure_set(tls.insecure)
    client.reconnect_delay_set(min_delay=1, max_delay=int(config.reconnect_max_s))
    client.max_inflight_messages_set(MAX_INFLIGHT)
    return client


class MqttLink:
    """Owns the paho client; every method runs on the asyncio loop (paho callbacks are handed over)."""

    def __init__(self, config: MqttConfig, device_id: str, spool: Spool) -> None:
        self.config = config
        self.base = f"{config.base_topic}/{device_id}"
        self.availability_topic = f"{self.base}/availability"
        self.spool = spool
        self.client = make_client(config, device_id, self.availability_topic)
        self.connected = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inflight: dict[int, int] = {}  # paho message id -> spool seq
        self._last_sent = 0
        self._retained: dict[str, bytes] = {}  # latest state-like payloads, re-sent on every connect
        self.client.on_connect = self._paho_connect
        self.client.on_disconnect = self._paho_disconnect
        self.client.on_publish = self._paho_publish

    def topic(self, suffix: str) -> str:
        """`<base_topic>/<device.id>/<suffix>`."""
        return f"{self.base}/{suffix}"

    def start(self) -> None:
        """Connect in the background; paho reconnects with backoff on its own thread."""
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive)
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

    def publish_result(self, suffix: str, payload: Mapping[str, Any], *, retain: bool = False) -> Spooled:
        """Spool a result (with a unique id and its creation time), then send what the broker can take."""
        message_id, created = uuid.uuid4().hex, time.time()
        body = json.dumps({"id": message_id, "ts": created, **payload}).encode()
        stored = self.spool.put(
            self.topic(suffix), body, qos=self.config.qos, retain=retain, message_id=message_id, created=created
        )
        self._flush()
        return stored

    def publish_state(self, suffix: str, payload: bytes | str, retain: bool = True) -> None:
        """Publish a latest-value topic (state, health); only the newest matters, so it is not spooled."""
        data = payload.encode() if isinstance(payload, str) else payload
        topic = self.topic(suffix)
        if retain:
            self._retained[topic] = data
        if self.connected.is_set():
            self.client.publish(topic, data, qos=1, retain=retain)

    def _flush(self) -> None:
        if not self.connected.is_set():
            return
        room = MAX_INFLIGHT - len(self._inflight)
        for message in self.spool.pending(after_seq=self._last_sent, limit=max(0, room)):
            info = self.client.publish(message.topic, message.payload, qos=message.qos, retain=message.retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("mqtt: publish to %s failed (%s); will retry", message.topic, mqtt.error_string(info.rc))
                return
            self._inflight[info.mid] = message.seq
            self._last_sent = message.seq

    def _on_connect(self, reason: str, failed: bool) -> None:
        if failed:
            log.error("mqtt: %s:%s refused the connection: %s", self.config.host, self.config.port, reason)
            return
        log.info("mqtt: connected to %s:%s", self.config.host, self.config.port)
        self.client.publish(self.availability_topic, "online", qos=1, retain=True)
        for topic, data in self._retained.items():
            self.client.publish(topic, data, qos=1, retain=True)
        self.connected.set()
        self._flush()

    def _on_disconnect(self, reason: str) -> None:
        if self.connected.is_set():
            log.warning("mqtt: disconnected (%s); reconnecting with backoff", reason)
        self.connected.clear()

    def _on_publish(self, mid: int) -> None:
        seq = self._inflight.pop(mid, None)
        if seq is not None:
            self.spool.ack(seq)
        self._flush()

    # paho's thread -> the loop
    def _hand_over(self, callback: Any, *args: Any) -> None:
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _paho_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        self._hand_over(self._on_connect, str(reason), bool(reason.is_failure))

    def _paho_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any = None) -> None:
        self._hand_over(self._on_disconnect, str(reason))

    def _paho_publish(self, _c: mqtt.Client, _u: Any, mid: int, _reason: Any, _p: Any = None) -> None:
        self._hand_over(self._on_publish, mid)
