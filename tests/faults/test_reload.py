"""SIGHUP applies the whole change and forgets nothing it should keep: faults injected into the real daemon (tiny
model, real mosquitto, file microphone and camera). A held call survives an unrelated reload and runs when confirmed;
a rate window keeps counting; a removed `mqtt_read` topic is unsubscribed at the broker; a removed task's retained
answer, snapshot and Home Assistant entity are cleared, on reload and at the next start; a tool's publish that the
broker never acknowledges is an error for the model and the audit; deep JSON costs one log line."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
VOICE = REPO / "deploy" / "demo" / "voice.wav"
DOOR = {"type": "object", "properties": {"state": {"type": "string", "enum": ["OPEN", "CLOSE"]}}, "required": ["state"]}
LIGHT = {"type": "object", "properties": {"state": {"type": "string", "enum": ["ON", "OFF"]}}, "required": ["state"]}


def voice_config(broker: Mosquitto, tmp_path: Path, device: str, *, door: str, reads: str, light: str) -> str:
    """A voice task that must call `garage_door` (held for confirmation, at most once a minute)."""
    return f"""
        device: {{id: {device}}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}, discovery: false}}
        model: {{path: {MODEL}, max_new_tokens: 16}}
        microphone: {{file: {VOICE}, loop: true, vad: {{mode: triggered, listen_timeout_s: 8}}}}
        health: {{interval_s: 1}}
        tasks:
          - {{kind: voice, name: voice, tools: [garage_door], tool_choice: required, transcribe: false, max_steps: 1}}
        tools:
          - name: garage_door
            description: Open or close the garage door.
            parameters: {json.dumps(DOOR)}
            action: {{type: mqtt_publish, topic: {door}, payload: '{{state}}'}}
            confirm: true
            rate_limit_per_min: 1
          - name: kitchen_light
            description: {light}
            parameters: {json.dumps(LIGHT)}
            action: {{type: mqtt_publish, topic: zigbee2mqtt/kitchen_light/set, payload: '{{state}}'}}
          - name: porch_state
            description: Whether the porch light is on.
            action: {{type: mqtt_read, topic: porch/light}}
        {reads}
        agent: {{ask_tools: false, confirm_timeout_s: 600}}
        """


DOOR_STATE = """
          - name: door_state
            description: Whether the garage door is open.
            action: {type: mqtt_read, topic: garage/door}
