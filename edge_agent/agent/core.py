"""The agent: turns motion, timers, questions and utterances into model jobs, and their answers into results."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from functools import partial
from typing import Any, Protocol

from edge_agent.agent.converse import converse
from edge_agent.agent.model_host import LoadedModel, ModelRefusedError, load_model
from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority, Scheduler
from edge_agent.agent.voice import handle_utterance, voice_payload
from edge_agent.agent.watch import InvalidAnswerError, Trigger, answer_watch, result_payload
from edge_agent.config import Config, HealthConfig, ModelConfig, VoiceTaskConfig, WatchTaskConfig
from edge_agent.health.degrade import DegradationState
from edge_agent.messages import AskReply, AskRequest, Frame, MotionResult, Utterance
from edge_agent.model.runtime.answer import Question
from edge_agent.model.runtime.engine import EngineError
from edge_agent.model.store.files import ModelFilesError
from edge_agent.tools import Toolbox

log = logging.getLogger(__name__)
ModelChoice = tuple[ModelConfig, HealthConfig, bool]  # model section, health section, use the fallback
ASK_SYSTEM = "You are the assistant of a home, running on a small local computer. Answer briefly."


class ResultPublisher(Protocol):
    """What the agent needs from the MQTT link."""

    def publish_result(self, suffix: str, payload: dict[str, Any], *, retain: bool = False) -> Any:
        """Spool a JSON result for `<base>/<suffix>`."""

    def publish_spooled(self, suffix: str, body: bytes, *, retain: bool = False) -> Any:
        """Spool raw bytes (a JPEG) for `<base>/<suffix>`."""

    def publish_event(self, data: dict[str, Any]) -> None:
        """Spool a Home Assistant event."""


class Agent:
    """Owns the scheduler and the loaded model; reconfigurable (tasks, tools) without reloading the model."""

    def __init__(
        self,
        config: Config,
        toolbox: Toolbox,
        publisher: ResultPublisher,
        frames: Callable[[str], Frame | None],
        degradation: Callable[[], DegradationState],
    ) -> None:
        self.config, self.toolbox, self.publisher = config, toolbox, publisher
        self.frames, self.degradation = frames, degradation
        self.scheduler = Scheduler(config.agent.queue_size)
        self.model: LoadedModel | None = None
        self.model_error: str | None = "loading"
        self._last_answer: dict[str, float] = {}
        self._last_timer: dict[str, float] = {}
        self.answers = 0
        self.invalid = 0
        self.decode_tokens_per_s = 0.0  # of the last generation
        self.model_pending = True  # a model (re)load is queued or running (the app loads one at start)
        self.on_model_change: Callable[[], None] = lambda: None

    def reconfigure(self, config: Config, toolbox: Toolbox) -> None:
        """New tasks and tools (SIGHUP); the model and the queue stay."""
        self.config, self.toolbox = config, toolbox
        self.scheduler.size = config.agent.queue_size

    def schedule_model_load(self, choices: list[ModelChoice], why: str) -> Job:
        """Replace the model between two inferences: free the old sessions, load the first choice that loads."""

        async def swap(_ctx: JobContext) -> None:
            self.model, self.model_error = None, "reloading"
            for model, health, use_fallback in choices:
                try:
                    self.model = await asyncio.to_thread(load_model, model, health, use_fallback)
                    self.model_error = None
                    break
                except (ModelRefusedError, ModelFilesError, EngineError, ValueError) as exc:
                    self.model_error = str(exc)
                    log.error("model %s not loaded: %s", model.path, exc)

        async def run(ctx: JobContext) -> None:
            try:
                await swap(ctx)
            finally:
                self.model_pending = False
                self.on_model_change()

        log.info("model: %s", why)
        self.model_pending = True
        return self.scheduler.submit(Job("model-load", Priority.INTERACTIVE, run))

    def stats(self) -> dict[str, Any]:
        """Queue and answer counters for the `health` JSON."""
        scheduler = self.scheduler
        return {
            "queue_depth": scheduler.depth,
            "busy": scheduler.current.name if scheduler.current is not None else None,
            "completed": scheduler.completed,
            "refused": dict(scheduler.refused),
            "answers": self.answers,
            "invalid_answers": self.invalid,
            "decode_tokens_per_s": round(self.decode_tokens_per_s, 2),
        }

    @property
    def watch_tasks(self) -> list[WatchTaskConfig]:
        """The configured standing questions."""
        return [task for task in self.config.tasks if isinstance(task, WatchTaskConfig)]

    # --- watch -------------------------------------------------------------------------------------------------

    def on_motion(self, result: MotionResult) -> None:
        """Motion on a camera: trigger its motion-driven watch tasks (cooldown permitting)."""
        for task in self.watch_tasks:
            if task.on_motion and task.camera == result.camera:
                self.trigger_watch(task, "motion")

    async def run_timers(self, tick_s: float = 0.5) -> None:
        """Trigger interval watch tasks; intervals stretch with the degradation level."""
        while True:
            now = time.monotonic()
            for task in self.watch_tasks:
                if task.interval_s is None:
                    continue
                interval = self.degradation().watch_interval_s(task.interval_s)
                if now - self._last_timer.setdefault(task.name, now - interval) >= interval:
                    self._last_timer[task.name] = now
                    self.trigger_watch(task, "timer")
            await asyncio.sleep(tick_s)

    def trigger_watch(self, task: WatchTaskConfig, trigger: Trigger, force: bool = False) -> Job | None:
        """Queue the task's question (a waiting one for the same task is replaced); None when not now."""
        limits = self.degradation().limits
        if self.model is None or limits.watch_paused or limits.all_paused:
            return None
        if not force and time.monotonic() - self._last_answer.get(task.name, -1e9) < task.cooldown_s:
            return None
        job = Job(
            f"watch:{task.name}",
            Priority.BACKGROUND,
            partial(self._run_watch, task, trigger, time.monotonic()),
            deadline=time.monotonic() + task.deadline_s,
            replaces=f"watch:{task.name}",
        )
        return self.scheduler.submit(job)

    async def _run_watch(self, task: WatchTaskConfig, trigger: Trigger, started: float, ctx: JobContext) -> Any:
        model = self._require_model()
        if (
            trigger in ("motion", "timer")
            and time.monotonic() - self._last_answer.get(task.name, -1e9) < task.cooldown_s
        ):
            raise JobRefusedError("cooldown", f"task {task.name}: answered less than cooldown_s ago")
        frame = self.frames(task.camera)
        if frame is None:
            raise JobRefusedError("no_frame", f"camera {task.camera}: no frame yet")
        state = self.degradation()
        budget = state.image_budget(task.image_budget or self.config.model.image_budget)
        try:
            result = await answer_watch(
                model,
                task,
                frame,
                ctx,
                image_budget=budget,
                max_new_tokens=state.limits.max_new_tokens,
                jpeg_quality=self.config.agent.snapshot_quality,
            )
        except InvalidAnswerError as exc:
            self.invalid += 1
            log.warning("task %s: no valid answer: %s", task.name, exc)
            self.publisher.publish_result(f"task/{task.name}/error", {"task": task.name, "error": str(exc)})
            return None
        self._last_answer[task.name] = time.monotonic()
        self.answers += 1
        self.decode_tokens_per_s = result.answer.decode_tokens_per_s
        payload = result_payload(task, result, trigger, model, level=int(state.level), started=started)
        if task.snapshot:
            self.publisher.publish_spooled(f"task/{task.name}/snapshot", result.snapshot.jpeg, retain=True)
        self.publisher.publish_result(f"task/{task.name}", payload, retain=True)
        log.info("task %s (%s): %s", task.name, trigger, payload["value"])
        return payload

    # --- questions ---------------------------------------------------------------------------------------------

    def _require_model(self) -> LoadedModel:
        if self.model is None:
            raise JobRefusedError("no_model", f"no model loaded: {self.model_error}")
        return self.model

    async def ask(self, request: AskRequest) -> AskReply:
        """The ask service's handler: queue the question, wait for the model, reply with context."""
        if self.model is None and not self.model_pending:
            return AskReply("error", error=f"no model loaded: {self.model_error}")
        if self.degradation().limits.all_paused:
            return AskReply("busy", error=f"paused: {self.degradation().reason}")
        if request.question is None:  # the Analyze button: every standing question now
            jobs = [self.trigger_watch(task, "button", force=True) for task in self.watch_tasks]
            started = [job.name for job in jobs if job is not None and not job.future.done()]
            label = self.model.label if self.model is not None else None
            return AskReply("ok", answer=f"analysing: {', '.join(started) or 'no watch tasks'}", model=label)
        if request.camera is not None and request.camera not in {c.name for c in self.config.cameras}:
            return AskReply("error", error=f"no camera named {request.camera!r}")
        job = self.scheduler.submit(
            Job("ask", Priority.INTERACTIVE, partial(self._run_ask, request), deadline=self._ask_deadline())
        )
        try:
            payload = await job.future
        except JobRefusedError as exc:
            return AskReply("busy" if exc.status == "busy" else "error", error=str(exc))
        except asyncio.CancelledError:  # the ask service gave up (timeout) or the node is stopping
            self._abandon(job)
            raise
        return AskReply("ok", answer=payload.pop("answer"), model=payload["model"], meta=payload)

    def _ask_deadline(self) -> float:
        return time.monotonic() + self.config.mqtt.ask_timeout_s

    def _abandon(self, job: Job) -> None:
        if self.scheduler.current is job:
            self.scheduler.cancel_current()
        elif not job.future.done():
            job.future.cancel()

    async def _run_ask(self, request: AskRequest, ctx: JobContext) -> dict[str, Any]:
        model = self._require_model()
        state = self.degradation()
        frame = self.frames(request.camera) if request.camera else None
        if request.camera and frame is None:
            raise JobRefusedError("no_frame", f"camera {request.camera}: no frame yet")
        tools = tuple(self.toolbox.specs()) if self.config.agent.ask_tools else ()
        question = Question(
            request.question or "",
            images=(frame.image,) if frame is not None else (),
            system=ASK_SYSTEM,
            image_budget=state.image_budget(self.config.model.image_budget),
            thinking=self.config.model.thinking,
            tools=tools,
        )
        exchange = await converse(
            model,
            self.toolbox,
            question,
            ctx,
            task="ask",
            allowed=None,
            max_steps=self.config.agent.ask_max_steps,
            max_new_tokens=state.limits.max_new_tokens,
        )
        self.decode_tokens_per_s = exchange.decode_tokens_per_s
        snapshot = f"{frame.camera}-{frame.index}" if frame is not None else None
        return {
            **exchange.to_json(),
            "task": "ask",
            "camera": request.camera,
            "trigger": "ask",
            "model": model.label,
            "degradation_level": int(state.level),
            "snapshot_id": snapshot,
        }

    # --- voice -------------------------------------------------------------------------------------------------

    def on_utterance(self, utterance: Utterance) -> Job | None:
        """An utterance from the voice gate: queue it for the voice task."""
        task = next((t for t in self.config.tasks if isinstance(t, VoiceTaskConfig)), None)
        if task is None or (self.model is None and not self.model_pending) or self.degradation().limits.all_paused:
            return None
        job = Job(
            f"voice:{task.name}",
            Priority.INTERACTIVE,
            partial(self._run_voice, task, utterance),
            deadline=time.monotonic() + task.deadline_s,
        )
        return self.scheduler.submit(job)

    async def _run_voice(self, task: VoiceTaskConfig, utterance: Utterance, ctx: JobContext) -> dict[str, Any]:
        model = self._require_model()
        state = self.degradation()
        transcript, exchange = await handle_utterance(
            model, self.toolbox, task, utterance.samples, ctx, max_new_tokens=state.limits.max_new_tokens
        )
        self.decode_tokens_per_s = exchange.decode_tokens_per_s
        seconds = utterance.end_s - utterance.start_s
        payload = voice_payload(task, transcript, exchange, model, level=int(state.level), seconds=seconds)
        self.publisher.publish_result(f"task/{task.name}", payload)
        self.publisher.publish_event({"event_type": "voice_command", **payload})
        heard = (transcript or "")[:80]
        log.info("voice %s: %r -> %d tool call(s)", task.name, heard, len(exchange.outcomes))
        return payload
