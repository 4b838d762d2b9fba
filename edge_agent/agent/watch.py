"""Standing questions about a camera: what triggers them (motion, timers, the button), one at a time per task, and
their published results; a task with `clip:` asks about the camera's recent frames (agent/clip.py)."""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import Any

from edge_agent.agent.clip import (
    CameraClip,
    ClipFrames,
    PendingClips,
    camera_clip,
    clip_fields,
    clip_plan,
    clip_question,
    clip_window,
)
from edge_agent.agent.freshness import frame_age_s, stale_frame
from edge_agent.agent.references import ReferenceLibrary
from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority
from edge_agent.agent.senses import cannot_serve
from edge_agent.agent.shared import AgentCore, log
from edge_agent.agent.task_state import TaskAvailability
from edge_agent.agent.watch_answer import (
    InvalidAnswerError,
    Snapshot,
    Trigger,
    WatchAnswer,
    answer_watch,
    parse_answer,
    result_payload,
    take_snapshot,
    watch_system_prompt,
)
from edge_agent.config import WatchTaskConfig
from edge_agent.health.degrade import DegradationState
from edge_agent.messages import Frame, MotionResult
from edge_agent.model.runtime.generate import ContextLengthError

__all__ = [
    "InvalidAnswerError",
    "Snapshot",
    "Trigger",
    "WatchAnswer",
    "WatchTasks",
    "answer_watch",
    "parse_answer",
    "result_payload",
    "take_snapshot",
    "watch_system_prompt",
]


class WatchTasks:
    """Standing questions: triggered by motion, timers and the Analyze button; answers published retained."""

    def __init__(self, core: AgentCore, clip_frames: ClipFrames | None = None) -> None:
        self.core = core
        self.clip_frames = clip_frames  # a camera's kept frames (Capture.clip_frames); None: clip tasks are refused
        self.pending_clips = PendingClips()
        self._last_answer: dict[str, float] = {}
        self._last_timer: dict[str, float] = {}
        self.availability = TaskAvailability(core.publisher)
        self._recovering: set[str] = set()  # tasks asked once because their camera sends fresh frames again
        self.references = ReferenceLibrary(lambda: core.config.references)

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
                self.trigger(task, "motion", event=self._event_time(result))

    def _event_time(self, result: MotionResult) -> float:
        """Monotonic capture time of the frame the motion gate fired on (now, if a newer frame replaced it)."""
        frame = self.core.frames(result.camera)
        return frame.monotonic if frame is not None and frame.index == result.frame_index else time.monotonic()

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

    def trigger(
        self, task: WatchTaskConfig, trigger: Trigger, force: bool = False, event: float | None = None
    ) -> Job | None:
        """Queue the task's question (a waiting one for the same task is replaced); None when not now. A clip task
        triggered by an event (monotonic time) is queued once its post-roll has been captured."""
        if not self._may_ask(task) or (not force and self._cooling_down(task)):
            return None
        if task.clip is not None and event is not None:  # waits on the loop's timer, not in the queue
            delay = max(0.0, event + task.clip.post_roll_s - time.monotonic())
            self.pending_clips.defer(task.name, delay, partial(self._submit, task, trigger, event))
            return None
        return self._submit(task, trigger, None)

    def _may_ask(self, task: WatchTaskConfig) -> bool:
        limits = self.core.degradation().limits
        return not (self.core.model is None or limits.watch_paused or limits.all_paused or self.blind(task))

    def _submit(self, task: WatchTaskConfig, trigger: Trigger, event: float | None) -> Job | None:
        if event is not None and (task not in self.tasks or not self._may_ask(task)):  # changed while a clip waited
            return None
        job = Job(
            f"watch:{task.name}",
            Priority.BACKGROUND,
            partial(self._run, task, trigger, time.monotonic() if event is None else event, event=event),
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

    async def _clip(
        self, task: WatchTaskConfig, state: DegradationState, event: float | None, ctx: JobContext
    ) -> tuple[CameraClip, int]:
        """The clip a clip task asks about (decoded on the inference thread, whose turn this is) and its budget."""
        assert task.clip is not None
        if self.clip_frames is None:
            raise JobRefusedError("no_clip", f"task {task.name}: this node keeps no frames for clips")
        start, end = clip_window(task.clip, time.monotonic(), event)
        kept = self.clip_frames(task.camera, start, end)
        if not kept:
            raise JobRefusedError("no_frame", f"task {task.name}: camera {task.camera} has no kept frames for the clip")
        count, budget = clip_plan(task.clip, state)
        try:
            return await ctx.offload(camera_clip, kept, count, event), budget
        except ValueError as exc:
            raise JobRefusedError("no_frame", f"task {task.name}: {exc}") from None

    async def _run(
        self, task: WatchTaskConfig, trigger: Trigger, started: float, ctx: JobContext, event: float | None = None
    ) -> Any:
        core = self.core
        model = core.require_model()
        if trigger in ("motion", "timer") and self._cooling_down(task):
            raise JobRefusedError("cooldown", f"task {task.name}: answered less than cooldown_s ago")
        if self.blind(task):  # the model was swapped for one that cannot see while this job waited
            raise JobRefusedError("no_vision", f"task {task.name}: the model cannot see")
        frame, age = self._fresh_frame(task)
        state = core.degradation()
        budget = state.image_budget(task.image_budget or core.config.model.image_budget)
        clip, question = None, None
        if task.clip is not None:
            clip, budget = await self._clip(task, state, event, ctx)
            frame, question = clip.snapshot, clip_question(task, clip, budget)
        try:  # decoded on the inference thread (whose turn this is) the first time, then kept
            references = await ctx.offload(self.references.resolve, task.references, state.image_budget)
        except ValueError as exc:  # the file was replaced by one that does not decode
            raise JobRefusedError("no_reference", f"task {task.name}: {exc}") from None
        try:
            result = await answer_watch(
                model,
                task,
                frame,
                ctx,
                image_budget=budget,
                max_new_tokens=state.limits.max_new_tokens,
                jpeg_quality=core.config.agent.snapshot_quality,
                question=question,
                references=references,
            )
        except (InvalidAnswerError, ContextLengthError) as exc:  # e.g. a clip of more frames than the context holds
            core.invalid += 1
            log.warning("task %s: no valid answer: %s", task.name, exc)
            core.publisher.publish_result(f"task/{task.name}/error", {"task": task.name, "error": str(exc)})
            return None
        self._last_answer[task.name] = time.monotonic()
        core.answers += 1
        core.decode_tokens_per_s = result.answer.decode_tokens_per_s
        level = int(state.level)
        fields = clip_fields(clip, budget) if clip is not None else None
        payload = result_payload(task, result, trigger, model, level=level, started=started, frame_age=age, clip=fields)
        if task.snapshot:
            core.publisher.publish_spooled(f"task/{task.name}/snapshot", result.snapshot.jpeg, retain=True)
        self.availability.up(task.name)  # before the value: Home Assistant shows it at once
        core.publisher.publish_result(f"task/{task.name}", payload, retain=True)
        log.info("task %s (%s): %s", task.name, trigger, payload["value"])
        return payload
