"""Questions sent while the node is reconnecting are not lost: with MQTT 5 the node resumes its session
(`mqtt.session_expiry_s`), so the broker keeps what arrives for it meanwhile. Real daemon, real mosquitto
restarted with persistence, the question published while the node is away."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from rig.broker import Mosquitto
from rig.daemon import Daemon
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]


def test_a_question_sent_during_a_reconnect_is_answered_after_it(
    make_broker: Callable[..., Mosquitto], write_config: Callable[..., Path], tmp_path: Path
) -> None:
    broker = make_broker(persistent=True)
    device = f"sess{uuid.uuid4().hex[:6]}"
    base, replies = f"edge_agent/{device}", f"replies/{device}"
    config = write_config(
        f"""
device: {{id: {device}}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp_path / "spool.db"}, discovery: false,
        keepalive: 5, reconnect_max_s: 8}}
model: {{path: {REPO / "models" / "tiny-gemma4"}, max_new_tokens: 4}}
"""
    )
    daemon = Daemon(config)
    try:
        daemon.wait_for_lines("model loaded")
        daemon.wait_for_lines("mqtt: connected")
        broker.stop()
        daemon.wait_for_lines("mqtt: disconnected", timeout_s=30)
        time.sleep(4)  # a few failed attempts: the node's next one is seconds away
        broker.start()
        asker = Subscriber(broker.host, broker.port, [f"{replies}/#"])
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ResponseTopic = f"{replies}/q1"
        body = json.dumps({"id": "q1", "question": "Is anyone there?"})
        asker.client.publish(f"{base}/ask", body, qos=1, properties=properties).wait_for_publish(10)
        sent = time.monotonic()
        asker.wait_for(lambda _: bool(asker.on(f"{replies}/q1")), timeout_s=60)
        (reply,) = [json.loads(p) for p in asker.on(f"{replies}/q1")]
        assert reply["id"] == "q1" and reply["status"] == "ok", reply
        reconnected = [t for t, line in daemon.lines if "mqtt: connected" in line][-1]
        assert reconnected > sent, "the node was back before the question: this run proves nothing"
        asker.close()
    finally:
        code = daemon.stop()
        print("\n".join(line for _, line in daemon.lines[-30:]))
    assert code == 0
