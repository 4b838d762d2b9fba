"""Reference images named in questions over MQTT, against the real daemon, broker and tiny model: the reference is
encoded once and reused by later questions, and a name the config does not define gets one clear error."""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber
from test_mqtt_ask import Requester

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
EXAMPLES = MODEL / "examples"
TOPIC = "edge_agent/refs1/ask"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mosquitto: Mosquitto) -> Iterator[Daemon]:
    """One daemon with two reference images (one with a description) and the tiny multimodal model."""
    tmp = tmp_path_factory.mktemp("references")
    shutil.copy(EXAMPLES / "porch.png", tmp / "rex.png")
    config = tmp / "config.yaml"
    config.write_text(
        f"""
device: {{id: refs1}}
mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, spool_path: {tmp / "spool.db"}, ask_max_bytes: 262144}}
model: {{path: {MODEL}, max_new_tokens: 8, image_budget: 140}}
references:
  - {{name: rex, image: rex.png, description: "Rex, our dog"}}
  - {{name: car, image: {EXAMPLES / "garage.png"}, budget: 140}}
"""
    )
    watch = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/refs1/availability"])
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("model loaded", timeout_s=120)
        watch.wait_for(lambda _: watch.on("edge_agent/refs1/availability")[-1:] == [b"online"], timeout_s=60)
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


def one_reply(requester: Requester, body: dict[str, Any], correlation: bytes) -> dict[str, Any]:
    requester.ask(TOPIC, json.dumps(body).encode(), correlation)
    requester.wait(lambda: bool(requester.replies.get(correlation)), timeout_s=90)
    (reply,) = requester.replies[correlation]
    return reply


def test_a_reference_is_encoded_once_and_reused_by_later_questions(requester: Requester) -> None:
    image = base64.b64encode((EXAMPLES / "garage.png").read_bytes()).decode()
    first = one_reply(requester, {"question": "Is this Rex?", "image": image, "references": ["rex"]}, b"first")
    assert first["status"] == "ok", first
    assert first["references"] == ["rex"] and first["tokens"]["encoded_media"] == 2  # the reference and the image
    second = one_reply(requester, {"question": "And now?", "image": image, "references": ["rex"]}, b"second")
    assert second["status"] == "ok" and second["tokens"]["encoded_media"] == 1  # only the question's own image
    both = one_reply(requester, {"question": "Which one?", "references": ["rex", "car", "rex"]}, b"both")
    assert both["status"] == "ok" and both["references"] == ["rex", "car"]
    assert both["tokens"]["encoded_media"] == 1  # car is new, rex is cached
    again = one_reply(requester, {"question": "Which one?", "references": ["car", "rex"]}, b"again")
    assert again["tokens"]["encoded_media"] == 0 and again["timings_ms"]["encoder_ms"] >= 0


def test_an_unknown_reference_gets_one_clear_error(requester: Requester, node: Daemon) -> None:
    reply = one_reply(requester, {"id": "u1", "question": "Is this Rex?", "references": ["rex", "cat"]}, b"unknown")
    assert reply["status"] == "error" and reply["id"] == "u1"
    assert reply["error"] == "references: no reference image named 'cat' (known: car, rex)"
    bad = one_reply(requester, {"question": "Is this Rex?", "references": ["../etc"]}, b"badname")
    assert bad["status"] == "error" and bad["error"].startswith("invalid request: references.0: ")
    many = one_reply(requester, {"question": "Is this Rex?", "references": ["rex"] * 9}, b"many")
    assert many["status"] == "error" and many["error"].startswith("invalid request: references: ")
    assert one_reply(requester, {"question": "Still there?"}, b"alive")["status"] == "ok"
    assert node.alive


def test_a_watch_task_shows_its_references_before_the_frame(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, tmp_path: Path, video_file: Path
) -> None:
    from edge_agent.config import WatchTaskConfig

    if "references" not in WatchTaskConfig.model_fields:
        pytest.skip("watch tasks have no 'references' field yet (config/agent.py)")
    task = "{{kind: watch, name: {name}, camera: yard, question: 'Is this Rex?', interval_s: 1, references: {refs}}}"
    config = write_config(
        f"""
        device: {{id: refs2}}
        mqtt: {{host: 127.0.0.1, port: {mosquitto.port}, spool_path: {tmp_path / "spool.db"}}}
        model: {{path: {MODEL}, max_new_tokens: 8, image_budget: 70}}
        cameras: [{{name: yard, source: {video_file}, fps: 10}}]
        references: [{{name: rex, image: {EXAMPLES / "porch.png"}, description: "Rex, our dog"}}]
        tasks:
          - {task.format(name="with_rex", refs="[rex]")}
          - {task.format(name="plain", refs="[]")}
        """
    )
    subscriber = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/refs2/task/+"])
    daemon = Daemon(config)
    try:
        results = {"with_rex": "edge_agent/refs2/task/with_rex", "plain": "edge_agent/refs2/task/plain"}
        subscriber.wait_for(lambda _: all(subscriber.on(topic) for topic in results.values()), timeout_s=120)
        rex, plain = (json.loads(subscriber.on(topic)[0]) for topic in results.values())
        assert rex["prompt_tokens"] - plain["prompt_tokens"] > 66  # the reference's soft tokens and its caption
    finally:
        subscriber.close()
        assert daemon.stop() == 0
