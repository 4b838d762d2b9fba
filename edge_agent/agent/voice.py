"""Spoken requests: the utterance goes to the model as audio with the task's tools; transcript and calls published."""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import Any

import numpy as np

from edge_agent.agent.converse import Exchange, converse, generate_answer, visible_text
from edge_agent.agent.model_host import LoadedModel
from edge_agent.agent.scheduler import Job, JobContext, Priority
from edge_agent.agent.shared import AgentCore, log
from edge_agent.config import VoiceTaskConfig
from edge_agent.messages import Utterance
from edge_agent.model.runtime.answer import Question
from edge_agent.model.runtime.context import Conversation
from edge_agent.tools import Toolbox

TRANSCRIBE = "Transcribe the speech in this audio exactly, in its language. Reply with the transcript only."
VOICE_SYSTEM = (
    "You are the voice assistant of a home. The user speaks to you; answer briefly. "
    "When a declared tool does what the user asks, call it."
)
TRANSCRIPT_TOKENS = 96


async def transcribe(model: LoadedModel, question: Question, ctx: JobContext, context: Conversation) -> str:
    """What was said: the voice question's own prompt (system turn, tools, the clip) with a request to transcribe
    instead of act, so it shares the clip's encoding and the prefilled prefix with the command that follows."""
    request = replace(question, text=TRANSCRIBE)
    constraint = model.constraints.no_tool_calls() if question.tools else None
    answer = await generate_answer(model, request, ctx, TRANSCRIPT_TOKENS, constraint=constraint, context=context)
    return visible_text(model, answer.text)


async def handle_utterance(
    model: LoadedModel,
    toolbox: Toolbox,
    task: VoiceTaskConfig,
    samples: np.ndarray,
    ctx: JobContext,
    *,
    max_new_tokens: int,
) -> tuple[str | None, Exchange]:
    """Transcript (when configured) and the exchange: tool calls made, their outcomes, the spoken answer."""
    system = VOICE_SYSTEM + ("\n" + task.instructions if task.instructions else "")
    tools = tuple(toolbox.specs(task.tools))
    question = Question("", audio=(samples,), system=system, thinking=task.thinking, tools=tools)
    context = Conversation()
    transcript = await transcribe(model, question, ctx, context) if task.transcribe else None
    exchange = await converse(
        model,
        toolbox,
        question,
        ctx,
        task=task.name,
        allowed=task.tools,
        max_steps=task.max_steps,
        max_new_tokens=max_new_tokens,
        tool_required=task.tool_choice == "required",
        context=context,
    )
    return transcript, exchange


def voice_payload(
    task: VoiceTaskConfig, transcript: str | None, exchange: Exchange, model: LoadedModel, *, level: int, seconds: float
) -> dict[str, Any]:
    """The `task/<name>` JSON of one utterance."""
    return {
        "task": task.name,
        "trigger": "voice",
        "camera": None,
        "transcript": transcript,
        "utterance_s": round(seconds, 2),
        "model": model.label,
        "degradation_level": level,
        "snapshot_id": None,
        **exchange.to_json(),
    }


class VoiceCommands:
    """Utterances from the voice gate, answered by the voice task with its tools; results and an HA event published."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core

    def on_utterance(self, utterance: Utterance) -> Job | None:
        """An utterance from the voice gate: queue it for the voice task."""
        core = self.core
        task = next((t for t in core.config.tasks if isinstance(t, VoiceTaskConfig)), None)
        if task is None or (core.model is None and not core.model_pending) or core.degradation().limits.all_paused:
            return None
        job = Job(
            f"voice:{task.name}",
            Priority.INTERACTIVE,
            partial(self._run, task, utterance),
            deadline=time.monotonic() + task.deadline_s,
        )
        return core.scheduler.submit(job)

    async def _run(self, task: VoiceTaskConfig, utterance: Utterance, ctx: JobContext) -> dict[str, Any]:
        core = self.core
        model = core.require_model()
        state = core.degradation()
        transcript, exchange = await handle_utterance(
            model, core.toolbox, task, utterance.samples, ctx, max_new_tokens=state.limits.max_new_tokens
        )
        core.decode_tokens_per_s = exchange.decode_tokens_per_s
        seconds = utterance.end_s - utterance.start_s
        payload = voice_payload(task, transcript, exchange, model, level=int(state.level), seconds=seconds)
        core.publisher.publish_result(f"task/{task.name}", payload)
        core.publisher.publish_event({"event_type": "voice_command", **payload})
        heard = (transcript or "")[:80]
        log.info("voice %s: %r -> %d tool call(s)", task.name, heard, len(exchange.outcomes))
        return payload
