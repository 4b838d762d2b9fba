"""A robot's own image or recording on `ask`, and streamed answers, against the real daemon, broker and tiny model."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import soundfile
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber
from test_mqtt_ask import Requester

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
EXAMPLES = MODEL / "examples"
TOPIC = "edge_agent/media1/ask"
MAX_IMAGE_BYTES = 60000  # the garage example (about 51 kB) fits, a noisy 200x200 PNG does not
MAX_AUDIO_S = 5


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mosquitto: Mosquitto) -> Iterator[Daemon]:
    """One daemon with the tiny multimodal model and a `time` tool, for every test of this module."""
    tmp = tmp_path_factory.mktemp("media")
    config = tmp / "config.yaml"
    config.write_text(
        f"""
device: {{id: media1}}
mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, spool_path: {tmp / "spool.db"}, ask_max_bytes: 262144,
        ask_max_image_bytes: {MAX_IMAGE_BYTES}, ask_max_audio_s: {MAX_AUDIO_S}}}
model: {{path: {MODEL}, max_new_tokens: 40, image_budget: 70}}
tools:
  - name: clock
    description: Tell the time.
    action: {{type: time}}
"""
    )
    watch = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/media1/availability"])
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("model loaded", timeout_s=120)
        watch.wait_for(lambda _: watch.on("edge_agent/media1/availability")[-1:] == [b"online"], timeout_s=60)
    finally:
        watch.close()
    yield daemon
    assert daemon.stop() == 0


@pytest.fixture
def requester(node: Daemon, mosquitto: Mosquitto) -> Iterator[Requester]:
    client = Requester(mosquitto)
    yield client
    client.close()
    assert node.alive


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def ask(
    requester: Requester, body: dict[str, Any], correlation: bytes, count: Callable[[list[Any]], bool]
) -> list[dict[str, Any]]:
    """Publish one question; wait until the messages for it satisfy `count`; return them."""
    requester.ask(TOPIC, json.dumps(body).encode(), correlation)
    requester.wait(lambda: count(requester.replies.get(correlation, [])), timeout_s=90)
    return requester.replies[correlation]


def final(messages: list[dict[str, Any]]) -> bool:
    return any(m["status"] != "partial" for m in messages)


def one_reply(requester: Requester, body: dict[str, Any], correlation: bytes) -> dict[str, Any]:
    (reply,) = ask(requester, body, correlation, final)
    return reply


def test_an_image_sent_with_the_question_is_answered(requester: Requester) -> None:
    image = b64((EXAMPLES / "garage.png").read_bytes())
    reply = one_reply(requester, {"id": "img", "question": "Is the garage door open?", "image": image}, b"img")
    assert reply["status"] == "ok", reply
    assert reply["id"] == "img" and isinstance(reply["answer"], str) and reply["model"] == "tiny-gemma4 (q4)"
    assert reply["tokens"]["encoded_media"] == 1 and reply["timings_ms"]["encoder_ms"] > 0
    assert reply["camera"] is None and reply["task"] == "ask"
    # a data URL works too, and a camera-less text question encodes nothing
    data_url = f"data:image/png;base64,{image}"
    assert one_reply(requester, {"question": "And now?", "image": data_url}, b"url")["tokens"]["encoded_media"] == 1
    assert one_reply(requester, {"question": "What time is it?"}, b"txt")["tokens"]["encoded_media"] == 0


def test_a_recording_sent_with_the_question_is_answered(requester: Requester) -> None:
    audio = b64((EXAMPLES / "speech.wav").read_bytes())
    reply = one_reply(requester, {"question": "What did I say?", "audio": audio}, b"wav")
    assert reply["status"] == "ok", reply
    assert reply["tokens"]["encoded_media"] == 1 and reply["timings_ms"]["encoder_ms"] > 0


def flac(seconds: float, rate: int = 16000) -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, np.zeros(int(seconds * rate), np.float32), rate, format="FLAC")
    return buffer.getvalue()


def png(array: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", array)
    assert ok
    return encoded.tobytes()


def test_what_is_not_an_image_or_too_large_is_refused_with_one_line(requester: Requester, node: Daemon) -> None:
    noise = png(np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8))
    assert len(noise) > MAX_IMAGE_BYTES
    bomb = png(np.zeros((7000, 6000), np.uint8))  # 42 megapixels in a few kB
    assert len(bomb) < MAX_IMAGE_BYTES
    cases = {
        b"text": ({"image": b64(b"hello, this is not a picture")}, "image: not a JPEG or PNG image"),
        b"junk": ({"image": "not base64!"}, "invalid request: image: not valid base64"),
        b"cut": ({"image": b64((EXAMPLES / "garage.png").read_bytes()[:200])}, "image: an unreadable PNG"),
        b"big": ({"image": b64(noise)}, f"bytes is too large (mqtt.ask_max_image_bytes: {MAX_IMAGE_BYTES})"),
        b"bomb": ({"image": b64(bomb)}, "image: 6000x7000 pixels is too large"),
        b"mp3": ({"audio": b64(b"ID3\x03\x00" + bytes(500))}, "audio: not a WAV or FLAC recording"),
        b"long": ({"audio": b64(flac(MAX_AUDIO_S + 1))}, f"audio: {MAX_AUDIO_S + 1:.1f} s is too long (at most 5 s)"),
        b"field": ({"video": "AAAA"}, "video: unknown field"),
    }
    for correlation, (fields, _) in cases.items():  # one at a time: several at once may be answered `busy`
        ask(requester, {"id": correlation.decode(), "question": "What is it?", **fields}, correlation, final)
    for correlation, (_, expected) in cases.items():
        (reply,) = requester.replies[correlation]
        assert reply["status"] == "error" and reply["id"] == correlation.decode(), reply
        assert expected in reply["error"] and "\n" not in reply["error"], reply["error"]
    assert not [line for _, line in node.lines if "Traceback" in line]


def joined(messages: list[dict[str, Any]]) -> str:
    """The text of the partial messages in order, from the last one that replaced what came before."""
    partials = [m for m in messages if m["status"] == "partial"]
    assert [m["seq"] for m in partials] == list(range(len(partials)))
    start = max((i for i, m in enumerate(partials) if m.get("reset")), default=0)
    return "".join(m["text"] for m in partials[start:])


def test_a_streamed_answer_comes_in_pieces_that_join_to_the_final_text(requester: Requester) -> None:
    image = b64((EXAMPLES / "porch.png").read_bytes())
    body = {"id": "s1", "question": "Describe the porch in detail.", "image": image, "stream": True}
    messages = ask(requester, body, b"stream", final)
    reply = messages[-1]
    assert reply["status"] == "ok" and reply["answer"], reply
    assert all(m["status"] == "partial" and m["id"] == "s1" for m in messages[:-1])
    assert len(messages) >= 2  # at least one partial before the reply
    assert joined(messages) == reply["answer"]
    # the same question without "stream" gets the same answer (greedy) and no partial messages
    assert one_reply(requester, {**body, "stream": False}, b"plain")["answer"] == reply["answer"]
