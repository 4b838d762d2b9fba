"""Sends Home Assistant discovery on every connect and after Home Assistant's birth message."""

from __future__ import annotations

import asyncio
import json
import logging
import random

from edge_agent.config import Config
from edge_agent.messages import Inbound
from edge_agent.sinks.ha_discovery import components, discovery_messages, discovery_topic, platforms
from edge_agent.sinks.mqtt import MqttLink

log = logging.getLogger(__name__)
NOTE = "ha_components"  # spool note: component id -> platform, as last announced


class Announcer:
    """Publishes the device discovery; remembers the announced components so removed tasks lose their entity."""

    def __init__(self, config: Config, link: MqttLink, delay_s: tuple[float, float] = (1.0, 5.0)) -> None:
        self.config, self.link, self.delay_s = config, link, delay_s
        self.announced = 0
        self._pending: asyncio.TimerHandle | None = None

    def attach(self) -> None:
        """Announce on every connect and when Home Assistant says it is `online`."""
        self.link.subscribe(f"{self.config.mqtt.discovery_prefix}/status", self.on_status)
        self.link.on_connected.append(self.announce)

    def previous(self) -> dict[str, str]:
        """Components announced before (by this or an earlier run)."""
        try:
            value = json.loads(self.link.spool.note(NOTE) or "{}")
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def announce(self) -> None:
        """Publish discovery now: removals first (if any tasks left the config), then the current entities."""
        topic = discovery_topic(self.config)
        for payload in discovery_messages(self.config, self.previous()):
            self.link.publish_now(topic, payload)
        self.link.spool.set_note(NOTE, json.dumps(platforms(components(self.config))))
        self.announced += 1
        log.debug("mqtt: Home Assistant discovery sent to %s", topic)

    def on_status(self, message: Inbound) -> None:
        """Home Assistant (re)started: resend after a short random delay, so many nodes do not answer at once."""
        if message.payload.strip().lower() != b"online":
            return
        if self._pending is not None:
            self._pending.cancel()
        delay = random.uniform(*self.delay_s)  # spreading load, not security
        self._pending = asyncio.get_running_loop().call_later(delay, self.announce)
