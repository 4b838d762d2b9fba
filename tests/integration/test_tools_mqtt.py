"""Tools against the real broker: a templated publish arrives where it should; mqtt_read sees a retained value."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

from rig.broker import Mosquitto
from rig.subscriber import Received, Subscriber

from edge_agent.agent.tool_host import LinkToolHost
from edge_agent.config import MqttConfig, ToolConfig
from edge_agent.messages import Inbound, ToolCall
from edge_agent.sinks.mqtt import MqttLink
from edge_agent.sinks.spool import Spool
from edge_agent.tools import Toolbox


class LinkHost:
    """The ToolHost as the app would build it on a real MqttLink."""

    def __init__(self, link: MqttLink) -> None:
        self.link = link

    def publish(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        self.link.publish_now(topic, payload.encode(), retain=retain)

    def audit(self, record: dict[str, Any]) -> None:
        self.link.publish_result("tools/audit", record)

    async def snapshot(self, camera: str) -> dict[str, Any]:
        raise RuntimeError(f"no camera {camera} in this test")


def tools(prefix: str) -> list[ToolConfig]:
    light = {
        "name": "set_light",
        "description": "Switch a light.",
        "parameters": {
            "type": "object",
            "properties": {"room": {"type": "string"}, "state": {"type": "string", "enum": ["ON", "OFF"]}},
            "required": ["room", "state"],
        },
        "action": {"type": "mqtt_publish", "topic": f"{prefix}/{{room}}_light/set", "payload": '{"state": "{state}"}'},
    }
    temperature = {
        "name": "temperature",
        "description": "Outside temperature.",
        "action": {"type": "mqtt_read", "topic": f"{prefix}/sensor/outside"},
    }
    return [ToolConfig.model_validate(light), ToolConfig.model_validate(temperature)]


def has(topic: str) -> Any:
    return lambda messages: any(m.topic == topic for m in messages)


async def until(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def scenario(broker: Mosquitto, spool: Path) -> None:
    device, prefix = f"tools{uuid.uuid4().hex[:8]}", f"test/{uuid.uuid4().hex}"
    config = MqttConfig(host=broker.host, port=broker.port, keepalive=5, reconnect_max_s=1, client_id=device)
    link = MqttLink(config, device, Spool(spool))
    box = Toolbox(tools(prefix), LinkHost(link))
    audit_topic = link.topic("tools/audit")
    subscriber = Subscriber(broker.host, broker.port, [f"{prefix}/#", audit_topic, link.availability_topic])
    outside = f"{prefix}/sensor/outside"
    subscriber.client.publish(outside, json.dumps({"celsius": 21.5}), qos=1, retain=True).wait_for_publish(10)

    def record(message: Inbound) -> None:
        box.last_values.update(message.topic, message.payload)

    for topic in box.last_values.topics():
        link.subscribe(topic, record)
    link.start()
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        await asyncio.to_thread(subscriber.wait_for, has(link.availability_topic), 10)  # subscribed by now

        outcome = await box.call(ToolCall("set_light", {"room": "kitchen", "state": "ON"}), task="voice")
        assert outcome.status == "ok", outcome.error
        light = f"{prefix}/kitchen_light/set"
        got: list[Received] = await asyncio.to_thread(subscriber.wait_for, has(light), 10)
        assert [json.loads(m.payload) for m in got if m.topic == light] == [{"state": "ON"}]

        refused = await box.call(ToolCall("set_light", {"room": "a/b", "state": "ON"}), task="voice")
        assert refused.status == "refused"

        await until(lambda: box.last_values.get(outside) is not None)
        read = await box.call(ToolCall("temperature", {}), task="voice")
        assert read.status == "ok", read.error
        assert read.result["topic"] == outside and read.result["value"] == {"celsius": 21.5}
        assert 0 <= read.result["age_s"] < 10

        def audited(messages: list[Received]) -> bool:
            return sum(m.topic == audit_topic for m in messages) >= 3

        messages = await asyncio.to_thread(subscriber.wait_for, audited, 10)
        audits = [json.loads(m.payload) for m in messages if m.topic == audit_topic]
        assert [(a["id"], a["status"]) for a in audits] == [
            (outcome.id, "ok"),
            (refused.id, "refused"),
            (read.id, "ok"),
        ]
        assert not any(m.topic.startswith(f"{prefix}/a") for m in messages)  # nothing went to an injected topic
    finally:
        subscriber.client.publish(outside, b"", qos=1, retain=True).wait_for_publish(10)
        subscriber.close()
        await link.stop()


def test_tools_publish_and_read_through_the_real_broker(mosquitto: Mosquitto, tmp_path: Path) -> None:
    asyncio.run(scenario(mosquitto, tmp_path / "spool.db"))


async def failing_publishes(broker: Mosquitto, spool: Path) -> None:
    device, prefix = f"tools{uuid.uuid4().hex[:8]}", f"test/{uuid.uuid4().hex}"
    config = MqttConfig(host=broker.host, port=broker.port, keepalive=5, reconnect_max_s=1, client_id=device)
    link = MqttLink(config, device, Spool(spool))
    own = ToolConfig.model_validate(
        {
            "name": "own",
            "description": "Publishes into the node's own tree (a tool must not).",
            "action": {"type": "mqtt_publish", "topic": f"edge_agent/{device}/ask", "payload": "hi"},
        }
    )
    host = LinkToolHost(link, lambda _camera: None)
    box = Toolbox([*tools(prefix), own], host)
    light = ToolCall("set_light", {"room": "hall", "state": "ON"})
    link.start()
    try:
        await asyncio.wait_for(link.connected.wait(), 10)
        assert (await box.call(light, task="voice")).status == "ok"  # acknowledged by the broker

        forbidden = await box.call(ToolCall("own", {}), task="voice")
        assert forbidden.status == "error" and forbidden.error is not None
        assert forbidden.error.startswith(f"not published to edge_agent/{device}/ask: a tool may not publish to")

        link.client.disconnect()  # paho's socket closes before the link hears of it (the loop is not yielded to)
        deadline = time.monotonic() + 10
        while link.client.socket() is not None:
            assert time.monotonic() < deadline, "paho kept its socket"
            time.sleep(0.01)
        assert link.connected.is_set()
        lost = await box.call(light, task="voice")
        assert (lost.status, lost.error) == (
            "error",
            f"not published to {prefix}/hall_light/set: the MQTT client did not send it: "
            "The client is not currently connected. (queued by the client: it may still go out when the broker is "
            "back)",
        )
        assert lost.to_response().response == {"error": lost.error}  # what the model reads
        await until(lambda: not link.connected.is_set())
        away = await box.call(light, task="voice")
        assert away.error == f"not published to {prefix}/hall_light/set: the MQTT broker is not connected"
    finally:
        await link.stop()


def test_a_publish_that_is_not_sent_is_an_error_saying_why(mosquitto: Mosquitto, tmp_path: Path) -> None:
    asyncio.run(failing_publishes(mosquitto, tmp_path / "spool.db"))
