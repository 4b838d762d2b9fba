"""What the agent's handlers share: the config, the tools, the model queue, the loaded model and the counters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from edge_agent.agent.model_host import LoadedModel, ModelRefusedError, load_model
from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority, Scheduler
from edge_agent.config import Config, HealthConfig, ModelConfig
from edge_agent.health.degrade import DegradationState
from edge_agent.health.probes import Memory, Probes
from edge_agent.messages import Frame
from edge_agent.model.runtime.engine import EngineError
from edge_agent.model.store.files import ModelFilesError
from edge_agent.sinks.mqtt import MqttLink
from edge_agent.sinks.retained import RetainedTasks
from edge_agent.tools import Toolbox

log = logging.getLogger("edge_agent.agent.core")
ModelChoice = tuple[ModelConfig, HealthConfig, bool]  # model section, health section, use the fallback


class ResultPublisher(Protocol):
    """What the agent needs from the MQTT link."""

    def publish_result(self, suffix: str, payload: dict[str, Any], *, retain: bool = False) -> Any:
        """Spool a JSON result for `<base>/<suffix>`."""

    def publish_spooled(self, suffix: str, body: bytes, *, retain: bool = False) -> Any:
        """Spool raw bytes (a JPEG) for `<base>/<suffix>`."""

    def publish_event(self, data: dict[str, Any]) -> None:
        """Spool a Home Assistant event."""


class CurrentTasks:
    """The publisher as the agent's clients see it: a retained `task/<name>...` result of a task the current config
    no longer has (a job that was running when a reload removed it) is dropped, so its cleared topics stay clear."""

    def __init__(self, publisher: ResultPublisher, config: Callable[[], Config]) -> None:
        self.publisher, self.config = publisher, config

    def _removed(self, suffix: str, retain: bool) -> bool:
        parts = suffix.split("/")
        if not retain or len(parts) < 2 or parts[0] != "task":
            return False
        if any(task.name == parts[1] for task in self.config().tasks):
            return False
        log.info("task %s: its result came after a reload removed the task; not published to %s", parts[1], suffix)
        return True

    def publish_result(self, suffix: str, payload: dict[str, Any], *, retain: bool = False) -> Any:
        """Spool a JSON result for `<base>/<suffix>` (not a removed task's retained one)."""
        return None if self._removed(suffix, retain) else self.publisher.publish_result(suffix, payload, retain=retain)

    def publish_spooled(self, suffix: str, body: bytes, *, retain: bool = False) -> Any:
        """Spool raw bytes for `<base>/<suffix>` (not a removed task's retained ones)."""
        return None if self._removed(suffix, retain) else self.publisher.publish_spooled(suffix, body, retain=retain)

    def publish_event(self, data: dict[str, Any]) -> None:
        """Spool a Home Assistant event."""
        self.publisher.publish_event(data)


def memory_after_unloading(
    memory: Callable[[], Memory | None] | None, outgoing: LoadedModel | None
) -> Callable[[], Memory | None] | None:
    """The memory view admission sees during a swap: the model being unloaded counts as free (its estimate), or
    a node swapping to its smaller fallback under pressure would refuse it for want of the primary's memory."""
    chosen = outgoing.admission.chosen if outgoing is not None else None
    if chosen is None:
        return memory
    read, credit = memory or Probes().memory, chosen.total_mb

    def with_credit() -> Memory | None:
        now = read()
        return None if now is None else replace(now, available_mb=now.available_mb + credit)

    return with_credit


class AgentCore:
    """Owns the scheduler and the loaded model; reconfigurable (tasks, tools) without reloading the model."""

    def __init__(
        self,
        config: Config,
        toolbox: Toolbox,
        publisher: ResultPublisher,
        frames: Callable[[str], Frame | None],
        degradation: Callable[[], DegradationState],
    ) -> None:
        self.config, self.toolbox = config, toolbox
        self.publisher: ResultPublisher = CurrentTasks(publisher, lambda: self.config)
        self.frames, self.degradation = frames, degradation
        self.scheduler = Scheduler(config.agent.queue_size)
        self.model: LoadedModel | None = None
        self.model_error: str | None = "loading"
        self.memory: Callable[[], Memory | None] | None = None  # the node's memory view for admission (None: probed)
        self.answers = 0
        self.invalid = 0
        self.confirm_rejected = 0  # confirmations ignored: malformed, unauthorised or naming no held call
        self.read_values = 0  # messages taken on `mqtt_read` topics (a topic no tool reads is not counted)
        self.decode_tokens_per_s = 0.0  # of the last generation
        self.model_pending = True  # a model (re)load is queued or running (the app loads one at start)
        self._loads_waiting = 0  # model-load jobs whose future is not done yet
        self.on_model_change: Callable[[], None] = lambda: None
        self.retained = RetainedTasks(publisher) if isinstance(publisher, MqttLink) else None
        if self.retained is not None:  # tasks removed while the node was down lose their retained answers now
            self.retained.sweep(config)

    def reconfigure(self, config: Config, toolbox: Toolbox) -> None:
        """New tasks and tools (SIGHUP); the model and the queue stay. The new toolbox takes over the rate windows,
        the held calls of unchanged tools and the values read; removed tasks' retained answers are cleared."""
        toolbox.adopt(self.toolbox)
        self.config, self.toolbox = config, toolbox
        self.scheduler.size = config.agent.queue_size
        if self.retained is not None:
            self.retained.sweep(config)

    def require_model(self) -> LoadedModel:
        """The loaded model, or a refusal saying why there is none."""
        if self.model is None:
            raise JobRefusedError("no_model", f"no model loaded: {self.model_error}")
        return self.model

    def schedule_model_load(self, choices: list[ModelChoice], why: str) -> Job:
        """Replace the model between two inferences: free the old sessions, load the first choice that loads."""

        async def swap(ctx: JobContext) -> None:
            memory = memory_after_unloading(self.memory, self.model)
            self.model, self.model_error = None, "reloading"
            for model, health, use_fallback in choices:
                try:
                    self.model = await ctx.offload(load_model, model, health, use_fallback, memory)
                    self.model_error = None
                    break
                except (ModelRefusedError, ModelFilesError, EngineError, ValueError) as exc:
                    self.model_error = str(exc)
                    log.error("model %s not loaded: %s", model.path, exc)

        async def run(ctx: JobContext) -> None:
            try:
                await swap(ctx)
            finally:
                self.on_model_change()

        log.info("model: %s", why)
        job = Job("model-load", Priority.SYSTEM, run)  # never refused as busy: only a stopping node refuses it
        self.model_pending = True
        self._loads_waiting += 1
        job.future.add_done_callback(self._model_load_settled)  # loaded, failed, refused or cancelled alike
        return self.scheduler.submit(job)

    def _model_load_settled(self, _future: asyncio.Future[Any]) -> None:
        self._loads_waiting -= 1
        if self._loads_waiting == 0:
            self.model_pending = False

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
            "confirm_rejected": self.confirm_rejected,
            "mqtt_read_values": self.read_values,
            "decode_tokens_per_s": round(self.decode_tokens_per_s, 2),
        }
