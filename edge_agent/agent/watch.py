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
from edge_agent.agent.freshness import frame_age_s, stale_frame
from edge_agent.agent.model_host import LoadedModel
from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority
from edge_agent.agent.senses import cannot_serve
from edge_agent.agent.shared import AgentCore, log
from edge_agent.agent.task_state import TaskAvailability
from edge_agent.config import WatchTaskConfig
from edge_agent.messages import Frame, MotionResult
from edge_agent.model.runtime.answer import Answer, Question

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
    task: WatchTaskConfig,
    result: WatchAnswer,
    trigger: Trigger,
    model: LoadedModel,
    *,
    level: int,
    started: float,
    frame_age: float,
) -> dict[str, Any]:
    """The retained `task/<name>` JSON: the value and the context every result carries (`frame_age_s`: how old the
    frame was when the model was given it)."""
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
        "frame_age_s": round(frame_age, 3),
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
        self.availability = TaskAvailability(core.publisher)
        self._recovering: set[str] = set()  # tasks asked once because their camera sends fresh frames again

    @property
    def tasks(self) -> list[WatchTaskConfig]:
        """The configured standing questions."""
        return [task for task in self.core.config.tasks if isinstance(task, WatchTaskConfig)]

    def problems(self) -> dict[str, str]:
        """Why each watch task that cannot answer now cannot (for `state`): no vision encoder, frames too old."""
        problems = self.availability.problems([task.name for task in self.tasks])
        files = self.core.model.files if self.core.model is not None else None
        if files is not None:  # known as soon as the model is loaded
            problems.update({t.name: why for t in self.tasks if (why := cannot_serve(t, files)) is not None})
        return problems

    def blind(self, task: WatchTaskConfig) -> bool:
        """The loaded model cannot see (a text-only export): said once per task (log, `task/<name>/error`,
        availability `offline`), and the task is never queued."""
        model = self.core.model
        why = cannot_serve(task, model.files) if model is not None else None
        if why is None:
            self.availability.clear(task.name, "no_vision")
            return False
        self.availability.down(task.name, "no_vision", why)
        return True

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
                if self.blind(task):  # said once, as soon as a model that cannot see is loaded
                    continue
                self._follow_camera(task)
                if task.interval_s is None:
                    continue
                interval = self.core.degradation().watch_interval_s(task.interval_s)
                if now - self._last_timer.setdefault(task.name, now - interval) >= interval:
                    self._last_timer[task.name] = now
                    self.trigger(task, "timer")
            await asyncio.sleep(tick_s)

    def _follow_camera(self, task: WatchTaskConfig) -> None:
        """Between answers too: the task becomes unavailable as soon as its camera's newest frame is too old (a
        motion-only task is never triggered then), and is asked once when fresh frames come again, so its entity
        comes back without waiting for motion or the next interval."""
        frame = self.core.frames(task.camera)
        if frame is None:
            return
        age = frame_age_s(frame)
        why = stale_frame(self.core.config, frame, age)
        if why is not None:
            self._stale(task, why, age)
        elif (
            self.availability.is_down(task.name, "stale_frame")
            and task.name not in self._recovering
            and self.trigger(task, "recovered", force=True) is not None
        ):
            self._recovering.add(task.name)

    def _stale(self, task: WatchTaskConfig, why: str, age: float) -> None:
        self._recovering.discard(task.name)
        context = {"camera": task.camera, "frame_age_s": round(age, 3)}
        self.availability.down(task.name, "stale_frame", why, **context)

    def _cooling_down(self, task: WatchTaskConfig) -> bool:
        return time.monotonic() - self._last_answer.get(task.name, -1e9) < task.cooldown_s

    def trigger(self, task: WatchTaskConfig, trigger: Trigger, force: bool = False) -> Job | None:
        """Queue the task's question (a waiting one for the same task is replaced); None when not now."""
        limits = self.core.degradation().limits
        if self.core.model is None or limits.watch_paused or limits.all_paused or self.blind(task):
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

    def _fresh_frame(self, task: WatchTaskConfig) -> tuple[Frame, float]:
        """The camera's newest frame and its age; a refusal when there is none or it is too old (the task's entity
        then becomes unavailable, said once)."""
        frame = self.core.frames(task.camera)
        if frame is None:
            raise JobRefusedError("no_frame", f"camera {task.camera}: no frame yet")
        age = frame_age_s(frame)
        why = stale_frame(self.core.config, frame, age)
        if why is not None:
            self._stale(task, why, age)
            raise JobRefusedError("stale_frame", why)
        return frame, age

    async def _run(self, task: WatchTaskConfig, trigger: Trigger, started: float, ctx: JobContext) -> Any:
        core = self.core
        model = core.require_model()
        if trigger in ("motion", "timer") and self._cooling_down(task):
            raise JobRefusedError("cooldown", f"task {task.name}: answered less than cooldown_s ago")
        if self.blind(task):  # the model was swapped for one that cannot see while this job waited
            raise JobRefusedError("no_vision", f"task {task.name}: the model cannot see")
        frame, age = self._fresh_frame(task)
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
        level = int(state.level)
        payload = result_payload(task, result, trigger, model, level=level, started=started, frame_age=age)
        if task.snapshot:
            core.publisher.publish_spooled(f"task/{task.name}/snapshot", result.snapshot.jpeg, retain=True)
        self.availability.up(task.name)  # before the value: Home Assistant shows it at once
        core.publisher.publish_result(f"task/{task.name}", payload, retain=True)
        log.info("task %s (%s): %s", task.name, trigger, payload["value"])
        return payload
