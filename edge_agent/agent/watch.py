"""Standing questions about a camera: the prompt, the schema-constrained answer and the published result."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import cv2
import jsonschema

from edge_agent.agent.converse import generate_answer
from edge_agent.agent.model_host import LoadedModel
from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority
from edge_agent.agent.shared import AgentCore, log
from edge_agent.config import WatchTaskConfig
from edge_agent.messages import Frame, MotionResult
from edge_agent.model.runtime.answer import Answer, Question

Trigger = Literal["motion", "timer", "ask", "button", "voice"]


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
) -> WatchAnswer:
    """Ask the task's question about `frame`, with output constrained to the task's answer schema."""
    if frame.image is None:
        raise JobRefusedError("no_frame", f"camera {task.camera}: no frame yet")
    question = Question(
        task.question,
        images=(frame.image,),
        system=watch_system_prompt(task.answer),
        image_budget=image_budget,
        thinking=task.thinking,
    )
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
    task: WatchTaskConfig, result: WatchAnswer, trigger: Trigger, model: LoadedModel, *, level: int, started: float
) -> dict[str, Any]:
    """The retained `task/<name>` JSON: the value and the context every result carries."""
    answer = result.answer
    return {
        "task": task.name,
        "value": result.value,
        "camera": task.camera,
        "trigger": trigger,
        "model": model.label,
        "degradation_level": level,
        "snapshot_id": result.snapshot.id,
        "frame_captured_at": round(result.snapshot.captured_at, 3),
        "finish_reason": answer.finish_reason,
        "timings_ms": {**answer.times.as_ms(), "total_ms": round((time.monotonic() - started) * 1000, 2)},
        "prompt_tokens": answer.prompt_tokens,
    }


class WatchTasks:
    """Standing questions: triggered by motion, timers and the Analyze button; answers published retained."""

    def __init__(self, core: AgentCore) -> None:
        self.core = core
        self._last_answer: dict[str, float] = {}
        self._last_timer: dict[str, float] = {}

    @property
    def tasks(self) -> list[WatchTaskConfig]:
        """The configured standing questions."""
        return [task for task in self.core.config.tasks if isinstance(task, WatchTaskConfig)]

    def on_motion(self, result: MotionResult) -> None:
        """Motion on a camera: trigger its motion-driven watch tasks (cooldown permitting)."""
        for task in self.tasks:
            if task.on_motion and task.camera == result.camera:
                self.trigger(task, "motion")

    async def run_timers(self, tick_s: float = 0.5) -> None:
        """Trigger interval watch tasks; intervals stretch with the degradation level."""
        while True:
            now = time.monotonic()
            for task in self.tasks:
                if task.interval_s is None:
                    continue
                interval = self.core.degradation().watch_interval_s(task.interval_s)
                if now - self._last_timer.setdefault(task.name, now - interval) >= interval:
                    self._last_timer[task.name] = now
                    self.trigger(task, "timer")
            await asyncio.sleep(tick_s)

    def _cooling_down(self, task: WatchTaskConfig) -> bool:
        return time.monotonic() - self._last_answer.get(task.name, -1e9) < task.cooldown_s

    def trigger(self, task: WatchTaskConfig, trigger: Trigger, force: bool = False) -> Job | None:
        """Queue the task's question (a waiting one for the same task is replaced); None when not now."""
        limits = self.core.degradation().limits
        if self.core.model is None or limits.watch_paused or limits.all_paused:
            return None
        if not force and self._cooling_down(task):
            return None
        job = Job(
            f"watch:{task.name}",
            Priority.BACKGROUND,
            partial(self._run, task, trigger, time.monotonic()),
            deadline=time.monotonic() + task.deadline_s,
            replaces=f"watch:{task.name}",
        )
        return self.core.scheduler.submit(job)

    async def _run(self, task: WatchTaskConfig, trigger: Trigger, started: float, ctx: JobContext) -> Any:
        core = self.core
        model = core.require_model()
        if trigger in ("motion", "timer") and self._cooling_down(task):
            raise JobRefusedError("cooldown", f"task {task.name}: answered less than cooldown_s ago")
        frame = core.frames(task.camera)
        if frame is None:
            raise JobRefusedError("no_frame", f"camera {task.camera}: no frame yet")
        state = core.degradation()
        budget = state.image_budget(task.image_budget or core.config.model.image_budget)
        try:
            result = await answer_watch(
                model,
                task,
                frame,
                ctx,
                image_budget=budget,
                max_new_tokens=state.limits.max_new_tokens,
                jpeg_quality=core.config.agent.snapshot_quality,
            )
        except InvalidAnswerError as exc:
            core.invalid += 1
            log.warning("task %s: no valid answer: %s", task.name, exc)
            core.publisher.publish_result(f"task/{task.name}/error", {"task": task.name, "error": str(exc)})
            return None
        self._last_answer[task.name] = time.monotonic()
        core.answers += 1
        core.decode_tokens_per_s = result.answer.decode_tokens_per_s
        payload = result_payload(task, result, trigger, model, level=int(state.level), started=started)
        if task.snapshot:
            core.publisher.publish_spooled(f"task/{task.name}/snapshot", result.snapshot.jpeg, retain=True)
        core.publisher.publish_result(f"task/{task.name}", payload, retain=True)
        log.info("task %s (%s): %s", task.name, trigger, payload["value"])
        return payload
