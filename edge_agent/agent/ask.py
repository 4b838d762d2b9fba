"""Questions on `ask` (MQTT, Home Assistant's text and button): queued, answered with tools, replied with context."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np

from edge_agent.agent.converse import converse, visible_text
from edge_agent.agent.freshness import frame_age_s, stale_frame
from edge_agent.agent.model_host import LoadedModel
from edge_agent.agent.references import ReferenceLibrary
from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority
from edge_agent.agent.shared import AgentCore
from edge_agent.agent.stream import TextStream
from edge_agent.agent.watch import WatchTasks
from edge_agent.messages import AskReply, AskRequest, Frame
from edge_agent.model.media.from_bytes import audio_from_bytes, image_from_bytes
from edge_agent.model.runtime.answer import Question
from edge_agent.model.runtime.feature_cache import ReferenceImage

ASK_SYSTEM = "You are the assistant of a home, running on a small local computer. Answer briefly."


@dataclass(frozen=True)
class SentMedia:
    """The decoded image and recording a question carried, and the reference images it named (empty when none)."""

    images: tuple[np.ndarray, ...] = ()
    audio: tuple[np.ndarray, ...] = ()
    references: tuple[ReferenceImage, ...] = ()


class Questions:
    """The ask service's handler: a question becomes an interactive job; the Analyze button runs every watch task."""

    def __init__(self, core: AgentCore, watch: WatchTasks) -> None:
        self.core, self.watch = core, watch
        self.references = ReferenceLibrary(lambda: core.config.references)

    async def ask(self, request: AskRequest) -> AskReply:
        """Queue the question, wait for the model, reply with context."""
        core = self.core
        if core.model is None and not core.model_pending:
            return AskReply("error", error=f"no model loaded: {core.model_error}")
        if core.degradation().limits.all_paused:
            return AskReply("busy", error=f"paused: {core.degradation().reason}")
        if request.question is None:  # the Analyze button: every standing question now
            jobs = [self.watch.trigger(task, "button", force=True) for task in self.watch.tasks]
            started = [job.name for job in jobs if job is not None and not job.future.done()]
            label = core.model.label if core.model is not None else None
            return AskReply("ok", answer=f"analysing: {', '.join(started) or 'no watch tasks'}", model=label)
        if not request.question.strip():
            return AskReply("error", error="the question is empty (only whitespace)")
        if request.camera is not None and request.camera not in {c.name for c in core.config.cameras}:
            return AskReply("error", error=f"no camera named {request.camera!r}")
        try:
            sent = await self._decode(request)
        except ValueError as exc:  # ImageError, AudioError, UnknownReferenceError: not an image, too large, unknown
            return AskReply("error", error=str(exc))
        deadline = time.monotonic() + core.config.mqtt.ask_timeout_s
        job = core.scheduler.submit(
            Job("ask", Priority.INTERACTIVE, partial(self._run, request, sent), deadline=deadline)
        )
        try:
            payload = await job.future
        except JobRefusedError as exc:
            return AskReply("busy" if exc.status == "busy" else "error", error=str(exc))
        except asyncio.CancelledError:  # the ask service gave up (timeout) or the node is stopping
            self._abandon(job)
            raise
        return AskReply("ok", answer=payload.pop("answer"), model=payload["model"], meta=payload)

    async def _decode(self, request: AskRequest) -> SentMedia:
        """The image and recording the question carried, checked against the mqtt.ask_max_* bounds and decoded
        (off the loop), and the reference images it named; ValueError with one line saying what is wrong."""
        mqtt = self.core.config.mqtt
        budget = self.core.degradation().image_budget
        references = await asyncio.to_thread(self.references.resolve, request.references, budget)
        if request.image is not None and len(request.image) > mqtt.ask_max_image_bytes:
            size, most = len(request.image), mqtt.ask_max_image_bytes
            raise ValueError(f"image: {size} bytes is too large (mqtt.ask_max_image_bytes: {most})")
        images = (await asyncio.to_thread(image_from_bytes, request.image),) if request.image is not None else ()
        audio: tuple[np.ndarray, ...] = ()
        if request.audio is not None:
            audio = (await asyncio.to_thread(audio_from_bytes, request.audio, mqtt.ask_max_audio_s),)
        return SentMedia(images, audio, references)

    def _abandon(self, job: Job) -> None:
        if self.core.scheduler.current is job:
            self.core.scheduler.cancel_current()
        elif not job.future.done():
            job.future.cancel()

    def _frame(self, camera: str | None, model: LoadedModel) -> tuple[Frame | None, float | None]:
        """The camera's newest frame and its age (None, None without a camera); a refusal when the model cannot
        see, there is no frame yet, or the newest is older than the camera's max_frame_age_s."""
        if camera is None:
            return None, None
        if not model.files.modalities["image"]:
            blind = f"camera {camera}: the model {model.label} cannot see images (no vision encoder); ask without one"
            raise JobRefusedError("no_vision", blind)
        frame = self.core.frames(camera)
        if frame is None:
            raise JobRefusedError("no_frame", f"camera {camera}: no frame yet")
        age = frame_age_s(frame)
        why = stale_frame(self.core.config, frame, age)
        if why is not None:
            raise JobRefusedError("stale_frame", why)
        return frame, age

    @staticmethod
    def _check_senses(model: LoadedModel, sent: SentMedia) -> None:
        """Refuse an image (a reference image too) or a recording the model cannot take."""
        seen = (
            ("image", sent.images + tuple(r.image for r in sent.references), "vision"),
            ("audio", sent.audio, "audio"),
        )
        for kind, items, encoder in seen:
            if items and not model.files.modalities[kind]:
                why = f"{kind}: the model {model.label} cannot take {kind} (no {encoder} encoder)"
                raise JobRefusedError(f"no_{encoder}", why)

    async def _run(self, request: AskRequest, sent: SentMedia, ctx: JobContext) -> dict[str, Any]:
        core = self.core
        model = core.require_model()
        state = core.degradation()
        frame, age = self._frame(request.camera, model)
        self._check_senses(model, sent)
        tools = tuple(core.toolbox.specs()) if core.config.agent.ask_tools else ()
        stream = TextStream(partial(visible_text, model), request.partial) if request.partial is not None else None
        question = Question(
            request.question or "",
            images=((frame.image,) if frame is not None else ()) + sent.images,
            audio=sent.audio,
            system=ASK_SYSTEM,
            image_budget=state.image_budget(core.config.model.image_budget),
            thinking=core.config.model.thinking,
            tools=tools,
            references=sent.references,
        )
        exchange = await converse(
            model,
            core.toolbox,
            question,
            ctx,
            task="ask",
            allowed=None,
            max_steps=core.config.agent.ask_max_steps,
            max_new_tokens=state.limits.max_new_tokens,
            stream=stream,
        )
        core.decode_tokens_per_s = exchange.decode_tokens_per_s
        snapshot = f"{frame.camera}-{frame.index}" if frame is not None else None
        return {
            **exchange.to_json(),
            "task": "ask",
            "camera": request.camera,
            "trigger": "ask",
            "model": model.label,
            "degradation_level": int(state.level),
            "snapshot_id": snapshot,
            "frame_age_s": round(age, 3) if age is not None else None,
            "references": [reference.name for reference in sent.references],
        }
