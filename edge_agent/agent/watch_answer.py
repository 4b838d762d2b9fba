"""A watch task's answer: the prompt, the schema-constrained generation, the snapshot and the published result."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, replace
from typing import Any, Literal

import cv2
import jsonschema

from edge_agent.agent.converse import generate_answer
from edge_agent.agent.model_host import LoadedModel
from edge_agent.agent.scheduler import JobContext, JobRefusedError
from edge_agent.config import WatchTaskConfig
from edge_agent.messages import Frame
from edge_agent.model.runtime.answer import Answer, Question
from edge_agent.model.runtime.feature_cache import ReferenceImage

Trigger = Literal["motion", "timer", "ask", "button", "voice", "recovered"]  # recovered: its camera is back


def watch_system_prompt(schema: dict[str, Any]) -> str:
    """The instruction that pairs a standing question with its answer schema."""
    return (
        "You watch a camera. Look at the image and answer the question. "
        "Reply with JSON only, valid against this JSON Schema: " + json.dumps(schema, sort_keys=True)
    )


@dataclass(frozen=True)
class Snapshot:
    """A frame an answer was based on, and its id (published with the answer)."""

    id: str
    camera: str
    captured_at: float
    jpeg: bytes


def take_snapshot(frame: Frame, quality: int) -> Snapshot:
    """JPEG-encode a frame under a fresh id."""
    ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError(f"camera {frame.camera}: the frame could not be encoded as JPEG")
    return Snapshot(f"{frame.camera}-{uuid.uuid4().hex[:12]}", frame.camera, frame.captured_at, data.tobytes())


@dataclass(frozen=True)
class WatchAnswer:
    """A parsed, schema-valid answer with what produced it."""

    value: Any
    answer: Answer
    snapshot: Snapshot


class InvalidAnswerError(Exception):
    """The generation ended without a schema-valid answer (e.g. it ran out of tokens)."""


def parse_answer(text: str, schema: dict[str, Any]) -> Any:
    """The JSON value of `text`, validated against `schema`; InvalidAnswerError otherwise."""
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise InvalidAnswerError(f"not JSON ({exc}): {text[:120]!r}") from None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        raise InvalidAnswerError(f"does not match the answer schema: {exc.message}") from None
    return value


async def answer_watch(
    model: LoadedModel,
    task: WatchTaskConfig,
    frame: Frame,
    ctx: JobContext,
    *,
    image_budget: int,
    max_new_tokens: int,
    jpeg_quality: int,
    question: Question | None = None,
    references: tuple[ReferenceImage, ...] = (),
) -> WatchAnswer:
    """Ask the task's question about `frame` (or `question`, e.g. about a clip, whose snapshot `frame` is), after the
    task's reference images, with output constrained to the task's answer schema."""
    if frame.image is None:
        raise JobRefusedError("no_frame", f"camera {task.camera}: no frame yet")
    question = question or Question(
        task.question,
        images=(frame.image,),
        system=watch_system_prompt(task.answer),
        image_budget=image_budget,
        thinking=task.thinking,
    )
    question = replace(question, references=references)
    constraint = model.constraints.json_answer(task.answer, after_thought=task.thinking)
    answer = await generate_answer(model, question, ctx, max_new_tokens, constraint=constraint)
    text = answer.text
    if task.thinking:
        text = text.rsplit("<channel|>", 1)[-1]
    value = parse_answer(_strip_specials(model, text), task.answer)
    return WatchAnswer(value, answer, take_snapshot(frame, jpeg_quality))


def _strip_specials(model: LoadedModel, text: str) -> str:
    for token in model.tokenizer.special_tokens:
        text = text.replace(token, "")
    return text.strip()


def result_payload(
    task: WatchTaskConfig,
    result: WatchAnswer,
    trigger: Trigger,
    model: LoadedModel,
    *,
    level: int,
    started: float,
    frame_age: float,
    clip: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The retained `task/<name>` JSON: the value and the context every result carries (`frame_age_s`: how old the
    frame was when the model was given it; `clip`: what a clip question's clip was)."""
    answer = result.answer
    return {
        **({"clip": clip} if clip is not None else {}),
        "task": task.name,
        "value": result.value,
        "camera": task.camera,
        "trigger": trigger,
        "model": model.label,
        "degradation_level": level,
        "snapshot_id": result.snapshot.id,
        "frame_captured_at": round(result.snapshot.captured_at, 3),
        "frame_age_s": round(frame_age, 3),
        "finish_reason": answer.finish_reason,
        "timings_ms": {**answer.times.as_ms(), "total_ms": round((time.monotonic() - started) * 1000, 2)},
        "prompt_tokens": answer.prompt_tokens,
    }
