"""The node is never a confused deputy: faults injected into the real daemon (tiny model, real mosquitto with
logins and ACLs, file microphone). A held call is not confirmed by the node's own reply, replies never go to a
foreign topic, junk confirmations cost a counter (no audit, no spool write), and read values are bounded."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rig.binaries import require
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
VOICE = REPO / "deploy" / "demo" / "voice.wav"
DOOR = {"type": "object", "properties": {"state": {"type": "string", "enum": ["OPEN", "CLOSE"]}}, "required": ["state"]}
LIGHT = {"type": "object", "properties": {"state": {"type": "string", "enum": ["ON", "OFF"]}}, "required": ["state"]}
ACL = """
user node
topic readwrite #
user admin
topic readwrite #
user asker
topic write edge_agent/+/ask
topic read edge_agent/+/tools/audit
topic read edge_agent/+/answer
topic read replies/asker/#
"""


def node_config(
    broker: Mosquitto, tmp_path: Path, device: str, prefix: str, voice_tools: str, *, extra: str = ""
) -> str:
    login = ", username: node, password: node-pw" if "password_file" in broker.extra_config else ""
    return f"""
        device: {{id: {device}}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}, discovery: false{login}}}
        model: {{path: {MODEL}, max_new_tokens: 16}}
        microphone: {{file: {VOICE}, loop: true, vad: {{mode: triggered, listen_timeout_s: 8}}}}
        health: {{interval_s: 1}}
        tasks:
          - {{kind: voice, name: voice, tools: {voice_tools}, tool_choice: required, transcribe: false, max_steps: 1}}
        tools:
          - name: garage_door
            description: Open or close the garage door.
            parameters: {json.dumps(DOOR)}
            action: {{type: mqtt_publish, topic: {prefix}garage/door/set, payload: '{{state}}'}}
            confirm: true
          - name: kitchen_light
            description: Switch the kitchen light.
            parameters: {json.dumps(LIGHT)}
            action: {{type: mqtt_publish, topic: {prefix}zigbee2mqtt/kitchen_light/set, payload: '{{state}}'}}
          - name: door_state
            description: Whether the garage door is open.
            action: {{type: mqtt_read, topic: {prefix}garage/door, max_chars: 64}}
        agent: {{ask_tools: false, confirm_timeout_s: 600{extra}}}
        """


def publish(
    client: Subscriber,
    topic: str,
    payload: bytes,
    *,
    response_topic: str | None = None,
    user: tuple[tuple[str, str], ...] = (),
) -> None:
    properties = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        properties.ResponseTopic = response_topic
        properties.CorrelationData = uuid.uuid4().bytes
    for name, value in user:
        properties.UserProperty = (name, value)  # paho appends user properties
    client.client.publish(topic, payload, qos=1, properties=properties).wait_for_publish(10)


def payloads(client: Subscriber, topic: str) -> list[Any]:
    return [json.loads(body) for body in client.on(topic) if body]


def hold_a_call(watch: Subscriber, base: str) -> str:
    """Press Listen: the voice task must call the confirm-only tool; the call's id from the audit trail."""
    held_before = len([a for a in payloads(watch, f"{base}/tools/audit") if a["status"] == "pending_confirmation"])
    watch.client.publish(f"{base}/listen", "PRESS", qos=1).wait_for_publish(10)

    def held(_: object) -> bool:
        audits = [a for a in payloads(watch, f"{base}/tools/audit") if a["status"] == "pending_confirmation"]
        return len(audits) > held_before

    watch.wait_for(held, timeout_s=90)
    audit = [a for a in payloads(watch, f"{base}/tools/audit") if a["status"] == "pending_confirmation"][-1]
    assert audit["tool"] == "garage_door"
    return str(audit["id"])


def health(watch: Subscriber, base: str) -> dict[str, Any]:
    reports = payloads(watch, f"{base}/health")
    return reports[-1] if reports else {}


