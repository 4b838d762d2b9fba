"""The rig itself works with the real libraries: paho on mosquitto, sounddevice on ALSA, OpenCV on HTTP."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import cv2
import numpy as np
import paho.mqtt.client as mqtt
import pytest
from rig.broker import Mosquitto
from rig.camera import MjpegServer


def _client(broker: Mosquitto) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(broker.host, broker.port)
    return client


def test_mosquitto_delivers_retained_message_to_a_late_subscriber(mosquitto: Mosquitto) -> None:
    publisher = _client(mosquitto)
    publisher.loop_start()
    publisher.publish("rig/retained", b"hello", qos=1, retain=True).wait_for_publish(5)
    publisher.loop_stop()
    publisher.disconnect()

    got = threading.Event()
    payloads: list[bytes] = []
    subscriber = _client(mosquitto)

    def on_message(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        payloads.append(message.payload)
        got.set()

    subscriber.on_message = on_message
    subscriber.subscribe("rig/retained", qos=1)
    subscriber.loop_start()
    assert got.wait(5)
    subscriber.loop_stop()
    subscriber.disconnect()
    assert payloads == [b"hello"]


def test_broker_outage_refuses_then_accepts_connections(make_broker) -> None:  # type: ignore[no-untyped-def]
    broker = make_broker()
    broker.stop()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    with pytest.raises(ConnectionRefusedError):
        client.connect(broker.host, broker.port)
    broker.start()
    assert client.connect(broker.host, broker.port) == mqtt.MQTT_ERR_SUCCESS
    client.disconnect()


_RECORD = """
import json, sys
import sounddevice as sd
names = [d["name"] for d in sd.query_devices() if d["max_input_channels"] > 0]
data = sd.rec(8000, samplerate=16000, channels=1, dtype="int16", blocking=True)
print(json.dumps({"inputs": names, "samples": data[:, 0].tolist()}))
"""


def test_sounddevice_records_the_file_through_alsa(alsa_capture) -> None:  # type: ignore[no-untyped-def]
    samples = (np.sin(np.arange(16000) / 8.0) * 10000).astype(np.int16)
    env = alsa_capture(samples)
    out = subprocess.run(
        [sys.executable, "-c", _RECORD], env=env, capture_output=True, text=True, timeout=60, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "default" in result["inputs"]
    assert result["samples"] == samples[:8000].tolist()


def test_opencv_reads_the_mjpeg_stream_and_sees_it_go_away(mjpeg_server: MjpegServer) -> None:
    capture = cv2.VideoCapture(mjpeg_server.url, cv2.CAP_FFMPEG)
    ok, frame = capture.read()
    assert ok and frame.shape == (240, 320, 3)
    ok2, frame2 = capture.read()
    assert ok2 and not np.array_equal(frame, frame2)  # the square moved
    mjpeg_server.stop()
    reads = [capture.read()[0] for _ in range(50)]
    capture.release()
    assert not all(reads)
    mjpeg_server.start()
    again = cv2.VideoCapture(mjpeg_server.url, cv2.CAP_FFMPEG)
    assert again.read()[0]
    again.release()


def test_opencv_reads_the_generated_video(video_file) -> None:  # type: ignore[no-untyped-def]
    capture = cv2.VideoCapture(str(video_file))
    frames = 0
    while capture.read()[0]:
        frames += 1
    capture.release()
    assert frames == 30