"""


def payloads(client: Subscriber, topic: str) -> list[Any]:
    return [json.loads(body) for body in client.on(topic) if body]


def audits(watch: Subscriber, base: str, status: str) -> list[dict[str, Any]]:
    return [a for a in payloads(watch, f"{base}/tools/audit") if a["status"] == status]


def press_listen(watch: Subscriber, base: str, status: str) -> dict[str, Any]:
    """Press Listen: the voice task calls garage_door; its next audit record with `status`."""
    before, deadline = len(audits(watch, base, status)), time.monotonic() + 90
    while len(audits(watch, base, status)) == before:  # pressed again when the gate heard too short a snippet
        assert time.monotonic() < deadline, f"no {status} audit record"
        watch.client.publish(f"{base}/listen", "PRESS", qos=1).wait_for_publish(10)
        with contextlib.suppress(AssertionError):
            watch.wait_for(lambda _: len(audits(watch, base, status)) > before, timeout_s=12)
    record = audits(watch, base, status)[-1]
    assert record["tool"] == "garage_door"
    return record


def read_values(watch: Subscriber, base: str) -> int | None:
    reports = payloads(watch, f"{base}/health")
    return reports[-1].get("agent", {}).get("mqtt_read_values") if reports else None


def unsubscribed_at_the_broker(broker: Mosquitto, topic: str, timeout_s: float = 10.0) -> bool:
    """The broker's log ("<client> <qos> <topic>" on subscribe, "<client> <topic>" on unsubscribe) ends, for `topic`,
    with an unsubscribe (the log file is written with a delay)."""
    deadline, pattern = time.monotonic() + timeout_s, re.compile(rf": \S+( [012])? {re.escape(topic)}$")
    while True:
        text = (broker.workdir / "mosquitto.log").read_text()
        entries = [found for found in map(pattern.search, text.splitlines()) if found]
        if entries and entries[-1].group(1) is None:
            return True
        assert time.monotonic() < deadline, f"the broker did not see {topic} unsubscribed:\n{text[-2000:]}"
        time.sleep(0.2)


def health_reports_after(watch: Subscriber, base: str, count: int) -> None:
    """Wait for `count` more health reports (one a second)."""
    seen = len(watch.on(f"{base}/health"))
    watch.wait_for(lambda _: len(watch.on(f"{base}/health")) >= seen + count, timeout_s=30)


def test_a_reload_keeps_held_calls_and_rate_windows_and_unsubscribes_removed_read_topics(
    make_broker: Callable[..., Mosquitto], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    broker = make_broker("log_type subscribe\nlog_type unsubscribe\n")
    base, device = "edge_agent/reload1", "reload1"
    before = dict(door="garage/door/set", reads=DOOR_STATE, light="Switch the kitchen light.")
    config = write_config(voice_config(broker, tmp_path, device, **before))
    watch = Subscriber(broker.host, broker.port, ["#"])
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("model loaded")
        watch.wait_for(lambda _: watch.on(f"{base}/availability")[-1:] == [b"online"], timeout_s=60)
        watch.client.publish("garage/door", b"open", qos=1).wait_for_publish(10)
        watch.wait_for(lambda _: read_values(watch, base) == 1)  # the node reads garage/door
        held = press_listen(watch, base, "pending_confirmation")["id"]

        # An unrelated change (another tool's description) and a read tool removed, applied by SIGHUP.
        write_config(voice_config(broker, tmp_path, device, **{**before, "reads": "", "light": "Kitchen light."}))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_lines("reload: 1 task(s), 3 tool(s); model kept")
        (line,) = daemon.wait_for_lines("tools: unsubscribed from", timeout_s=5)
        assert line[1].endswith("tools: unsubscribed from garage/door (no tool reads it any more)")
        assert unsubscribed_at_the_broker(broker, "garage/door")

        # A value on the removed topic no longer reaches the node; one on a topic still read does.
        counted = read_values(watch, base)
        watch.client.publish("garage/door", b"closed", qos=1).wait_for_publish(10)
        watch.client.publish("porch/light", b"on", qos=1).wait_for_publish(10)
        watch.wait_for(lambda _: read_values(watch, base) == (counted or 0) + 1)
        health_reports_after(watch, base, 2)
        assert read_values(watch, base) == (counted or 0) + 1

        # The call held before the reload is still held: confirming it runs it, once.
        watch.client.publish(f"{base}/tools/confirm", json.dumps({"id": held}).encode(), qos=1)
        watch.wait_for(lambda _: bool(watch.on("garage/door/set")), timeout_s=30)
        watch.wait_for(lambda _: any(a["id"] == held for a in audits(watch, base, "ok")))
        assert not audits(watch, base, "cancelled")

        # The rate window (one call a minute) still counts the call made before the reload.
        limited = press_listen(watch, base, "rate_limited")
        assert "at most 1 calls a minute to 'garage_door'" in limited["error"]
        assert len(audits(watch, base, "pending_confirmation")) == 1 and watch.on("garage/door/set")[1:] == []

        # 100000 '[' on the confirmation topic and on a read topic: one log line, no traceback, the node stays up.
        deep = b"[" * 100_000
        watch.client.publish(f"{base}/tools/confirm", deep, qos=1).wait_for_publish(10)
        watch.client.publish("porch/light", deep, qos=1).wait_for_publish(10)
        watch.wait_for(lambda _: read_values(watch, base) == (counted or 0) + 2)
        (ignored,) = daemon.wait_for_lines("tools: ignored a confirmation", timeout_s=10)
        assert ignored[1].endswith(
            f"on {base}/tools/confirm: 100000 bytes, at most 256; 1 ignored so far (health.agent.confirm_rejected)"
        )
        assert daemon.alive and not any("Traceback" in text for _, text in daemon.lines)
    except AssertionError:
        print("\n".join(text for _, text in daemon.lines[-60:]))
        raise
    finally:
        assert daemon.stop() == 0
        watch.close()


def watch_config(broker: Mosquitto, tmp_path: Path, camera: Path, device: str, *, gate: bool) -> str:
    """Two watch tasks on a file camera; `gate` answers every second and publishes its frame."""
    gate_task = """
          - {kind: watch, name: gate, camera: yard, question: 'Is the gate closed?', on_motion: false, interval_s: 1,
             cooldown_s: 0, snapshot: true}
    """
    return f"""
        device: {{id: {device}}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}}}
        model: {{path: {MODEL}, max_new_tokens: 8, image_budget: 70}}
        cameras:
          - {{name: yard, source: {camera}, fps: 10}}
        tasks:
          - {{kind: watch, name: door, camera: yard, question: 'Is the door open?', on_motion: false, interval_s: 3600}}
        {gate_task if gate else ""}
        """


def retained_under(broker: Mosquitto, base: str) -> dict[str, bytes]:
    """What a new client is given, retained, under `<base>/task/#` (complete once the retained `availability`,
    subscribed after it in the same SUBSCRIBE, has come)."""
    fresh = Subscriber(broker.host, broker.port, [f"{base}/task/#", f"{base}/availability"])
    try:
        fresh.wait_for(lambda messages: any(m.topic == f"{base}/availability" for m in messages), timeout_s=30)
        return {m.topic: m.payload for m in fresh.messages if m.retain and m.topic != f"{base}/availability"}
    finally:
        fresh.close()


def test_a_removed_task_leaves_no_retained_answer_or_entity_after_a_reload_or_a_restart(
    make_broker: Callable[..., Mosquitto], write_config: Callable[..., Path], tmp_path: Path, video_file: Path
) -> None:
    broker = make_broker()
    device = "reload2"
    base, discovery = f"edge_agent/{device}", f"homeassistant/device/{device}/config"
    gate = [f"{base}/task/gate", f"{base}/task/gate/snapshot"]
    config = write_config(watch_config(broker, tmp_path, video_file, device, gate=True))
    watch = Subscriber(broker.host, broker.port, ["#"])
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("model loaded")
        watch.wait_for(lambda _: all(watch.on(topic) for topic in gate), timeout_s=60)
        assert set(gate) <= set(retained_under(broker, base))  # the node's own answer and frame, retained

        write_config(watch_config(broker, tmp_path, video_file, device, gate=False))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_lines("reload: 1 task(s), 0 tool(s)")
        (line,) = daemon.wait_for_lines("tasks: cleared the retained", timeout_s=10)
        assert f"{base}/task/gate, {base}/task/gate/availability, {base}/task/gate/snapshot" in line[1]
        watch.wait_for(lambda _: all(watch.on(topic)[-1:] == [b""] for topic in gate), timeout_s=30)
        time.sleep(3)  # a gate answer in progress at the reload would land in these seconds
        assert not any(topic.startswith(f"{base}/task/gate") for topic in retained_under(broker, base))
        announced = [json.loads(body) for body in watch.on(discovery)]
        assert "task_gate" not in announced[-1]["cmps"]
        assert any(cmps["cmps"].get("task_gate") == {"p": "binary_sensor"} for cmps in announced)  # HA removes it

        # The task comes back, answers again, and leaves the config while the node is down.
        write_config(watch_config(broker, tmp_path, video_file, device, gate=True))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_lines("reload: 2 task(s), 0 tool(s)")
        watch.wait_for(lambda _: all(watch.on(topic)[-1:] not in ([], [b""]) for topic in gate), timeout_s=60)
        assert daemon.stop() == 0
        assert set(gate) <= set(retained_under(broker, base))
        write_config(watch_config(broker, tmp_path, video_file, device, gate=False))
        daemon = Daemon(config)
        daemon.wait_for_lines("tasks: cleared the retained", timeout_s=60)
        daemon.wait_for_lines("model loaded")
        assert not any(topic.startswith(f"{base}/task/gate") for topic in retained_under(broker, base))
        assert daemon.alive and not any("Traceback" in text for _, text in daemon.lines)
    except AssertionError:
        print("\n".join(text for _, text in daemon.lines[-60:]))
        raise
    finally:
        daemon.stop()
        watch.close()


def test_a_tool_publish_the_broker_never_takes_is_an_error_for_the_model_and_the_audit(
    make_broker: Callable[..., Mosquitto], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    broker = make_broker()
    base, device = "edge_agent/reload3", "reload3"
    text = voice_config(broker, tmp_path, device, door="garage/door/set", reads="", light="Switch the kitchen light.")
    text = text.replace("mode: triggered, listen_timeout_s: 8", "mode: always").replace(
        "[garage_door]", "[kitchen_light]"
    )
    config = write_config(text)
    watch = Subscriber(broker.host, broker.port, ["#"])
    daemon = Daemon(config)
    assert broker.process is not None
    try:
        daemon.wait_for_lines("model loaded")
        watch.wait_for(lambda _: bool(audits(watch, base, "ok")), timeout_s=90)  # the looped voice calls the light
        assert audits(watch, base, "ok")[0]["tool"] == "kitchen_light" and watch.on("zigbee2mqtt/kitchen_light/set")

        # A hung broker (stopped, its socket open): the publish is never acknowledged.
        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            (line, *_) = daemon.wait_for_lines("tools: nothing published to zigbee2mqtt/kitchen_light/", timeout_s=60)
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        assert line[1].endswith("the broker did not acknowledge it within 5 s (it may still be delivered)")
        watch.wait_for(lambda _: bool(audits(watch, base, "error")), timeout_s=60)  # the audit was spooled
        (failed, *_) = audits(watch, base, "error")
        assert failed["error"] == (
            "not published to zigbee2mqtt/kitchen_light/set: the broker did not acknowledge it within 5 s "
            "(it may still be delivered)"
        )

        def told(_: object) -> list[dict[str, Any]]:  # the calls as the model was given them
            replies = payloads(watch, f"{base}/task/voice")
            return [c for r in replies for c in r.get("tool_calls", []) if c["id"] == failed["id"]]

        watch.wait_for(told, timeout_s=30)
        assert [(c["status"], c["result"]) for c in told(None)] == [("error", {"error": failed["error"]})]

        assert daemon.alive and not any("Traceback" in text for _, text in daemon.lines)
    except AssertionError:
        print("\n".join(text for _, text in daemon.lines[-60:]))
        raise
    finally:
        daemon.stop()
        watch.close()