def spool_seq(path: Path) -> int:
    """How many results were ever written to the spool (SQLite's AUTOINCREMENT counter)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    return int(row[0]) if row else 0


def acl_broker(make_broker: Callable[..., Mosquitto], tmp_path: Path) -> Mosquitto:
    passwords, acl = tmp_path / "passwords", tmp_path / "acl"
    for n, user in enumerate(("node", "admin", "asker")):
        create = ["-c"] if n == 0 else []
        subprocess.run(
            [str(require("mosquitto_passwd")), "-b", *create, str(passwords), user, f"{user}-pw"], check=True
        )
    acl.write_text(ACL)
    return make_broker(f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n")


def test_the_node_never_confirms_for_an_asker_never_replies_to_foreign_topics_and_junk_costs_nothing(
    make_broker: Callable[..., Mosquitto], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    broker = acl_broker(make_broker, tmp_path)
    base, garage, light = "edge_agent/trust1", "garage/door/set", "zigbee2mqtt/kitchen_light/set"
    config = write_config(node_config(broker, tmp_path, "trust1", "", "[garage_door]"))
    watch = Subscriber(broker.host, broker.port, ["#"], auth=("admin", "admin-pw"))  # sees every topic
    asker = Subscriber(broker.host, broker.port, [f"{base}/answer", "replies/asker/#"], auth=("asker", "asker-pw"))
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("model loaded")
        watch.wait_for(lambda _: watch.on(f"{base}/availability")[-1:] == [b"online"], timeout_s=60)
        held = hold_a_call(watch, base)

        # The bypass of issue 16: an asker (who may publish on .../ask only) names the confirm topic as the
        # response topic of a question carrying the held call's id. Then foreign topics: a tool's, a device's, HA's.
        confirm = f"{base}/tools/confirm"
        publish(asker, f"{base}/ask", json.dumps({"id": held, "question": "hi"}).encode(), response_topic=confirm)
        foreign = [light, "zigbee2mqtt/bridge/request/permit_join", "homeassistant/switch/x/set", f"{base}/ask"]
        for n, topic in enumerate(foreign):
            publish(asker, f"{base}/ask", json.dumps({"id": f"f{n}", "question": "hi"}).encode(), response_topic=topic)
        publish(asker, f"{base}/ask", b'{"id": "fine", "question": "Open?"}', response_topic="replies/asker/1")
        asker.wait_for(lambda _: bool(asker.on("replies/asker/1")), timeout_s=60)  # allowed: still answered

        refusals = {reply["id"]: reply for reply in payloads(asker, f"{base}/answer")}
        assert set(refusals) == {held, "f0", "f1", "f2", "f3"}
        assert all(reply["status"] == "error" for reply in refusals.values())
        assert refusals[held]["error"] == (
            f"response_topic '{confirm}' refused: the node never replies into edge-agent topics (edge_agent/)"
        )
        assert "a topic of a tool or of the node (zigbee2mqtt/kitchen_light/set)" in refusals["f0"]["error"]
        assert "must start with one of mqtt.reply_topic_prefixes ('replies/')" in refusals["f1"]["error"]
        assert "Home Assistant discovery (homeassistant/)" in refusals["f2"]["error"]
        (fine,) = payloads(asker, "replies/asker/1")
        assert fine["id"] == "fine" and fine["status"] == "ok"
        for topic in [confirm, garage, *foreign[:3]]:
            assert watch.on(topic) == [], f"the node published to {topic}"
        assert len(daemon.wait_for_lines("the refusal went to", timeout_s=1)) == 1  # one line, not five

        # Junk on tools/confirm (from a login allowed there): counted, never audited, never spooled.
        seq, audits = spool_seq(tmp_path / "spool.db"), len(watch.on(f"{base}/tools/audit"))
        junk = [
            b"{not json",
            b"[" * 40000,
            b"x" * 1_000_000,
            json.dumps({"id": "a" * 65}).encode(),
            json.dumps({"id": held, "question": "hi"}).encode(),  # what the node's reply used to look like
            json.dumps({"id": held, "status": "ok", "answer": None}).encode(),
            b'{"id": "no-such-call"}',
            b"",
            b'{"id": 5}',
        ]
        flood = [junk[n % len(junk)] for n in range(2000) if n % len(junk) not in (1, 2) or n < 40]
        for payload in flood:
            watch.client.publish(confirm, payload, qos=1)
        watch.wait_for(lambda _: health(watch, base).get("agent", {}).get("confirm_rejected") == len(flood), 60)
        assert spool_seq(tmp_path / "spool.db") == seq  # not one write
        assert len(watch.on(f"{base}/tools/audit")) == audits and watch.on(garage) == []
        assert health(watch, base)["spool_dropped"] == 0
        (line,) = daemon.wait_for_lines("tools: ignored a confirmation", timeout_s=1)  # one line a minute
        assert f"on {confirm}: " in line[1] and "(health.agent.confirm_rejected)" in line[1]
        assert not any("Traceback" in text for _, text in daemon.lines)

        # The owner's confirmation still runs the held call, and its audit record is delivered.
        watch.client.publish(confirm, json.dumps({"id": held}).encode(), qos=1)
        watch.wait_for(lambda _: bool(watch.on(garage)), timeout_s=30)
        assert watch.on(garage)[0] in (b"OPEN", b"CLOSE")
        watch.wait_for(
            lambda _: any(a["id"] == held and a["status"] == "ok" for a in payloads(watch, f"{base}/tools/audit"))
        )
        assert daemon.alive
    finally:
        code = daemon.stop()
        print("\n".join(line for _, line in daemon.lines[-40:]))  # shown when the test fails
        watch.close()
        asker.close()
    assert code == 0


def test_confirmations_restricted_to_a_topic_and_a_user_property_and_read_values_bounded(
    mosquitto: Mosquitto, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    device, prefix = f"trust{uuid.uuid4().hex[:6]}", f"test-{uuid.uuid4().hex[:8]}/"
    base, garage, admin = f"edge_agent/{device}", f"{prefix}garage/door/set", f"admin/{prefix}confirm"
    watch = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#", f"{prefix}#", "admin/#"])
    huge = json.dumps({"doors": [{"name": "garage", "open": True, "note": "x" * 100}] * 1000}).encode()
    watch.client.publish(f"{prefix}garage/door", huge, qos=1, retain=True).wait_for_publish(10)
    config = write_config(node_config(mosquitto, tmp_path, device, prefix, "[door_state]"))
    daemon = Daemon(config, env={**os.environ, "CONFIRM_TOKEN": "s3cret token"})
    try:
        daemon.wait_for_lines("model loaded")
        watch.wait_for(lambda _: watch.on(f"{base}/availability")[-1:] == [b"online"], timeout_s=60)
        # mqtt_read: a 100 kB value reaches the model as 64 characters and a marker
        watch.client.publish(f"{base}/listen", "PRESS", qos=1).wait_for_publish(10)
        watch.wait_for(lambda _: bool(watch.on(f"{base}/task/voice")), timeout_s=90)
        calls = payloads(watch, f"{base}/task/voice")[0]["tool_calls"]  # the only tool; a random model may repeat it
        assert calls and all(call["tool"] == "door_state" and call["status"] == "ok" for call in calls)
        for call in calls:
            assert call["result"]["value"] == huge[:64].decode() + f"...[truncated: {len(huge)} bytes in all]"

        # SIGHUP: confirmations now only on an admin topic, with a user property whose value is a secret
        restricted = ", confirm_topic: " + admin + ", confirm_user_property: {x-confirm-token: '${CONFIRM_TOKEN}'}"
        write_config(node_config(mosquitto, tmp_path, device, prefix, "[garage_door]", extra=restricted))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_lines("reload: 1 task(s), 3 tool(s)")
        held = hold_a_call(watch, base)
        token = (("x-confirm-token", "s3cret token"),)
        publish(watch, f"{base}/tools/confirm", json.dumps({"id": held}).encode(), user=token)  # the old topic
        publish(watch, f"{base}/ask", b'{"id": "q", "question": "hi"}', response_topic=admin)  # the new one
        watch.wait_for(lambda _: any(r["id"] == "q" for r in payloads(watch, f"{base}/answer")))
        (refusal,) = [r for r in payloads(watch, f"{base}/answer") if r["id"] == "q"]
        assert f"response_topic '{admin}' refused: it is a topic of a tool or of the node ({admin})" == refusal["error"]
        publish(watch, admin, json.dumps({"id": held}).encode())  # no token
        publish(watch, admin, json.dumps({"id": held}).encode(), user=(("x-confirm-token", "guess"),))
        watch.wait_for(lambda _: health(watch, base).get("agent", {}).get("confirm_rejected") == 2, timeout_s=30)
        assert watch.on(garage) == [] and watch.on(admin) == [b'{"id": "' + held.encode() + b'"}'] * 2
        (line,) = daemon.wait_for_lines("tools: ignored a confirmation", timeout_s=1)
        assert f"on {admin}: no MQTT 5 user property 'x-confirm-token' with the configured value" in line[1]
        assert "s3cret" not in "\n".join(text for _, text in daemon.lines)

        publish(watch, admin, json.dumps({"id": held}).encode(), user=token)
        watch.wait_for(lambda _: bool(watch.on(garage)), timeout_s=30)
        assert daemon.alive
    finally:
        watch.client.publish(f"{prefix}garage/door", b"", qos=1, retain=True).wait_for_publish(10)
        code = daemon.stop()
        print("\n".join(line for _, line in daemon.lines[-40:]))
        watch.close()
    assert code == 0
