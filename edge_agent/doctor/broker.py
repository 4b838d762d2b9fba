"""Check the broker with the configured host, port, TLS and credentials: one real MQTT connect."""

from __future__ import annotations

import os
import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge_agent.config import MqttConfig
from edge_agent.doctor.check import Check, fail, ok


def _client(config: MqttConfig, device_id: str) -> mqtt.Client:
    """A paho client with the node's protocol, credentials and TLS, but its own client id and no last will.

    The node's own client id would take over the running daemon's session, and its last will would
    announce the node `offline`.
    """
    v5 = config.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"edge-agent-doctor-{device_id}-{os.getpid()}",
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
    )
    if config.username is not None:
        client.username_pw_set(config.username, config.password.get_secret_value() if config.password else None)
    if config.tls is not None:
        tls = config.tls
        client.tls_set(
            ca_certs=str(tls.ca) if tls.ca else None,
            certfile=str(tls.cert) if tls.cert else None,
            keyfile=str(tls.key) if tls.key else None,
            keyfile_password=tls.key_password.get_secret_value() if tls.key_password else None,
        )
        client.tls_insecure_set(tls.insecure)
    return client


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
    try:
        client = _client(config, device_id)
    except (ssl.SSLError, OSError, ValueError) as exc:
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
