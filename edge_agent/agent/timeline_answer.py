"""Questions about the past ("when did the garage door last open?"), answered from the timeline: the matching entries
(bounded in number and characters) go into the prompt as text, a thumbnail or two as images when asked and the model
can see; the question runs on the agent's queue like an `ask`."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

import numpy as np

from edge_agent.agent.converse import generate_answer, visible_text
from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority
from edge_agent.agent.shared import AgentCore
from edge_agent.model.media.from_bytes import image_from_bytes
from edge_agent.model.runtime.answer import Question
from edge_agent.timeline import Entry, Timeline, TimelineQuery

TIMELINE_SYSTEM = (
    "You are the assistant of a home, running on a small local computer. You answer questions about the past from "
    "the node's timeline of events, one per line: local time | kind | task | camera | value. Answer briefly, from "
    "these lines only; say so when they do not tell."
)
LINE_CHARS = 300  # the most of one entry's text shown to the model
THUMBNAIL_BUDGET = 70  # soft tokens per thumbnail: they are small


def timeline_lines(entries: list[Entry], max_entries: int, max_chars: int) -> list[str]:
    """The newest `max_entries` entries (given newest first) as prompt lines, oldest first, within `max_chars`."""
    lines: list[str] = []
    total = 0
    for entry in entries[:max_entries]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.ts))
        text = " ".join(entry.text.split())[:LINE_CHARS]
        line = f"{when} | {entry.kind} | {entry.task or '-'} | {entry.camera or '-'} | {text}"
        if total + len(line) + 1 > max_chars:
            break
        lines.append(line)
        total += len(line) + 1
    return lines[::-1]


def timeline_prompt(question: str, lines: list[str]) -> str:
    """The user turn: the entries, then the question."""
    events = "\n".join(lines) if lines else "(no events recorded in this range)"
    now = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return f"It is now {now}. Events recorded by this node, oldest first:\n{events}\n\nQuestion: {question}"


class TimelineAnswers:
    """Runs a question about the timeline as an interactive job on the agent's queue."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core

    async def answer(self, question: str, entries: list[Entry], thumbnails: list[bytes]) -> dict[str, Any]:
        """{"status", "answer", "model", "error", "entries_in_prompt", "images"}; never raises for a refusal."""
        core, timeline = self.core, self.core.config.timeline
        if core.model is None and not core.model_pending:
            return {"status": "error", "error": f"no model loaded: {core.model_error}"}
        if core.degradation().limits.all_paused:
            return {"status": "busy", "error": f"paused: {core.degradation().reason}"}
        lines = timeline_lines(entries, timeline.prompt_entries, timeline.prompt_chars)
        images = await asyncio.to_thread(_decode, thumbnails[: timeline.prompt_images])
        deadline = time.monotonic() + core.config.mqtt.ask_timeout_s
        run = partial(self._run, timeline_prompt(question, lines), images)
        job = core.scheduler.submit(Job("timeline", Priority.INTERACTIVE, run, deadline=deadline))
        try:
            result: dict[str, Any] = await job.future
        except JobRefusedError as exc:
            return {"status": "busy" if exc.status == "busy" else "error", "error": str(exc)}
        except asyncio.CancelledError:
            if core.scheduler.current is job:
                core.scheduler.cancel_current()
            elif not job.future.done():
                job.future.cancel()
            raise
        return {"status": "ok", "entries_in_prompt": len(lines), **result}

    async def _run(self, text: str, images: tuple[np.ndarray, ...], ctx: JobContext) -> dict[str, Any]:
        core = self.core
        model = core.require_model()
        state = core.degradation()
        shown = images if model.files.modalities["image"] else ()  # a model that cannot see gets the text alone
        question = Question(
            text,
            images=shown,
            system=TIMELINE_SYSTEM,
            image_budget=min(THUMBNAIL_BUDGET, state.image_budget(core.config.model.image_budget)),
            thinking=core.config.model.thinking,
        )
        answer = await generate_answer(model, question, ctx, state.limits.max_new_tokens)
        core.decode_tokens_per_s = answer.decode_tokens_per_s
        return {
            "answer": visible_text(model, answer.text),
            "model": model.label,
            "finish_reason": answer.finish_reason,
            "images": len(shown),
        }


def _decode(thumbnails: list[bytes]) -> tuple[np.ndarray, ...]:
    """The thumbnails as frames (an unreadable one is skipped)."""
    frames = []
    for data in thumbnails:
        try:
            frames.append(image_from_bytes(data))
        except ValueError:
            continue
    return tuple(frames)


async def run_query(timeline: Timeline, answers: TimelineAnswers | None, query: TimelineQuery) -> dict[str, Any]:
    """The reply to a timeline query (MQTT, HTTP): the matching entries, newest first, and the answer to its
    `question` when it has one."""
    try:
        entries = await timeline.query(query)
    except ValueError as exc:
        return {"status": "error", "error": str(exc)}
    body: dict[str, Any] = {"status": "ok", "count": len(entries), "entries": [e.to_json() for e in entries]}
    if query.question is None:
        return body
    if answers is None:
        return {**body, "status": "error", "error": "this node answers no questions (no model)"}
    most = timeline.config.prompt_images if query.images else 0
    thumbnails = await timeline.thumbnails(entries, most) if most else []
    return {**body, **await answers.answer(query.question, entries, thumbnails)}
