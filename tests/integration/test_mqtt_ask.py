"""Questions over MQTT against the real daemon: one reply each, on the right topic, whatever is sent."""

from __future__ import annotations

import base64
import json
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber

SLOW_HANDLER = """
import asyncio, sys
from edge_agent import app
from edge_agent.config import load_config
from edge_agent.log import setup_logging
from edge_agent.messages import AskReply

async def slow(request):
    await asyncio.sleep(2)
    return AskReply("ok", answer=f"echo: {request.question}", model="test")

setup_logging("info")
sys.exit(asyncio.run(app.run(load_config(sys.argv[1]), ask_handler=slow)))
"""


def no_model(error: str) -> bool:
    """The reply of a node whose model directory is empty: no model, and why."""
    return error.startswith("no model loaded: ") and "config.json: missing" in error


class Requester:
    """An MQTT 5 client that sends questions with a response topic and counts replies per correlation id."""

    def __init__(self, broker: Mosquitto, protocol: int = mqtt.MQTTv5) -> None:
        self.reply_topic = f"replies/{uuid.uuid4().hex}"  # under mqtt.reply_topic_prefixes (default replies/)
        self.replies: dict[bytes, list[dict[str, Any]]] = {}
        self.others: list[tuple[str, dict[str, Any]]] = []
        self._changed = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(broker.host, broker.port)
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.loop_start()
        self.client.subscribe([(self.reply_topic, 1), ("edge_agent/+/answer", 1)])
        assert subscribed.wait(10)

    def _on_message(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        body = json.loads(message.payload)
        correlation = getattr(getattr(message, "properties", None), "CorrelationData", None)
        with self._changed:
            if message.topic == self.reply_topic and correlation is not None:
                self.replies.setdefault(bytes(correlation), []).append(body)
            else:
                self.others.append((message.topic, body))
            self._changed.notify_all()

    def ask(self, topic: str, payload: bytes, correlation: bytes | None = None, wait: bool = True) -> None:
        properties = None
        if correlation is not None:
            properties = Properties(PacketTypes.PUBLISH)
            properties.ResponseTopic = self.reply_topic
            properties.CorrelationData = correlation
        info = self.client.publish(topic, payload, qos=1, properties=properties)
        if wait:
            info.wait_for_publish(10)

    def wait(self, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                assert left > 0, f"timed out; replies {len(self.replies)}, others {self.others[-3:]}"
                self._changed.wait(left)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def write_daemon_config(write_config: Callable[..., Path], tmp_path: Path, broker: Mosquitto, extra: str = "") -> Path:
    (tmp_path / "model").mkdir(exist_ok=True)
    return write_config(
        f"""
        device: {{id: ask1}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, ask_max_bytes: 1024, spool_path: {tmp_path / "spool.db"}{extra}}}
        model: {{path: {tmp_path / "model"}}}
        """
    )


@pytest.fixture
def daemon(write_config: Callable[..., Path], tmp_path: Path, mosquitto: Mosquitto) -> Iterator[Daemon]:
    watch = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/ask1/availability"])
    process = Daemon(write_daemon_config(write_config, tmp_path, mosquitto))
    watch.wait_for(lambda _: watch.on("edge_agent/ask1/availability")[-1:] == [b"online"], timeout_s=60)
    watch.close()
    yield process
    assert process.stop() == 0


def test_reply_on_the_response_topic_with_correlation_data(daemon: Daemon, mosquitto: Mosquitto) -> None:
    requester = Requester(mosquitto)
    try:
        requester.ask("edge_agent/ask1/ask", b'{"id": "q1", "question": "Is the door open?"}', b"corr-1")
        requester.wait(lambda: b"corr-1" in requester.replies)
        (reply,) = requester.replies[b"corr-1"]
        assert reply["id"] == "q1" and reply["status"] == "error" and no_model(reply["error"])
        assert reply["elapsed_ms"] >= 0 and abs(reply["received"] - time.time()) < 60
        assert requester.others == []  # nothing on .../answer when a response topic was given
    finally:
        requester.close()


def test_without_a_response_topic_the_reply_goes_to_answer_with_the_id(daemon: Daemon, mosquitto: Mosquitto) -> None:
    requester = Requester(mosquitto, protocol=mqtt.MQTTv311)
    try:
        requester.ask("edge_agent/ask1/ask", b'{"id": "q2", "question": "What is on the table?"}')
        requester.ask("edge_agent/ask1/ask", b'{"id": "q3", "question": "x", "colour": "red"}')
        requester.ask("edge_agent/ask1/ask", b"{not json")
        requester.ask("edge_agent/ask1/ask", b'{"id": "q4", "question": "' + b"a" * 2000 + b'"}')
        requester.wait(lambda: len(requester.others) >= 4)
        replies = [body for topic, body in requester.others if topic == "edge_agent/ask1/answer"]
        assert len(replies) == 4 and all(r["status"] == "error" for r in replies)
        by_id = {r["id"]: r["error"] for r in replies if r["id"]}  # rejections are answered before queued questions
        assert no_model(by_id["q2"]) and "colour: unknown field" in by_id["q3"]
        anonymous = sorted(r["error"] for r in replies if r["id"] is None)
        assert "invalid request" in anonymous[0] and "too large" in anonymous[1]
    finally:
        requester.close()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
REQUESTS = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=140), JSON_VALUES),
        "question": st.one_of(st.text(max_size=1100), JSON_VALUES),
        "camera": st.one_of(st.from_regex(r"[a-z0-9_-]{1,8}", fullmatch=True), JSON_VALUES),
        "image": st.one_of(st.binary(max_size=60).map(lambda b: base64.b64encode(b).decode()), JSON_VALUES),
        "audio": st.one_of(st.from_regex(r"[A-Za-z0-9+/=]{0,40}", fullmatch=True), JSON_VALUES),
        "stream": st.one_of(st.booleans(), JSON_VALUES),
        "extra": JSON_VALUES,
    },
)
PAYLOADS = st.one_of(
    st.binary(max_size=1500),
    st.text(max_size=300).map(str.encode),
    REQUESTS.map(lambda body: json.dumps(body).encode()),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.integers(0, 3000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
)


def test_10000_fuzzed_questions_each_get_exactly_one_reply(daemon: Daemon, mosquitto: Mosquitto) -> None:
    requester = Requester(mosquitto)
    sent = 0

    @settings(
        max_examples=200,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(batch=st.lists(PAYLOADS, min_size=50, max_size=50))
    def burst(batch: list[bytes]) -> None:  # 50 at a time: the daemon sees bursts, and the test stays fast
        nonlocal sent
        correlations = []
        for payload in batch:
            sent += 1
            correlations.append(sent.to_bytes(4, "big"))
            requester.ask("edge_agent/ask1/ask", payload, correlations[-1], wait=False)
        requester.wait(lambda: all(c in requester.replies for c in correlations))
        assert all(requester.replies[c][0]["status"] in ("error", "busy") for c in correlations)

    try:
        burst()
        assert sent >= 10_000
        requester.ask("edge_agent/ask1/ask", b'{"question": "still there?"}', b"last")
        requester.wait(lambda: b"last" in requester.replies)
        assert no_model(requester.replies[b"last"][0]["error"])
        counts = Counter(len(replies) for replies in requester.replies.values())
        assert counts == {1: sent + 1}  # exactly one reply per request, none lost, none doubled
        assert daemon.alive
    finally:
        requester.close()


def test_a_full_queue_answers_busy_and_the_home_assistant_entities_ask_too(
    write_config: Callable[..., Path], tmp_path: Path, mosquitto: Mosquitto
) -> None:
    config = write_daemon_config(write_config, tmp_path, mosquitto, ", ask_queue: 2")
    events = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/ask1/event", "edge_agent/ask1/availability"])
    process = Daemon(config, argv=[sys.executable, "-c", SLOW_HANDLER, str(config)])
    requester = Requester(mosquitto)
    try:
        events.wait_for(lambda _: events.on("edge_agent/ask1/availability")[-1:] == [b"online"], timeout_s=60)
        for n in range(10):
            requester.ask("edge_agent/ask1/ask", json.dumps({"question": f"q{n}"}).encode(), bytes([n]))
        requester.wait(lambda: len(requester.replies) == 10)
        statuses = Counter(replies[0]["status"] for replies in requester.replies.values())
        # one being answered + 2 waiting; the rest busy (a slow machine may free a place while publishing)
        assert statuses["ok"] >= 2 and statuses["busy"] >= 5 and statuses["ok"] + statuses["busy"] == 10
        assert all(len(replies) == 1 for replies in requester.replies.values())
        ok = [r[0] for r in requester.replies.values() if r[0]["status"] == "ok"]
        assert ok[0]["answer"] == "echo: q0" and ok[0]["model"] == "test"
        requester.ask("edge_agent/ask1/ask/text", b"What do you see?")
        requester.ask("edge_agent/ask1/analyze", b"PRESS")
        got = events.wait_for(lambda _: len(events.on("edge_agent/ask1/event")) >= 2, timeout_s=30)
        answers = [json.loads(m.payload) for m in got if m.topic == "edge_agent/ask1/event"]
        assert [a["event_type"] for a in answers] == ["answer", "answer"]
        assert answers[0]["answer"] == "echo: What do you see?" and answers[1]["answer"] == "echo: None"
        assert answers[1]["question"] == "(analyse now)" and answers[0]["status"] == "ok"
        assert len({a["id"] for a in answers}) == 2 and all(len(a["id"]) == 32 for a in answers)  # unique result ids
        assert not any(m.retain for m in got if m.topic == "edge_agent/ask1/event")
    finally:
        requester.close()
        events.close()
        assert process.stop() == 0
