"""Per-request latency of the agent's text paths at a real model shape, cold and with prefix reuse.

Runs edge-agent's own Answerer (engine, decode loop, prefix cache, request context) on a model directory
(the E2B-shaped benchmark model of bench/build_bench_model.py, or a real export):
- watch tick: the watch system prompt with its answer schema, the task's question, a JSON-constrained answer;
  the first tick is cold, the next ticks start from the cached system turn; with a vision encoder a 1280x720
  camera frame goes in at --image-budget (default: the daemon's, 280; the frame is encoded every tick, as in the
  daemon), without one the image is left out (its tokens follow the cached prefix either way);
- ask with one tool call: a question with two declared tools, then the same request continued with the
  call and its response, once with the request's cache and once from scratch;
- voice command with one tool call (with an audio encoder): a 5 s clip through the voice task's own steps
  (transcript, the step that calls, the step after the tool response) in one request context, then the same
  without the transcript (`transcribe: false`): audio-encoder runs, prefilled tokens against the final context,
  TTFT of each step.
Prints TTFT, prefilled/reused tokens and the ratios. Greedy, fixed small token budgets. The encoders come from
`bench/build_bench_model.py --encoders`.
Run: .venv/bin/python bench/agent_paths.py --model ~/.cache/edge-agent/bench-models/e2b [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

from edge_agent.agent.voice import TRANSCRIBE, TRANSCRIPT_TOKENS, VOICE_SYSTEM
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from media_costs import load_average
from multimodal import camera_frame, speech

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


def watch_ticks(answerer: Answerer, constraints: ConstraintFactory, ticks: int, budget: int | None) -> list[Answer]:
    """One cold tick (empty prefix cache), then warm ones; with a `budget`, a camera frame at it each tick."""
    answers = []
    for _ in range(ticks):
        question = Question(
            "Look at the garage: is the door open, who is there, which vehicle?",
            images=(camera_frame(),) if budget else (),
            system=watch_system_prompt(SCHEMA),
            image_budget=budget or 280,
        )
        base = settings(24)
        run = GenerationSettings(**{**vars(base), "constraint": constraints.json_answer(SCHEMA)})
        answers.append(answerer.answer(question, run))
    return answers


SET_LIGHT = Message(
    "model",
    tool_calls=(ToolCall("set_light", {"room": "garage", "state": "ON"}),),
    tool_responses=(ToolResponse("set_light", {"ok": True, "state": "ON"}),),
)


def ask_with_call(answerer: Answerer, reuse: bool) -> tuple[Answer, Answer]:
    """The first step of an ask with tools, then the step after the call (with or without the request cache)."""
    question = Question(
        "Turn on the garage light, please, and tell me the time.", system="You are a home assistant.", tools=TOOLS
    )
    context = Conversation()
    first = answerer.answer(question, settings(16), conversation=context)
    follow = replace(question, steps=(SET_LIGHT,))
    second = answerer.answer(follow, settings(16), conversation=context if reuse else Conversation())
    return first, second


def voice_with_call(
    answerer: Answerer, constraints: ConstraintFactory, transcribe: bool = True
) -> tuple[list[Answer], Conversation]:
    """The voice task's steps on a 5 s clip in one request context: the transcript (the task's default, with
    `transcribe`), the calling step, the step after the tool response."""
    question = Question("", audio=(speech(5.0),), system=VOICE_SYSTEM, tools=TOOLS)
    context = Conversation()
    answers = []
    if transcribe:
        base = settings(TRANSCRIPT_TOKENS)
        quiet = GenerationSettings(**{**vars(base), "constraint": constraints.no_tool_calls()})
        answers.append(answerer.answer(replace(question, text=TRANSCRIBE), quiet, conversation=context))
    answers.append(answerer.answer(question, settings(16), conversation=context))
    answers.append(answerer.answer(replace(question, steps=(SET_LIGHT,)), settings(16), conversation=context))
    return answers, context


def print_voice(answers: list[Answer], context: Conversation) -> None:
    """The voice command's figures on one line."""
    final = answers[-1].prompt_tokens + len(answers[-1].ids)
    steps = ", ".join(f"{a.times.ttft_s * 1000:.0f}" for a in answers)
    names = "transcript, call, answer" if len(answers) == 3 else "call, answer"
    print(
        f"voice + 1 tool call ({sum(answers[0].audio_tokens)} audio tokens): audio-encoder runs "
        f"{context.encoder_runs}; prefilled {context.prefilled_tokens} tokens (reused {context.reused_tokens}) for a "
        f"final context of {final} ({context.prefilled_tokens / final:.2f}x); TTFT per step ({names}) {steps} ms; "
        f"total {sum(a.times.ttft_s + a.times.decode_s for a in answers) * 1000:.0f} ms"
    )


def main() -> None:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--variant", default="q4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--ticks", type=int, default=4)
    default_budget = ModelConfig.model_fields["image_budget"].default
    parser.add_argument("--image-budget", type=int, default=default_budget, help="watch-tick image budget")
    args = parser.parse_args()
    options = replace(EngineOptions.from_config(ModelConfig(path=args.model)), intra_op_threads=args.threads)
    engine = TextEngine(locate_model(args.model, args.variant), options)  # the daemon's defaults
    tokenizer = Tokenizer(args.model)
    constraints = ConstraintFactory(tokenizer, engine.files.tokenizer_json, engine.files.info.vocab_size)
    answerer = Answerer(engine, tokenizer)
    print(f"load before: {load_average()}")
    budget = args.image_budget if engine.vision is not None else None
    ticks = watch_ticks(answerer, constraints, args.ticks, budget)
    cold, warm = ticks[0], ticks[1:]
    warm_ttft = statistics.median(a.times.ttft_s for a in warm)
    image = f", image {sum(cold.image_tokens)} tokens (encoder {cold.times.encoder_s * 1000:.0f} ms)" * bool(
        cold.image_tokens
    )
    print(
        f"watch tick: prompt {cold.prompt_tokens} tokens{image}; cold TTFT {cold.times.ttft_s * 1000:.0f} ms "
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
    if engine.audio is not None:
        for transcribe in (True, False):
            print_voice(*voice_with_call(Answerer(engine, tokenizer, prefix_cache_bytes=0), constraints, transcribe))
    print(f"load after:  {load_average()}")


if __name__ == "__main__":
    main()
