"""Check the broker with the configured host, port, TLS and credentials: one real MQTT connect."""

from __future__ import annotations

import os
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt

from edge_agent.config import MqttConfig
from edge_agent.doctor.check import Check, fail, ok
from edge_agent.sinks.mqtt import MqttSetupError, make_client


def _describe(config: MqttConfig) -> str:
    extras = [f"MQTT {config.protocol}"]
    if config.tls is not None:
        extras.append("TLS")
    if config.username is not None:
        extras.append(f"user {config.username!r}")
    return f"{config.host}:{config.port} ({', '.join(extras)})"


def check_broker(config: MqttConfig, device_id: str, timeout_s: float = 5.0) -> Check:
    """Connect, wait for the CONNACK and report its reason; disconnect at once."""
    where = _describe(config)
    try:  # its own client id (the node's would take over the daemon's session) and no last will (`offline`)
        client = make_client(config, f"edge-agent-doctor-{device_id}-{os.getpid()}")
    except MqttSetupError as exc:
        return fail("broker", f"{where}: cannot load the TLS certificates or key: {exc.__cause__}")
    except (OSError, ValueError) as exc:
        return fail("broker", f"{where}: cannot load the TLS certificates or key: {exc}")
    client.connect_timeout = timeout_s
    replies: list[Any] = []
    client.on_connect = lambda _c, _u, _f, reason, _p=None: replies.append(reason)
    try:
        client.connect(config.host, config.port, keepalive=max(10, int(timeout_s) * 2))
    except ssl.SSLError as exc:
        return fail("broker", f"{where}: TLS handshake failed: {exc.reason or exc}")
    except (OSError, ValueError) as exc:
        hint = "; does that port speak TLS?" if config.tls is not None and isinstance(exc, ConnectionResetError) else ""
        return fail("broker", f"{where}: cannot connect: {exc}{hint}")
    try:
        deadline = time.monotonic() + timeout_s
        while not replies and time.monotonic() < deadline:
            if client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS and not replies:
                return fail("broker", f"{where}: the connection closed before the broker answered")
        if not replies:
            return fail("broker", f"{where}: no answer (CONNACK) within {timeout_s:g} s; is it an MQTT broker?")
        reason = replies[0]
        if reason.is_failure:
            return fail("broker", f"{where}: the broker refused the connection: {reason}")
        return ok("broker", f"{where}: connected")
    finally:
        client.disconnect()
        client.loop(timeout=0.1)
