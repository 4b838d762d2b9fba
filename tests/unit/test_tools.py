"""The Toolbox: only declared tools run, arguments are checked first, limits, confirmation and the audit."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import pytest

from edge_agent.config import ToolConfig
from edge_agent.messages import ToolCall, ToolResponse
from edge_agent.tools import LastValues, Toolbox, ToolOutcome
from edge_agent.tools.templates import TemplateError, parse_template

T = TypeVar("T")
NOW = datetime(2025, 6, 2, 14, 30, 5, tzinfo=timezone(timedelta(hours=2), "CEST"))  # a Monday


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeHost:
    """Records what the tools asked of the outside world."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, int, bool]] = []
        self.audits: list[dict[str, Any]] = []
        self.snapshots: list[str] = []
        self.fail_publish = False

    def publish(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        if self.fail_publish:
            raise ConnectionError("broker away")
        self.published.append((topic, payload, qos, retain))

    def audit(self, record: dict[str, Any]) -> None:
        self.audits.append(record)

    async def snapshot(self, camera: str) -> dict[str, Any]:
        if camera == "broken":
            raise RuntimeError("camera failed")
        self.snapshots.append(camera)
        return {"snapshot_id": "s1", "camera": camera, "captured_at": 1.5}


LIGHT: dict[str, Any] = {
    "name": "set_light",
    "description": "Switch a light.",
    "parameters": {
        "type": "object",
        "properties": {
            "room": {"type": "string", "enum": ["kitchen", "hall"]},
            "state": {"type": "string", "enum": ["ON", "OFF"]},
            "brightness": {"type": "integer", "minimum": 0, "maximum": 255, "default": 128},
        },
        "required": ["room", "state"],
    },
    "action": {
        "type": "mqtt_publish",
        "topic": "zigbee2mqtt/{room}_light/set",
        "payload": '{"state": "{state}", "brightness": {brightness}}',
        "qos": 0,
    },
}


def tool(base: dict[str, Any] | None = None, **changes: Any) -> ToolConfig:
    return ToolConfig.model_validate({**(base or LIGHT), **changes})


def toolbox(*tools: ToolConfig, clock: Clock | None = None) -> tuple[Toolbox, FakeHost]:
    host = FakeHost()
    box = Toolbox(list(tools) or [tool()], host, clock=clock or Clock(), now=lambda: NOW)
    return box, host


def test_a_valid_call_publishes_the_templated_json_payload_on_the_templated_topic() -> None:
    box, host = toolbox()
    outcome = run(box.call(ToolCall("set_light", {"room": "kitchen", "state": "ON", "brightness": 30}), task="voice"))
    assert outcome.status == "ok" and outcome.error is None
    assert host.published == [("zigbee2mqtt/kitchen_light/set", '{"state": "ON", "brightness": 30}', 0, False)]
    assert outcome.to_response() == ToolResponse("set_light", {"published": True, "topic": host.published[0][0]})
    assert len(outcome.id) == 32 and outcome.task == "voice"
    assert json.loads(json.dumps(outcome.to_json()))["status"] == "ok"


def test_a_missing_optional_argument_takes_its_schema_default() -> None:
    box, host = toolbox()
    run(box.call(ToolCall("set_light", {"room": "hall", "state": "OFF"}), task="voice"))
    assert json.loads(host.published[0][1]) == {"state": "OFF", "brightness": 128}


def test_specs_list_declared_tools_only_and_a_task_may_restrict_them() -> None:
    clock_tool = tool({"name": "now", "description": "Time.", "action": {"type": "time"}})
    box, _ = toolbox(tool(), clock_tool)
    assert [spec.name for spec in box.specs()] == ["set_light", "now"]
    assert [spec.name for spec in box.specs(["now", "shell", "now"])] == ["now"]
    assert box.specs()[0].parameters == LIGHT["parameters"]


@pytest.mark.parametrize(
    ("call", "allowed", "needle"),
    [
        (ToolCall("shell", {"cmd": "rm -rf /"}), None, "no tool named 'shell'"),
        (ToolCall("set_light", {"room": "kitchen", "state": "ON"}), ["now"], "not allowed for task 'voice'"),
        (ToolCall("set_light", {"room": "garage", "state": "ON"}), None, "$.room: 'garage' is not one of"),
        (ToolCall("set_light", {"room": "hall", "state": "ON", "brightness": 999}), None, "$.brightness: 999"),
        (ToolCall("set_light", {"room": "hall"}), None, "'state' is a required property"),
        (ToolCall("set_light", {"room": "hall", "state": "ON", "brightness": "9"}), None, "is not of type 'integer'"),
    ],
)
def test_refused_calls_never_run_and_tell_the_model_why(call: ToolCall, allowed: list[str] | None, needle: str) -> None:
    box, host = toolbox()
    outcome = run(box.call(call, task="voice", allowed=allowed))
    assert outcome.status == "refused"
    assert outcome.error is not None and needle in outcome.error
    assert outcome.to_response() == ToolResponse(call.name, {"error": outcome.error})
    assert host.published == []
    assert [(a["status"], a["tool"], a["error"]) for a in host.audits] == [("refused", call.name, outcome.error)]


def test_json_payload_values_cannot_break_out_of_their_string() -> None:
    free = {**LIGHT, "parameters": {"type": "object", "properties": {"room": {"type": "string"}}}}
    box, host = toolbox(tool(free, action={"type": "mqtt_publish", "topic": "t/x", "payload": '{"name": "{room}"}'}))
    evil = 'x", "state": "ON'
    assert run(box.call(ToolCall("set_light", {"room": evil}), task="voice")).status == "ok"
    assert json.loads(host.published[0][1]) == {"name": evil}


def test_plain_payload_templates_put_strings_as_is_and_other_values_as_json() -> None:
    template = parse_template('turn {a} to {b} {c} {{literal}} {"x": 1}', {"a", "b", "c", "literal"}, where="t")
    assert not template.is_json
    assert (
        template.render({"a": "on", "b": [1, 2], "c": None, "literal": True})
        == 'turn on to [1, 2] null {true} {"x": 1}'
    )


def test_a_json_template_encodes_unquoted_strings_and_escapes_strings_in_text() -> None:
    template = parse_template('{"s": {v}, "t": "lamp {v} on", "n": {n}}', {"v", "n"}, where="t")
    assert template.is_json
    rendered = template.render({"v": 'a"b', "n": 2.5})
    assert json.loads(rendered) == {"s": 'a"b', "t": 'lamp a"b on', "n": 2.5}


@pytest.mark.parametrize("room", ["a/b", "+", "#", "x\0y", ""])
def test_values_that_would_change_the_topic_are_refused(room: str) -> None:
    free = {**LIGHT, "parameters": {"type": "object", "properties": {"room": {"type": "string"}}}}
    box, host = toolbox(tool(free, action={"type": "mqtt_publish", "topic": "home/{room}/set", "payload": "ON"}))
    outcome = run(box.call(ToolCall("set_light", {"room": room}), task="voice"))
    assert outcome.status == "refused" and "cannot be used in a topic" in (outcome.error or "")
    assert host.published == []


def test_a_placeholder_naming_no_parameter_is_a_config_error_naming_the_tool() -> None:
    bad = {**LIGHT["action"], "payload": '{"state": "{colour}"}'}
    with pytest.raises(ValueError, match=r"tool 'set_light': payload: placeholder '\{colour\}'"):
        toolbox(tool(action=bad))
    with pytest.raises(ValueError, match="tool 'set_light': topic"):
        toolbox(tool(action={**LIGHT["action"], "topic": "home/{where}/set"}))
    with pytest.raises(TemplateError, match="argument 'x' is needed"):
        parse_template("{x}", {"x"}, where="t").render({})


def test_duplicate_tool_names_are_a_config_error() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        toolbox(tool(), tool())


def test_the_rate_limit_refuses_calls_beyond_it_in_a_sliding_minute() -> None:
    clock = Clock()
    box, host = toolbox(tool(rate_limit_per_min=2), clock=clock)
    call = ToolCall("set_light", {"room": "hall", "state": "ON"})
    statuses = []
    for step in (0, 10, 20, 50.5, 60.5, 70.5):
        clock.t = 1000.0 + step
        statuses.append(run(box.call(call, task="voice")).status)
    assert statuses == ["ok", "ok", "rate_limited", "rate_limited", "ok", "ok"]
    assert len(host.published) == 4
    assert [a["status"] for a in host.audits] == statuses
    limited = next(a for a in host.audits if a["status"] == "rate_limited")
    assert "at most 2 calls a minute" in limited["error"]


def test_invalid_calls_do_not_use_up_the_rate_limit() -> None:
    box, host = toolbox(tool(rate_limit_per_min=1))
    run(box.call(ToolCall("set_light", {"room": "cellar", "state": "ON"}), task="voice"))
    assert run(box.call(ToolCall("set_light", {"room": "hall", "state": "ON"}), task="voice")).status == "ok"
    assert len(host.published) == 1


def test_a_tool_needing_confirmation_runs_only_once_confirmed() -> None:
    box, host = toolbox(tool(confirm=True))
    held = run(box.call(ToolCall("set_light", {"room": "hall", "state": "ON"}), task="voice"))
    assert held.status == "pending_confirmation" and host.published == []
    assert held.to_response().response["id"] == held.id
    done = run(box.confirm(held.id))
    assert done is not None and (done.status, done.id, done.task) == ("ok", held.id, "voice")
    assert host.published[0][0] == "zigbee2mqtt/hall_light/set"
    assert run(box.confirm(held.id)) is None  # a second confirmation runs nothing and is not audited
    assert len(host.published) == 1
    assert [(a["id"], a["status"]) for a in host.audits] == [(held.id, "pending_confirmation"), (held.id, "ok")]


def test_a_confirmation_expires() -> None:
    clock = Clock()
    box, host = toolbox(tool(confirm=True), clock=clock)
    held = run(box.call(ToolCall("set_light", {"room": "hall", "state": "ON"}), task="voice"))
    clock.t += 61
    assert run(box.confirm(held.id)) is None
    assert run(box.confirm("nonsense")) is None
    assert host.published == [] and len(host.audits) == 1  # only the held call's own record


def test_the_pending_store_is_bounded() -> None:
    host = FakeHost()
    box = Toolbox([tool(confirm=True)], host, clock=Clock(), max_pending=2)
    ids = [run(box.call(ToolCall("set_light", {"room": "hall", "state": "ON"}), task="v")).id for _ in range(3)]
    assert len(box.pending) == 2
    assert run(box.confirm(ids[0])) is None
    confirmed = run(box.confirm(ids[2]))
    assert confirmed is not None and confirmed.status == "ok"


def test_a_failing_action_is_an_error_outcome_and_audited() -> None:
    box, host = toolbox()
    host.fail_publish = True
    outcome = run(box.call(ToolCall("set_light", {"room": "hall", "state": "ON"}), task="voice"))
    why = "not published to zigbee2mqtt/hall_light/set: broker away"
    assert outcome.status == "error" and outcome.error == why
    assert outcome.to_response().response == {"error": why}
    audit = host.audits[-1]
    assert set(audit) == {"task", "id", "tool", "arguments", "status", "error", "ts"}
    assert audit["status"] == "error" and audit["arguments"] == {"room": "hall", "state": "ON"}
    assert audit["ts"] == NOW.timestamp()


def test_mqtt_read_answers_with_the_last_value_and_its_age() -> None:
    clock = Clock()
    reader = tool(
        {"name": "temperature", "description": "Outside temperature.", "action": {"type": "mqtt_read", "topic": "s/t"}}
    )
    box, _host = toolbox(reader, clock=clock)
    assert box.last_values.topics() == ["s/t"]
    first = run(box.call(ToolCall("temperature", {}), task="voice"))
    assert first.status == "error" and first.result == {"error": "no value seen yet"}
    box.last_values.update("s/t", b'{"c": 21.5}')
    box.last_values.update("other", b"ignored")
    clock.t += 4
    outcome = run(box.call(ToolCall("temperature", {}), task="voice"))
    assert outcome.result == {"topic": "s/t", "value": {"c": 21.5}, "age_s": 4.0}
    box.last_values.update("s/t", "open")
    assert box.last_values.read("s/t")["value"] == "open"
    assert LastValues(["a"]).read("b") == {"error": "no value seen yet"}


def test_snapshot_goes_through_the_host() -> None:
    snap = {"name": "look", "description": "Snapshot.", "action": {"type": "snapshot", "camera": "door"}}
    broken = {**snap, "name": "look2", "action": {"type": "snapshot", "camera": "broken"}}
    box, _host = toolbox(tool(snap), tool(broken))
    assert run(box.call(ToolCall("look", {}), task="t")).result == {
        "snapshot_id": "s1",
        "camera": "door",
        "captured_at": 1.5,
    }
    failed = run(box.call(ToolCall("look2", {}), task="t"))
    assert failed.status == "error" and "camera failed" in (failed.error or "")


def test_time_returns_local_iso_date_time_weekday_and_zone() -> None:
    box, _ = toolbox(tool({"name": "now", "description": "Time.", "action": {"type": "time"}}))
    outcome: ToolOutcome = run(box.call(ToolCall("now", {}), task="t"))
    assert outcome.result == {
        "datetime": "2025-06-02T14:30:05+02:00",
        "weekday": "Monday",
        "timezone": "CEST",
        "utc_offset": "+02:00",
    }
    real = run(
        Toolbox([tool({"name": "now", "description": "T.", "action": {"type": "time"}})], FakeHost()).call(
            ToolCall("now", {}), task="t"
        )
    )
    assert datetime.fromisoformat(real.result["datetime"]).tzinfo is not None


def test_an_audit_failure_does_not_break_the_call() -> None:
    box, host = toolbox()

    def broken(_record: dict[str, Any]) -> None:
        raise OSError("disk full")

    host.audit = broken  # type: ignore[method-assign,assignment]
    assert run(box.call(ToolCall("set_light", {"room": "hall", "state": "ON"}), task="voice")).status == "ok"


def light_call(room: str = "hall") -> ToolCall:
    return ToolCall("set_light", {"room": room, "state": "ON"})


def test_a_reload_keeps_held_calls_and_rate_windows_of_unchanged_tools() -> None:
    clock = Clock()
    reader = tool({"name": "door", "description": "Door.", "action": {"type": "mqtt_read", "topic": "g/door"}})
    old, _ = toolbox(tool(confirm=True, rate_limit_per_min=2), reader, clock=clock)
    first, second = run(old.call(light_call(), task="v")), run(old.call(light_call("kitchen"), task="v"))
    old.last_values.update("g/door", b"open")
    clock.t += 10
    new, host = toolbox(tool(confirm=True, rate_limit_per_min=2), clock=clock)  # the reader left, the light stays
    assert new.adopt(old) == []
    assert run(new.call(light_call(), task="v")).status == "rate_limited"  # the window still holds both calls
    done = run(new.confirm(first.id))
    assert done is not None and done.status == "ok" and host.published[0][0] == "zigbee2mqtt/hall_light/set"
    assert new.last_values.get("g/door") is None  # a topic no tool reads any more is forgotten
    clock.t += 51  # the held call keeps its own expiry (60 s after it was held), and the window moves on
    assert run(new.confirm(second.id)) is None
    assert run(new.call(light_call(), task="v")).status == "pending_confirmation"


def test_a_reload_drops_held_calls_of_removed_or_changed_tools_audited_as_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    door = tool(LIGHT, name="door", confirm=True)
    old, _ = toolbox(tool(confirm=True), door, clock=clock)
    light = run(old.call(light_call(), task="v"))
    opened = run(old.call(ToolCall("door", {"room": "hall", "state": "ON"}), task="v"))
    changed = tool(confirm=True, description="Switch a light, now differently.")
    new, host = toolbox(changed, clock=clock)
    with caplog.at_level("WARNING"):
        dropped = new.adopt(old)
    assert sorted(p.call.id for p in dropped) == sorted([light.id, opened.id])
    assert run(new.confirm(light.id)) is None and run(new.confirm(opened.id)) is None and host.published == []
    assert [(a["id"], a["status"], a["error"]) for a in host.audits] == [
        (light.id, "cancelled", "dropped unconfirmed by a config reload: its tool's definition changed"),
        (opened.id, "cancelled", "dropped unconfirmed by a config reload: its tool was removed"),
    ]
    (line,) = [r.getMessage() for r in caplog.records if "awaiting confirmation" in r.getMessage()]
    assert line.startswith("tools: the reload dropped 2 call(s) awaiting confirmation: set_light (call ")


def test_arguments_nested_too_deep_are_refused_before_any_check() -> None:
    anything = tool(LIGHT, parameters={"type": "object"}, action={"type": "time"})
    box, host = toolbox(anything)
    deep: Any = "x"
    for _ in range(100_000):
        deep = [deep]
    outcome = run(box.call(ToolCall("set_light", {"a": deep}), task="v"))
    why = "invalid arguments: nested deeper than 32 levels (not recorded)"
    assert (outcome.status, outcome.error, outcome.arguments) == ("refused", why, {})
    assert json.loads(json.dumps(host.audits[-1]))["status"] == "refused"  # the audit record can be encoded
