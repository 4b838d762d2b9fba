"""The agent end to end: tiny model, real broker, file camera, ALSA-fed microphone, watch/voice/ask, SIGTERM, SIGHUP."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import psutil
import pytest
import soxr
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.speech import speak, to_int16
from rig.subscriber import Subscriber
from test_mqtt_ask import Requester

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
LIGHT = {"type": "object", "properties": {"state": {"type": "string", "enum": ["ON", "OFF"]}}, "required": ["state"]}
COUNT = {"type": "integer", "minimum": 0, "maximum": 5}


def agent_config(broker: Mosquitto, tmp_path: Path, camera: Path, extra: str = "", tasks: str = "") -> str:
    return f"""
        device: {{id: agent1}}
        mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}, ask_queue: 4}}
        model: {{path: {MODEL}, max_new_tokens: 16, image_budget: 70}}
        cameras:
          - {{name: yard, source: {camera}, fps: 10}}
        tasks:
          - kind: watch
            name: door
            camera: yard
            question: Is the door open?
            cooldown_s: 1
            snapshot: true
          - kind: watch
            name: people
            camera: yard
            question: How many people are in the yard?
            answer: {json.dumps(COUNT)}
            on_motion: false
            interval_s: 2
        {tasks}
        tools:
          - name: light
            description: Switch the light.
            parameters: {json.dumps(LIGHT)}
            action: {{type: mqtt_publish, topic: test/light/set, payload: '{{"state": "{{state}}"}}'}}
          - name: light_state
            description: Whether the light is on.
            action: {{type: mqtt_read, topic: test/light}}
        {extra}
        """


def speech_at_48k(tmp_path: Path) -> np.ndarray:
    voice = speak("Turn on the light.", tmp_path)
    clip = np.concatenate([np.zeros(16000, np.float32), voice, np.zeros(32000, np.float32)])
    looped = np.tile(clip, 2)  # ALSA's file plugin reads faster than real time: a few utterances at once
    return to_int16(soxr.resample(looped, 16000, 48000))


def payloads(subscriber: Subscriber, topic: str) -> list[dict[str, Any]]:
    return [json.loads(body) for body in subscriber.on(topic)]


def test_watch_voice_and_ask_end_to_end(
    write_config: Callable[[str], Path],
    mosquitto: Mosquitto,
    tmp_path: Path,
    video_file: Path,
    alsa_capture: Callable[[np.ndarray], dict[str, str]],
) -> None:
    env = alsa_capture(speech_at_48k(tmp_path))
    voice_task = """
          - kind: voice
            name: voice
            tools: [light]
            tool_choice: required
            transcribe: true
        """
    config = write_config(
        agent_config(mosquitto, tmp_path, video_file, "microphone: {device: default}", tasks=voice_task)
    )
    base = "edge_agent/agent1"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/#", "test/#"])
    requester = Requester(mosquitto)
    daemon = Daemon(config, env=env)
    try:
        daemon.wait_for_lines("model loaded")
        # watch on motion: schema-valid answers with the context every result carries, and the snapshot it used
        subscriber.wait_for(lambda _: any(p["trigger"] == "motion" for p in payloads(subscriber, f"{base}/task/door")))
        door = next(p for p in payloads(subscriber, f"{base}/task/door") if p["trigger"] == "motion")
        assert isinstance(door["value"], bool)
        assert door["camera"] == "yard" and door["model"] == "tiny-gemma4 (q4)" and door["degradation_level"] == 0
        assert door["snapshot_id"].startswith("yard-") and door["timings_ms"]["total_ms"] > 0
        snapshot = subscriber.on(f"{base}/task/door/snapshot")[-1]
        assert cv2.imdecode(np.frombuffer(snapshot, np.uint8), cv2.IMREAD_COLOR) is not None
        subscriber.wait_for(lambda _: bool(subscriber.on(f"{base}/task/people")))
        for answer in payloads(subscriber, f"{base}/task/people"):
            jsonschema.validate(answer["value"], COUNT)
            assert answer["trigger"] == "timer"
        # voice: the utterance becomes a call whose arguments pass the schema, and its MQTT action is seen
        subscriber.wait_for(lambda _: bool(subscriber.on("test/light/set")), timeout_s=60)
        assert json.loads(subscriber.on("test/light/set")[0])["state"] in ("ON", "OFF")
        subscriber.wait_for(lambda _: bool(subscriber.on(f"{base}/task/voice")))
        voice = payloads(subscriber, f"{base}/task/voice")[0]
        call = voice["tool_calls"][0]
        assert call["tool"] == "light" and call["status"] == "ok" and voice["trigger"] == "voice"
        # one encoding of the clip serves the transcript, the call and the answer; the prefix is prefilled once
        tokens = voice["tokens"]
        assert isinstance(voice["transcript"], str) and tokens["encoded_media"] == 1
        assert tokens["reused"] > 0 and tokens["prefilled"] <= 1.1 * tokens["context"], tokens
        jsonschema.validate(call["arguments"], LIGHT)
        audits = payloads(subscriber, f"{base}/tools/audit")
        assert any(a["id"] == call["id"] and a["status"] == "ok" for a in audits)
        # ask: the reply comes back on the response topic with the correlation data and the context
        requester.ask(f"{base}/ask", json.dumps({"question": "What do you see?", "camera": "yard"}).encode(), b"c-1")
        requester.wait(lambda: b"c-1" in requester.replies)
        reply = requester.replies[b"c-1"][0]
        assert reply["status"] == "ok" and isinstance(reply["answer"], str)
        assert reply["trigger"] == "ask" and reply["camera"] == "yard" and reply["snapshot_id"]
        # SIGTERM while the model is busy: out within 5 s, `offline` published
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        assert daemon.process.wait(timeout=10) == 0
        assert time.monotonic() - started < 5.0
        subscriber.wait_for(lambda _: subscriber.on(f"{base}/availability")[-1:] == [b"offline"])
    finally:
        daemon.stop()
        print("\n".join(line for _, line in daemon.lines[-60:]))  # shown when the test fails
        requester.close()
        subscriber.close()


def test_a_flood_of_asks_gets_one_reply_each_busy_beyond_the_queue_and_flat_memory(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, tmp_path: Path, video_file: Path
) -> None:
    config = write_config(agent_config(mosquitto, tmp_path, video_file))
    requester = Requester(mosquitto)
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("model loaded")
        process = psutil.Process(daemon.process.pid)
        rss = []
        for round_ in range(3):
            for i in range(100):
                body = json.dumps({"question": f"Question {i}?", "camera": "yard"}).encode()
                requester.ask("edge_agent/agent1/ask", body, f"{round_}-{i}".encode(), wait=False)
            requester.wait(lambda n=round_: all(f"{n}-{i}".encode() in requester.replies for i in range(100)), 120)
            rss.append(process.memory_info().rss / 2**20)
        statuses = [reply["status"] for replies in requester.replies.values() for reply in replies]
        assert len(statuses) == 300, "exactly one reply per ask"
        assert statuses.count("busy") > 0 and statuses.count("ok") > 0
        assert set(statuses) <= {"ok", "busy"}
        print(f"RSS after each round of 100 asks: {[round(r, 1) for r in rss]} MB; busy {statuses.count('busy')}/300")
        assert rss[2] - rss[1] < 25, f"memory grew under load: {rss} MB"
    finally:
        assert daemon.stop() == 0
        requester.close()


def test_sighup_reloads_tasks_and_tools_without_reloading_the_model(
    write_config: Callable[[str], Path], mosquitto: Mosquitto, tmp_path: Path, video_file: Path
) -> None:
    config = write_config(agent_config(mosquitto, tmp_path, video_file))
    base = "edge_agent/agent1"
    subscriber = Subscriber(mosquitto.host, mosquitto.port, [f"{base}/task/#", "homeassistant/device/agent1/config"])
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("model loaded")
        extra_task = """
          - kind: watch
            name: gate
            camera: yard
            question: Is the gate closed?
            on_motion: false
            interval_s: 1
        """
        write_config(agent_config(mosquitto, tmp_path, video_file, tasks=extra_task))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_lines("reload: 3 task(s), 2 tool(s); model kept")
        subscriber.wait_for(lambda _: bool(subscriber.on(f"{base}/task/gate")))
        discovery = json.loads(subscriber.on("homeassistant/device/agent1/config")[-1])
        assert "task_gate" in discovery["cmps"]
        # a broken file is refused with its line, and the node goes on with what it had
        config.write_text(config.read_text().replace("interval_s: 1", "interval_s: -1"))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_lines("reload refused")
        assert any("interval_s" in line for _, line in daemon.lines)
        # a change to the model section reloads it
        write_config(agent_config(mosquitto, tmp_path, video_file).replace("max_new_tokens: 16", "max_new_tokens: 8"))
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_lines("model reloading")
        daemon.wait_for_lines("model loaded", count=2)
        assert daemon.alive
    finally:
        assert daemon.stop() == 0
        subscriber.close()


@pytest.fixture(autouse=True)
def _import_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
