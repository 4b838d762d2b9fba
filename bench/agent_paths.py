"""Per-request latency of the agent's text paths at a real model shape, cold and with prefix reuse.

Runs edge-agent's own Answerer (engine, decode loop, prefix cache, request context) on a model directory
(the E2B-shaped benchmark model of bench/build_bench_model.py, or a real export):
- watch tick: the watch system prompt with its answer schema, the task's question, a JSON-constrained answer;
  the first tick is cold, the next ticks start from the cached system turn (the image, which follows the
  system turn, is left out when the model has no vision encoder: its tokens would be prefilled either way);
- ask with one tool call: a question with two declared tools, then the same request continued with the
  call and its response, once with the request's cache and once from scratch.
Prints TTFT, prefilled/reused tokens and the ratios. Greedy, fixed small token budgets.
Run: .venv/bin/python bench/agent_paths.py --model ~/.cache/edge-agent/bench-models/e2b [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import replace
from pathlib import Path

from edge_agent.agent.watch import watch_system_prompt
from edge_agent.config.model import ModelConfig
from edge_agent.messages import ToolCall, ToolResponse, ToolSpec
from edge_agent.model.runtime.answer import Answer, Answerer, Question
from edge_agent.model.runtime.constrain import ConstraintFactory
from edge_agent.model.runtime.context import Conversation
from edge_agent.model.runtime.engine import EngineOptions, TextEngine
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model
from edge_agent.prompt.chat import Message

SCHEMA = {
    "type": "object",
    "properties": {
        "door_open": {"type": "boolean", "description": "Whether the garage door is open."},
        "people": {"type": "integer", "minimum": 0, "maximum": 20, "description": "People in view."},
        "vehicle": {"type": "string", "enum": ["none", "car", "van", "bike"], "description": "Vehicle in the drive."},
    },
    "required": ["door_open", "people", "vehicle"],
}
TOOLS = (
    ToolSpec(
        "set_light",
        "Switch a light in a room on or off.",
        {
            "type": "object",
            "properties": {
                "room": {"type": "string", "enum": ["kitchen", "hall", "garage", "living room"]},
                "state": {"type": "string", "enum": ["ON", "OFF"]},
            },
            "required": ["room", "state"],
        },
    ),
    ToolSpec("get_time", "The current local time.", {"type": "object", "properties": {}}),
)


def settings(tokens: int) -> GenerationSettings:
    """Greedy, `tokens` new tokens at most, no early end (the figures are about prefill and TTFT)."""
    return GenerationSettings(max_new_tokens=tokens, max_context=4096, eos_token_ids=frozenset())


def watch_ticks(answerer: Answerer, constraints: ConstraintFactory, ticks: int) -> list[Answer]:
    """One cold tick (empty prefix cache), then warm ones."""
    question = Question(
        "Look at the garage: is the door open, who is there, which vehicle?", system=watch_system_prompt(SCHEMA)
    )
    answers = []
    for _ in range(ticks):
        base = settings(24)
        run = GenerationSettings(**{**vars(base), "constraint": constraints.json_answer(SCHEMA)})
        answers.append(answerer.answer(question, run))
    return answers


def ask_with_call(answerer: Answerer, reuse: bool) -> tuple[Answer, Answer]:
    """The first step of an ask with tools, then the step after the call (with or without the request cache)."""
    question = Question(
        "Turn on the garage light, please, and tell me the time.", system="You are a home assistant.", tools=TOOLS
    )
    context = Conversation()
    first = answerer.answer(question, settings(16), conversation=context)
    turn = Message(
        "model",
        tool_calls=(ToolCall("set_light", {"room": "garage", "state": "ON"}),),
        tool_responses=(ToolResponse("set_light", {"ok": True, "state": "ON"}),),
    )
    follow = Question(question.text, system=question.system, tools=TOOLS, steps=(turn,))
    second = answerer.answer(follow, settings(16), conversation=context if reuse else Conversation())
    return first, second


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--variant", default="q4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ticks", type=int, default=4)
    args = parser.parse_args()
    options = replace(EngineOptions.from_config(ModelConfig(path=args.model)), intra_op_threads=args.threads)
    engine = TextEngine(locate_model(args.model, args.variant), options)  # the daemon's defaults
    tokenizer = Tokenizer(args.model)
    constraints = ConstraintFactory(tokenizer, engine.files.tokenizer_json, engine.files.info.vocab_size)
    answerer = Answerer(engine, tokenizer)
    ticks = watch_ticks(answerer, constraints, args.ticks)
    cold, warm = ticks[0], ticks[1:]
    warm_ttft = statistics.median(a.times.ttft_s for a in warm)
    print(
        f"watch tick: prompt {cold.prompt_tokens} tokens; cold TTFT {cold.times.ttft_s * 1000:.0f} ms "
        f"(prefilled {cold.prefilled_tokens}); warm TTFT {warm_ttft * 1000:.0f} ms (prefilled "
        f"{warm[0].prefilled_tokens}, reused {warm[0].reused_tokens}); warm/cold {warm_ttft / cold.times.ttft_s:.2f}"
    )
    for reuse in (False, True):
        fresh = Answerer(engine, tokenizer, prefix_cache_bytes=0)
        first, second = ask_with_call(fresh, reuse)
        total = first.prefilled_tokens + second.prefilled_tokens
        label = "request cache" if reuse else "from scratch "
        print(
            f"ask + 1 tool call, {label}: step 2 TTFT {second.times.ttft_s * 1000:.0f} ms, prefilled "
            f"{first.prefilled_tokens} + {second.prefilled_tokens} = {total} tokens for a final context of "
            f"{second.prompt_tokens + len(second.ids)} ({total / (second.prompt_tokens + len(second.ids)):.2f}x)"
        )


if __name__ == "__main__":
    main()
