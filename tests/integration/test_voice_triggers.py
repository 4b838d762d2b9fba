"""Listening without a wake word: in 'triggered' mode only an MQTT message (or the HA button) opens the gate."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from paho.mqtt import publish
from rig.broker import Mosquitto
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
BASE = "edge_agent/listener"


def test_an_mqtt_message_opens_the_voice_gate_for_one_utterance(
    write_config: Callable[[str], Path], mosquitto: Mosquitto
) -> None:
    config = write_config(
        f"""
        device: {{id: listener}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}}}
        model: {{path: {REPO / "models" / "tiny-gemma4"}}}
        microphone:
          file: {REPO / "deploy" / "demo" / "voice.wav"}
          loop: true
          vad: {{mode: triggered, listen_timeout_s: 8}}
        """
    )
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{BASE}/#", "homeassistant/device/listener/config"])
    daemon = subprocess.Popen([sys.executable, "-m", "edge_agent", "run", "-c", str(config)], stderr=subprocess.PIPE)
    try:
        subscriber.wait_for(lambda _: subscriber.on(f"{BASE}/availability")[-1:] == [b"online"])
        topic = "homeassistant/device/listener/config"
        subscriber.wait_for(lambda _: bool(subscriber.on(topic)))
        discovery = json.loads(subscriber.on(topic)[-1])
        assert discovery["cmps"]["listen"]["command_topic"] == f"{BASE}/listen"
        time.sleep(6)  # the file plays the sentence every ~4.5 s: untriggered, nothing is picked up
        assert subscriber.on(f"{BASE}/utterance") == []
        publish.single(f"{BASE}/listen", "PRESS", hostname=mosquitto.host, port=mosquitto.port, qos=1)
        subscriber.wait_for(lambda _: len(subscriber.on(f"{BASE}/utterance")) == 1, timeout_s=20)
        time.sleep(6)  # one utterance per trigger
        assert len(subscriber.on(f"{BASE}/utterance")) == 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=15) == 0
        subscriber.close()
