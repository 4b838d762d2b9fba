"""HTTP requests on the node's one model queue: interactive priority, deadlines, degradation limits, busy answers,
shared prefix reuse (the model's prefix cache), and a client that goes away cancels its generation."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from edge_agent.agent.converse import visible_text
from edge_agent.agent.model_host import LoadedModel
from edge_agent.agent.scheduler import Job, JobContext, JobRefusedError, Priority
from edge_agent.agent.shared import AgentCore
from edge_agent.config.http import HttpConfig
from edge_agent.messages import ToolCall
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.sampling import SamplingParams
from edge_agent.prompt.tool_syntax import ToolCallParseError, parse_tool_calls
from edge_agent.web.chat import ChatRequest, build_question
from edge_agent.web.errors import KINDS, ApiError

JOB_NAME = "http"
# scheduler refusals -> API error kinds
_REFUSALS = {
    "busy": "busy",
    "paused": "busy",
    "deadline": "timeout",
    "stopping": "unavailable",
    "no_model": "unavailable",
}


@dataclass(frozen=True)
class Reply:
    """A finished generation as the dialects report it."""

    text: str
    tool_calls: list[ToolCall]
    finish_reason: str  # "stop", "length" or "tool_calls"
    prompt_tokens: int
    completion_tokens: int
    prefill_s: float
    decode_s: float
    total_s: float
    model: str


def complete_calls(text: str) -> list[ToolCall]:
    """The tool calls in generated text; a last call cut short (max_tokens) is dropped, the complete ones kept."""
    try:
        return parse_tool_calls(text)
    except ToolCallParseError:
        cut = text.rfind("<|tool_call>")
        try:
            return parse_tool_calls(text[:cut]) if cut >= 0 else []
        except ToolCallParseError:
            return []


def finish_reason(reason: str, calls: list[ToolCall]) -> str:
    """The dialects' finish reason for the generator's."""
    if calls:
        return "tool_calls"
    return "length" if reason in ("length", "context") else "stop"


def sampling(model: LoadedModel, request: ChatRequest) -> SamplingParams:
    """The request's sampling over the model's generation_config defaults; ApiError for values out of range."""
    defaults = model.files.generation.sampling
    sample = bool(defaults.get("do_sample", True))
    temperature = request.temperature if request.temperature is not None else defaults.get("temperature", 1.0)
    try:
        return SamplingParams(
            temperature=float(temperature) if sample or request.temperature is not None else 0.0,
            top_k=int(request.top_k if request.top_k is not None else defaults.get("top_k", 0)),
            top_p=float(request.top_p if request.top_p is not None else defaults.get("top_p", 1.0)),
            min_p=float(defaults.get("min_p", 0.0)),
            seed=request.seed,
        )
    except ValueError as exc:
        raise ApiError("bad_request", str(exc)) from None


class ModelGate:
    """Runs chat requests as interactive jobs of the agent's scheduler."""

    def __init__(self, core: AgentCore, config: HttpConfig) -> None:
        self.core, self.config = core, config
        self.last_job_s = 5.0  # how long the last request held the model: the Retry-After estimate

    @property
    def model_name(self) -> str:
        """The name clients list and pick."""
        return self.config.model_name or self.core.config.model.path.name.lower()

    def check_model(self, name: str | None) -> None:
        """ApiError (404) unless `name` names this node's model (an Ollama `:latest` tag is the same model)."""
        ours = self.model_name
        if name is None or name not in (ours, f"{ours}:latest", ours.removesuffix(":latest")):
            raise ApiError("model_not_found", f"model {name!r} not found; this node serves {ours!r}", param="model")

    def retry_after_s(self) -> int:
        """Seconds until the queue has likely moved on."""
        return max(1, math.ceil(self.last_job_s * (self.core.scheduler.depth + 1)))

    def _refused(self, exc: JobRefusedError) -> ApiError:
        kind = _REFUSALS.get(exc.status, exc.status if exc.status in KINDS else "bad_request")
        retry = self.retry_after_s() if kind in ("busy", "unavailable") else None
        return ApiError(kind, str(exc), retry_after_s=retry)

    async def run(self, request: ChatRequest, on_text: Callable[[str], None] | None = None) -> Reply:
        """Queue the request, wait for the model, return the reply; cancelling this cancels the generation."""
        core = self.core
        if core.model is None and not core.model_pending:
            raise ApiError("unavailable", f"no model loaded: {core.model_error}", retry_after_s=60)
        if core.degradation().limits.all_paused:
            raise ApiError("busy", f"paused: {core.degradation().reason}", retry_after_s=60)
        deadline = time.monotonic() + self.config.timeout_s
        job = core.scheduler.submit(
            Job(JOB_NAME, Priority.INTERACTIVE, partial(self._generate, request, on_text), deadline=deadline)
        )
        try:
            result: Reply = await job.future
        except JobRefusedError as exc:
            raise self._refused(exc) from None
        except asyncio.CancelledError:  # the client went away (or the node is stopping)
            if core.scheduler.current is job:
                core.scheduler.cancel_current()
            elif not job.future.done():
                job.future.cancel()
            raise
        self.last_job_s = result.total_s
        return result

    async def stream(self, request: ChatRequest) -> AsyncGenerator[str | Reply, None]:
        """The answer's text as it is generated, then the Reply (text is not streamed when tools are declared:
        a call is known only once complete). Closing the iterator early cancels the generation."""
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[str | None] = asyncio.Queue()
        live = not request.tools or request.tool_choice == "none"

        def on_text(text: str) -> None:  # on the inference thread
            loop.call_soon_threadsafe(pieces.put_nowait, text)

        task = asyncio.ensure_future(self.run(request, on_text if live else None))
        task.add_done_callback(lambda _task: pieces.put_nowait(None))
        try:
            while (piece := await pieces.get()) is not None:
                yield piece
            yield task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    def _settings(self, model: LoadedModel, request: ChatRequest, ctx: JobContext, constraint: Any) -> Any:
        eos = set(model.eos_ids)
        if request.tools and request.tool_choice != "none":
            eos.add(model.tokenizer.token_id("<|tool_response>"))  # the model hands over to the client's tools
        limit = self.core.degradation().limits.max_new_tokens
        return GenerationSettings(
            max_new_tokens=min(request.max_tokens or limit, limit),
            max_context=model.max_context,
            eos_token_ids=frozenset(eos),
            stop_strings=request.stop,
            sampling=sampling(model, request),
            deadline=ctx.deadline,
            cancel=ctx.cancel,
            constraint=constraint,
        )

    def _constraint(self, model: LoadedModel, request: ChatRequest) -> Any:
        try:
            if request.schema is not None:
                return model.constraints.json_answer(request.schema)
            if request.tools and request.tool_choice != "none":
                return model.constraints.tool_calls(request.tools, request.tool_choice == "required")
        except ValueError as exc:  # a schema llguidance or the tool grammar cannot express
            raise ApiError("bad_request", str(exc)) from None
        return None

    async def _generate(self, request: ChatRequest, on_text: Callable[[str], None] | None, ctx: JobContext) -> Reply:
        try:
            return await self._answer(request, on_text, ctx)
        except ApiError as exc:  # a refusal, not a failure: no traceback in the log
            raise JobRefusedError(exc.kind, exc.message) from None

    async def _answer(self, request: ChatRequest, on_text: Callable[[str], None] | None, ctx: JobContext) -> Reply:
        core = self.core
        model = core.require_model()
        question = build_question(request, core.degradation().image_budget(core.config.model.image_budget))
        if question.images and not model.files.modalities["image"]:
            raise ApiError("bad_request", f"the model {model.label} cannot see images (no vision encoder)")
        if question.audio and not model.files.modalities["audio"]:
            raise ApiError("bad_request", f"the model {model.label} cannot hear audio (no audio encoder)")
        tools = bool(question.tools)
        settings = self._settings(model, request, ctx, self._constraint(model, request))
        started = time.monotonic()
        try:
            answer = await ctx.offload(model.answerer.answer, question, settings, on_text, tools, None)
        except ValueError as exc:  # a prompt longer than the context, an image too small to use, ...
            raise ApiError("bad_request", str(exc)) from None
        if answer.finish_reason in ("cancelled", "deadline"):
            raise JobRefusedError(answer.finish_reason, f"generation {answer.finish_reason}")
        core.decode_tokens_per_s = answer.decode_tokens_per_s
        calls = complete_calls(answer.text) if tools else []
        text = visible_text(model, answer.text) if tools else answer.text
        return Reply(
            text=text,
            tool_calls=calls,
            finish_reason=finish_reason(answer.finish_reason, calls),
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=len(answer.ids),
            prefill_s=answer.times.prefill_s,
            decode_s=answer.times.decode_s,
            total_s=time.monotonic() - started,
            model=self.model_name,
        )
