"""A request answered with tools: generate, run the calls the model made, feed the results back, up to N steps."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from edge_agent.agent.model_host import LoadedModel
from edge_agent.agent.scheduler import JobContext, JobRefusedError
from edge_agent.agent.stream import TextStream
from edge_agent.config.advice import TOOL_CALL_MIN_TOKENS as CALL_TOKENS  # least budget of a step that may call a tool
from edge_agent.model.runtime.answer import Answer, Question
from edge_agent.model.runtime.context import Conversation
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.prompt.chat import Message, strip_thoughts
from edge_agent.prompt.tool_syntax import ToolCallParseError, parse_tool_calls
from edge_agent.tools import Toolbox, ToolOutcome

_CALL_BLOCK = re.compile(r"<\|tool_call>.*?(<tool_call\|>|$)", re.DOTALL)
_INTERRUPTED = {"cancelled": "stopping", "deadline": "deadline"}


@dataclass
class Exchange:
    """What a request produced: the final text, every tool call's outcome, and the time spent per stage."""

    text: str = ""
    finish_reason: str = ""
    outcomes: list[ToolOutcome] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)  # model output that was not a well-formed call
    steps: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    decode_tokens_per_s: float = 0.0  # of the last generation
    context: Conversation = field(default_factory=Conversation)  # the request's cache, reused by every step

    def add_times(self, answer: Answer) -> None:
        """Accumulate one generation's stage times."""
        self.decode_tokens_per_s = answer.decode_tokens_per_s
        for name, value in answer.times.as_ms().items():
            self.timings_ms[name] = round(self.timings_ms.get(name, 0.0) + value, 2)

    def to_json(self) -> dict[str, Any]:
        """For MQTT."""
        return {
            "answer": self.text,
            "finish_reason": self.finish_reason,
            "tool_calls": [outcome.to_json() for outcome in self.outcomes],
            "refused_output": self.refusals,
            "steps": self.steps,
            "timings_ms": self.timings_ms,
            "tokens": {
                "prefilled": self.context.prefilled_tokens,
                "reused": self.context.reused_tokens,
                "context": len(self.context.ids),
                "encoded_media": self.context.encoder_runs,
            },
        }


def visible_text(model: LoadedModel, raw: str) -> str:
    """The answer a person reads: no thought channel, no tool-call markup, no special tokens."""
    text = _CALL_BLOCK.sub("", strip_thoughts(raw))
    for token in model.tokenizer.special_tokens:
        text = text.replace(token, "")
    return text.strip()


def answer_settings(
    model: LoadedModel, question: Question, max_new_tokens: int, constraint: Any = None, ctx: JobContext | None = None
) -> GenerationSettings:
    """Greedy generation up to the model's end of turn (or a hand-over to the tools), within the job's limits."""
    eos = set(model.eos_ids)
    if question.tools:
        eos.add(model.tokenizer.token_id("<|tool_response>"))  # the model hands over to the tools
    return GenerationSettings(
        max_new_tokens=max_new_tokens,
        max_context=model.max_context,
        eos_token_ids=frozenset(eos),
        deadline=ctx.deadline if ctx is not None else None,
        cancel=ctx.cancel if ctx is not None else None,
        constraint=constraint,
    )


def answer_streamed(
    model: LoadedModel,
    question: Question,
    settings: GenerationSettings,
    context: Conversation | None,
    stream: TextStream | None,
) -> Answer:
    """One generation (special tokens kept), its readable text fed to `stream` and flushed at the end (blocking)."""
    if stream is None:
        return model.answerer.answer(question, settings, None, True, context)
    stream.restart()
    answer = model.answerer.answer(question, settings, stream.feed, True, context)
    stream.flush(answer.text)
    return answer


async def generate_answer(
    model: LoadedModel,
    question: Question,
    ctx: JobContext,
    max_new_tokens: int,
    *,
    constraint: Any = None,
    context: Conversation | None = None,
    stream: TextStream | None = None,
) -> Answer:
    """One generation on the inference thread; a cancelled or late generation raises JobRefusedError."""
    settings = answer_settings(model, question, max_new_tokens, constraint, ctx)
    answer = await ctx.offload(answer_streamed, model, question, settings, context, stream)
    if answer.finish_reason in _INTERRUPTED:
        raise JobRefusedError(_INTERRUPTED[answer.finish_reason], f"generation {answer.finish_reason}")
    return answer


async def converse(
    model: LoadedModel,
    toolbox: Toolbox,
    question: Question,
    ctx: JobContext,
    *,
    task: str,
    allowed: list[str] | None,
    max_steps: int,
    max_new_tokens: int,
    tool_required: bool = False,
    context: Conversation | None = None,
    stream: TextStream | None = None,
) -> Exchange:
    """Answer `question` (whose `tools` the model may call), running each call through the toolbox; every step
    continues the request's `context` (its KV cache and encoded media) instead of starting over. With `stream`,
    each step's readable text is streamed (a step that ends in tool calls is replaced by the next one)."""
    exchange = Exchange(context=context or Conversation())
    steps: tuple[Message, ...] = ()
    while True:
        may_call = bool(question.tools) and exchange.steps < max_steps
        required = tool_required and exchange.steps == 0
        constraint = model.constraints.tool_calls(question.tools, required) if may_call else None
        budget = max(max_new_tokens, CALL_TOKENS) if may_call else max_new_tokens
        answer = await generate_answer(
            model,
            replace(question, steps=steps),
            ctx,
            budget,
            constraint=constraint,
            context=exchange.context,
            stream=stream,
        )
        exchange.add_times(answer)
        exchange.finish_reason = answer.finish_reason
        try:
            calls = parse_tool_calls(answer.text) if may_call else []
        except ToolCallParseError as exc:
            exchange.refusals.append(str(exc))
            calls = []
        if not calls:
            exchange.text = visible_text(model, answer.text)
            return exchange
        outcomes = [await toolbox.call(call, task=task, allowed=allowed) for call in calls]
        exchange.outcomes += outcomes
        exchange.steps += 1
        turn = Message("model", tool_calls=tuple(calls), tool_responses=tuple(o.to_response() for o in outcomes))
        steps = (*steps, turn)
