"""Tool calls the model writes go through the toolbox: bad ones are refused, reported and never executed;
good ones run and their results go back to the model for the next step."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

from edge_agent.agent.converse import converse
from edge_agent.agent.scheduler import JobContext
from edge_agent.config import ToolConfig
from edge_agent.messages import ToolCall, ToolSpec
from edge_agent.model.runtime.answer import Answer, Question, StageTimes
from edge_agent.prompt.tool_syntax import format_call
from edge_agent.tools import Toolbox

LIGHT = ToolConfig.model_validate(
    {
        "name": "light",
        "description": "Switch the light.",
        "parameters": {
            "type": "object",
            "properties": {"state": {"type": "string", "enum": ["ON", "OFF"]}},
            "required": ["state"],
        },
        "action": {"type": "mqtt_publish", "topic": "home/light/set", "payload": "{state}"},
    }
)


@dataclass
class Host:
    published: list[tuple[str, str]] = field(default_factory=list)
    audits: list[dict[str, Any]] = field(default_factory=list)

    def publish(self, topic: str, payload: str, qos: int, retain: bool) -> None:
        self.published.append((topic, payload))

    def audit(self, record: dict[str, Any]) -> None:
        self.audits.append(record)

    async def snapshot(self, camera: str) -> dict[str, Any]:
        raise RuntimeError("no cameras here")


class ScriptedAnswerer:
    """Stands in for the model: returns the scripted texts in turn, and records each question it was asked."""

    def __init__(self, texts: list[str]) -> None:
        self.texts, self.questions = list(texts), []

    def answer(
        self, question: Question, settings: Any, on_text: Any = None, special_tokens: bool = False, context: Any = None
    ) -> Answer:
        self.questions.append(question)
        times = StageTimes(0.0, 0.0, 0.0, 0.0, 0.0)
        return Answer(self.texts.pop(0), [], "eos", 1, (), (), False, times)


class NoConstraints:
    def tool_calls(self, tools: Any, required: bool = False) -> None:
        return None  # scripted output: nothing forces it to be valid, so the toolbox must catch it


class Tokens:
    special_tokens = ("<|tool_call>", "<tool_call|>", '<|"|>')

    def token_id(self, token: str) -> int:
        return 50


@dataclass
class ScriptedModel:
    answerer: ScriptedAnswerer
    constraints: NoConstraints = field(default_factory=NoConstraints)
    tokenizer: Tokens = field(default_factory=Tokens)
    eos_ids: frozenset[int] = frozenset({1})
    max_context: int = 4096


def run(texts: list[str], host: Host, max_steps: int = 3) -> tuple[Any, ScriptedModel]:
    model = ScriptedModel(ScriptedAnswerer(texts))
    toolbox = Toolbox([LIGHT], host)
    question = Question("turn it on", tools=(ToolSpec("light", "Switch the light.", LIGHT.parameters),))
    ctx = JobContext(threading.Event(), None)
    exchange = asyncio.run(
        converse(model, toolbox, question, ctx, task="voice", allowed=["light"], max_steps=max_steps, max_new_tokens=64)  # type: ignore[arg-type]
    )
    return exchange, model


def call(name: str, **arguments: Any) -> str:
    return format_call(ToolCall(name, arguments))


def test_an_undeclared_tool_is_refused_reported_and_never_run() -> None:
    host = Host()
    exchange, model = run([call("unlock_door", door="front"), "I cannot do that."], host)
    assert [(o.tool, o.status) for o in exchange.outcomes] == [("unlock_door", "refused")]
    assert host.published == []
    assert [a["status"] for a in host.audits] == ["refused"] and host.audits[0]["tool"] == "unlock_door"
    second = model.answerer.questions[1].steps[0]  # the refusal went back to the model
    assert second.tool_responses[0].response == {"error": exchange.outcomes[0].error}
    assert exchange.text == "I cannot do that."


def test_invalid_arguments_are_refused_and_never_run() -> None:
    host = Host()
    exchange, _ = run([call("light", state="PURPLE"), call("light"), "Sorry."], host)
    assert [o.status for o in exchange.outcomes] == ["refused", "refused"]
    assert "state" in (exchange.outcomes[0].error or "") and host.published == []
    assert len(host.audits) == 2


def test_malformed_call_text_is_reported_as_refused_output() -> None:
    host = Host()
    exchange, _ = run(['<|tool_call>call:light{state:<|"|>ON'], host)
    assert exchange.outcomes == [] and host.published == []
    assert exchange.refusals and "not finished" in exchange.refusals[0]


def test_a_valid_call_runs_and_its_result_feeds_the_next_step_until_the_final_answer() -> None:
    host = Host()
    exchange, model = run([call("light", state="ON"), "The light is on."], host)
    assert host.published == [("home/light/set", "ON")]
    assert exchange.outcomes[0].status == "ok" and exchange.steps == 1
    assert exchange.text == "The light is on."
    assert model.answerer.questions[1].steps[0].tool_calls == (ToolCall("light", {"state": "ON"}),)


def test_tool_steps_stop_at_max_steps() -> None:
    host = Host()
    exchange, model = run([call("light", state="ON"), call("light", state="OFF"), "done"], host, max_steps=1)
    assert host.published == [("home/light/set", "ON")] and exchange.steps == 1  # the second call never ran
    assert exchange.text == ""  # its markup is not shown as the answer
    assert len(model.answerer.questions) == 2
