"""The agent: turns motion, timers, questions and utterances into model jobs, and their answers into results."""

from __future__ import annotations

from collections.abc import Callable

from edge_agent.agent.ask import Questions
from edge_agent.agent.clip import ClipFrames
from edge_agent.agent.scheduler import Job
from edge_agent.agent.shared import AgentCore, ResultPublisher
from edge_agent.agent.voice import VoiceCommands
from edge_agent.agent.watch import Trigger, WatchTasks
from edge_agent.config import Config, WatchTaskConfig
from edge_agent.health.degrade import DegradationState
from edge_agent.messages import AskReply, AskRequest, Frame, MotionResult, Utterance
from edge_agent.tools import Toolbox


class Agent(AgentCore):
    """The model queue and loaded model (AgentCore) with its three clients: watch tasks, questions and voice."""

    def __init__(
        self,
        config: Config,
        toolbox: Toolbox,
        publisher: ResultPublisher,
        frames: Callable[[str], Frame | None],
        degradation: Callable[[], DegradationState],
        *,
        clip_frames: ClipFrames | None = None,
    ) -> None:
        """`clip_frames`: a camera's kept frames for clip tasks (Capture.clip_frames); None: clip tasks are refused."""
        super().__init__(config, toolbox, publisher, frames, degradation)
        self.watch = WatchTasks(self, clip_frames)
        self.questions = Questions(self, self.watch)
        self.voice = VoiceCommands(self)

    def on_motion(self, result: MotionResult) -> None:
        """Motion on a camera: its motion-driven watch tasks."""
        self.watch.on_motion(result)

    async def run_timers(self) -> None:
        """Interval watch tasks, until cancelled."""
        await self.watch.run_timers()

    def trigger_watch(self, task: WatchTaskConfig, trigger: Trigger, force: bool = False) -> Job | None:
        """Queue one watch task's question now (None when not now)."""
        return self.watch.trigger(task, trigger, force)

    async def ask(self, request: AskRequest) -> AskReply:
        """A question from the ask service."""
        return await self.questions.ask(request)

    def on_utterance(self, utterance: Utterance) -> Job | None:
        """An utterance for the voice task."""
        return self.voice.on_utterance(utterance)
