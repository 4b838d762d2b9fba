"""The paho client the node connects with: protocol, credentials, TLS, last will and the MQTT 5 session."""

from __future__ import annotations

import ssl
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edge_agent.config import MqttConfig


class MqttSetupError(ValueError):
    """The MQTT settings cannot be used (e.g. a TLS file that cannot be loaded)."""


def make_client(config: MqttConfig, client_id: str, will_topic: str | None = None) -> mqtt.Client:
    """An unconnected paho client with the config's protocol, credentials and TLS, and a last will on `will_topic`."""
    v5 = config.protocol == "5"
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
        clean_session=None if v5 else True,
    )
    if will_topic is not None:
        client.will_set(will_topic, "offline", qos=1, retain=True)
    if config.username is not None:
        password = config.password.get_secret_value() if config.password else None
        client.username_pw_set(config.username, password)
    if config.tls is not None:
        tls = config.tls
        try:
            client.tls_set(
                ca_certs=str(tls.ca) if tls.ca else None,
                certfile=str(tls.cert) if tls.cert else None,
                keyfile=str(tls.key) if tls.key else None,
                keyfile_password=tls.key_password.get_secret_value() if tls.key_password else None,
            )
        except (ssl.SSLError, OSError, ValueError) as exc:  # the cause is kept for `edge-agent doctor`
            raise MqttSetupError(f"mqtt.tls: cannot load the certificates or key: {exc}") from exc
        client.tls_insecure_set(tls.insecure)
    return client


def session_options(config: MqttConfig) -> dict[str, Any]:
    """connect() options: MQTT 5 resumes the node's session (questions sent during a reconnect are kept for it)."""
    options: dict[str, Any] = {"keepalive": config.keepalive}
    if config.protocol == "5" and config.session_expiry_s > 0:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = config.session_expiry_s
        options.update(clean_start=False, properties=properties)
    return options
