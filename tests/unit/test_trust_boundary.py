"""The MQTT trust boundary, pure parts: where replies may go, what counts as a confirmation, bounded read values."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr

from edge_agent.agent.tool_host import CONFIRM_MAX_BYTES, confirmed_id
from edge_agent.config import ToolConfig
from edge_agent.messages import Inbound
from edge_agent.sinks.ask import AskService, LogEvery, ReplyTopics
from edge_agent.tools import LastValues, Toolbox
from edge_agent.tools.host import decode_value
from edge_agent.tools.limits import MAX_CALL_ID, PendingCalls
from edge_agent.tools.outcome import CallInfo

REPO = Path(__file__).resolve().parents[2]
RESERVED = (("edge_agent/", "edge-agent topics"), ("homeassistant/", "Home Assistant discovery"))
TOOLS = [
    ToolConfig.model_validate(
        {
            "name": "light",
            "description": "Switch a light.",
            "parameters": {"type": "object", "properties": {"room": {"type": "string"}}, "required": ["room"]},
            "action": {"type": "mqtt_publish", "topic": "zigbee2mqtt/{room}_light/set", "payload": "ON"},
        }
    ),
    ToolConfig.model_validate(
        {"name": "door", "description": "Door state.", "action": {"type": "mqtt_read", "topic": "replies/door"}}
    ),
]


class Host:
    def publish(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        raise AssertionError("nothing is published in these tests")

    def audit(self, record: dict[str, Any]) -> None:
        pass

    async def snapshot(self, camera: str) -> dict[str, Any]:
        raise AssertionError(camera)


def policy(allowed: tuple[str, ...] = ("replies/",)) -> ReplyTopics:
    box = Toolbox(TOOLS, Host())
    return ReplyTopics(allowed, RESERVED, lambda: [*box.topic_filters(), "edge_agent/n1/tools/confirm"])


def test_tool_topics_become_topic_filters() -> None:
    assert Toolbox(TOOLS, Host()).topic_filters() == ["zigbee2mqtt/+/set", "replies/door"]


@pytest.mark.parametrize(
    ("topic", "why"),
    [
        ("replies/me", None),
        ("replies/a/b/c", None),
        ("zigbee2mqtt/bridge/request/x", "must start with one of mqtt.reply_topic_prefixes ('replies/')"),
        ("zigbee2mqtt/kitchen_light/set", "a topic of a tool or of the node (zigbee2mqtt/+/set)"),
        ("edge_agent/n1/tools/confirm", "never replies into edge-agent topics (edge_agent/)"),
        ("edge_agent/other-node/tools/confirm", "never replies into edge-agent topics (edge_agent/)"),
        ("edge_agent", "never replies into edge-agent topics"),
        ("homeassistant/light/x/config", "never replies into Home Assistant discovery"),
        ("replies/door", "a topic of a tool or of the node (replies/door)"),  # an mqtt_read topic, though allowed
        ("$SYS/broker/x", "must start with one of"),
        ("replies/#", "invalid response_topic"),
        ("", "invalid response_topic"),
    ],
)
def test_reply_topics_are_allowed_only_under_a_prefix_and_never_onto_protected_topics(
    topic: str, why: str | None
) -> None:
    refusal = policy().refusal(topic)
    if why is None:
        assert refusal is None
    else:
        assert refusal is not None and why in refusal, refusal


def test_an_admin_prefix_never_opens_a_tool_topic_or_the_node_tree() -> None:
    wide = policy(("zigbee2mqtt/", "edge_agent/", "replies/"))
    assert wide.refusal("zigbee2mqtt/bridge/answers") is None
    assert "topic of a tool" in (wide.refusal("zigbee2mqtt/kitchen_light/set") or "")
    assert "edge-agent topics" in (wide.refusal("edge_agent/n1/tools/confirm") or "")
    assert "(none)" in (policy(()).refusal("replies/me") or "")


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any], bytes | None]] = []

    def publish_now(self, topic: str, payload: bytes, *, correlation_data: bytes | None = None) -> None:
        self.sent.append((topic, json.loads(payload), correlation_data))

    def publish_event(self, data: dict[str, Any]) -> None:
        raise AssertionError(data)


def test_a_refused_response_topic_gets_the_reason_on_answer_with_the_id(caplog: pytest.LogCaptureFixture) -> None:
    publisher = Publisher()
    service = AskService(publisher, "edge_agent/n1/answer", reply_topics=policy())
    confirm = "edge_agent/n1/tools/confirm"
    for _ in range(3):
        body = json.dumps({"id": "c0ffee", "question": "hi"}).encode()
        service.on_ask(Inbound("edge_agent/n1/ask", body, response_topic=confirm, correlation_data=b"k"))
    assert service.queue.empty() and service.refused_topics == 3
    assert [topic for topic, _, _ in publisher.sent] == ["edge_agent/n1/answer"] * 3  # never the topic asked for
    _, reply, correlation = publisher.sent[0]
    assert reply["id"] == "c0ffee" and reply["status"] == "error" and correlation == b"k"
    assert (
        reply["error"]
        == f"response_topic '{confirm}' refused: the node never replies into edge-agent topics (edge_agent/)"
    )
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1  # one line, not one per ask
    service.on_ask(Inbound("edge_agent/n1/ask", b'{"question": "hi"}', response_topic="replies/me"))
    assert service.queue.qsize() == 1


def message(payload: bytes, *, retain: bool = False, user: tuple[tuple[str, str], ...] = ()) -> Inbound:
    return Inbound("edge_agent/n1/tools/confirm", payload, retain, user_properties=user)


def test_a_confirmation_is_exactly_an_id() -> None:
    assert confirmed_id(message(b'{"id": "abc"}'), {}) == "abc"
    reply = {"id": "abc", "status": "error", "answer": None, "error": "x", "model": None}  # what an ask reply is
    for payload, why in [
        (json.dumps(reply).encode(), 'not exactly {"id": "<call id>"}'),
        (b'{"id": "abc", "question": "hi"}', "not exactly"),
        (b'{"id": 5}', "not exactly"),
        (b'["abc"]', "not exactly"),
        (b"{not json", "not JSON"),
        (b"\xff\xfe\x00", "not JSON"),
        (b"[" * 120 + b"]" * 120, "not exactly"),
        (b"[" * 40000, f"40000 bytes, at most {CONFIRM_MAX_BYTES}"),  # bounded before json.loads
        (json.dumps({"id": "x" * (MAX_CALL_ID + 1)}).encode(), "longer than 64"),
        (b'{"id": ""}', "empty"),
    ]:
        with pytest.raises(ValueError) as error:
            confirmed_id(message(payload), {})
        assert why in str(error.value), (payload[:40], error.value)
    with pytest.raises(ValueError, match="retained"):
        confirmed_id(message(b'{"id": "abc"}', retain=True), {})


def test_a_confirmation_may_need_a_user_property() -> None:
    required = {"x-confirm": SecretStr("s3cret")}
    good = (("other", "1"), ("x-confirm", "wrong"), ("x-confirm", "s3cret"))
    assert confirmed_id(message(b'{"id": "abc"}', user=good), required) == "abc"
    for user in [(), (("x-confirm", "wrong"),), (("X-Confirm", "s3cret"),)]:
        with pytest.raises(ValueError, match="no MQTT 5 user property 'x-confirm' with the configured value"):
            confirmed_id(message(b'{"id": "abc"}', user=user), required)


def test_pending_calls_refuse_long_ids() -> None:
    pending = PendingCalls(lambda: 0.0)
    pending.add(CallInfo("a" * 65, "t", "light", {}))
    assert pending.take("a" * 65) is None  # no such id can be named


def test_read_values_are_bounded_before_they_reach_the_prompt() -> None:
    assert decode_value(b'{"on": true}', 100) == {"on": True}
    assert decode_value(b"x" * 5000, 100) == "x" * 100 + "...[truncated: 5000 bytes in all]"
    big = json.dumps({"list": list(range(1000))}).encode()
    cut = decode_value(big, 50)
    assert (
        isinstance(cut, str)
        and cut.startswith('{"list": [0, 1,')
        and cut.endswith(f"[truncated: {len(big)} bytes in all]")
    )
    assert decode_value("é".encode() * 100, 100) == "é" * 100  # characters, not bytes
    assert decode_value(b"[" * 60 + b"]" * 60, 1000) == "[" * 60 + "]" * 60  # too deep for the prompt: text
    assert decode_value(b"[" * 5000 + b"]" * 5000) == "[" * 5000 + "]" * 5000  # no RecursionError
    assert decode_value(b"[" * 100_000, 100_000) == "[" * 100_000  # as deep as the longest value a tool may read
    values = LastValues(["s"], clock=lambda: 0.0)
    values.update("s", b"y" * 10**6)
    assert len(values.read("s", 16)["value"]) < 60


def test_log_every_says_a_repeated_thing_once_a_minute(caplog: pytest.LogCaptureFixture) -> None:
    limited = LogEvery(logging.getLogger("test.trust"), interval_s=60)
    with caplog.at_level(logging.WARNING):
        for n in range(100):
            limited.warning("junk %d", n)
    assert [r.getMessage() for r in caplog.records] == ["junk 0"]


def test_the_ask_service_still_answers_after_refusals() -> None:
    async def scenario() -> None:
        publisher = Publisher()
        service = AskService(publisher, "edge_agent/n1/answer", reply_topics=policy())
        service.on_ask(Inbound("edge_agent/n1/ask", b'{"id": "q", "question": "hi"}', response_topic="a/b"))
        service.on_ask(Inbound("edge_agent/n1/ask", b'{"id": "q2", "question": "hi"}', response_topic="replies/x"))
        server = asyncio.create_task(service.serve())
        while len(publisher.sent) < 2:
            await asyncio.sleep(0.01)
        server.cancel()
        assert [(topic, reply["id"]) for topic, reply, _ in publisher.sent] == [
            ("edge_agent/n1/answer", "q"),
            ("replies/x", "q2"),
        ]

    asyncio.run(scenario())


def _tasks(node: Any) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [task for item in node for task in _tasks(item)]
    if isinstance(node, dict):
        nested = [task for key in ("block", "rescue", "always") for task in _tasks(node.get(key, []))]
        return [node, *nested]
    return []


def test_the_ansible_health_gate_never_puts_the_password_on_a_command_line() -> None:
    tasks = _tasks(yaml.safe_load((REPO / "ansible/roles/edge_agent/tasks/activate.yml").read_text()))
    commands = [task for task in tasks if "ansible.builtin.command" in task]
    assert commands and not any("mqtt_password" in json.dumps(task["ansible.builtin.command"]) for task in commands)
    (options,) = [task for task in tasks if "mqtt_password" in json.dumps(task.get("ansible.builtin.copy", {}))]
    assert options["ansible.builtin.copy"]["mode"] == "0600" and options["no_log"] is True
