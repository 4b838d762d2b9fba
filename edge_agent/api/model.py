"""`Model`: a Gemma 4 export loaded once, asked with text, images and audio; free text, JSON or tool calls."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, overload

from pydantic import ValidationError

from edge_agent.agent.converse import answer_settings, answer_streamed, visible_text
from edge_agent.agent.model_host import LoadedModel, ModelRefusedError, load_model
from edge_agent.agent.stream import TextStream
from edge_agent.agent.watch import InvalidAnswerError, parse_answer
from edge_agent.api.inputs import ToolLike, as_audio, as_image, as_tool
from edge_agent.api.reply import AskOptions, ModelError, Reply, ToolChoice
from edge_agent.config import HealthConfig, ModelConfig
from edge_agent.messages import ToolCall
from edge_agent.model.runtime.answer import Question
from edge_agent.model.runtime.engine import EngineError
from edge_agent.model.store.files import locate_model
from edge_agent.model.store.manifest import ModelFilesError
from edge_agent.prompt.tool_syntax import ToolCallParseError, parse_tool_calls

if TYPE_CHECKING:
    from typing_extensions import Unpack


@dataclass(frozen=True)
class _Request:
    """One prepared question: what to ask, how, and how to read the answer."""

    question: Question
    max_new_tokens: int
    schema: Mapping[str, Any] | None
    tool_choice: ToolChoice


class Model:
    """A loaded model; `ask` and `stream` may be called from any thread, one answer runs at a time."""

    def __init__(self, loaded: LoadedModel) -> None:
        """Use `Model.load`."""
        self._loaded: LoadedModel | None = loaded
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: str | Path,
        variant: str = "q4",
        threads: int | None = None,
        *,
        max_context: int = 4096,
        memory_limit_mb: int | None = None,
    ) -> Model:
        """Load the export in `path` (checksums checked against its manifest.json, if any, and memory admitted
        as the daemon does); ModelError with one line saying why not."""
        try:
            locate_model(path, variant, verify=False)  # the clearest message for a wrong path or variant
            config = ModelConfig.model_validate(
                {
                    "path": Path(path),
                    "variant": variant,
                    "intra_op_threads": threads,
                    "max_context": max_context,
                    "memory_limit_mb": memory_limit_mb,
                }
            )
            return cls(load_model(config, HealthConfig()))
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            raise ModelError(f"cannot load {path}: {problems}") from None
        except (ModelFilesError, EngineError, ModelRefusedError) as exc:
            raise ModelError(f"cannot load the model: {exc}") from None

    @property
    def label(self) -> str:
        """The model's name and variant, e.g. 'gemma-4-E2B-it-ONNX (q4)'."""
        return self._model().label

    @property
    def modalities(self) -> dict[str, bool]:
        """Which inputs it takes: {'text': True, 'image': ..., 'audio': ...}."""
        return dict(self._model().files.modalities)

    def _model(self) -> LoadedModel:
        if self._loaded is None:
            raise ModelError("the model is closed")
        return self._loaded

    def reply(
        self,
        text: str,
        *,
        schema: Mapping[str, Any] | None = None,
        tools: Sequence[ToolLike] | None = None,
        **options: Unpack[AskOptions],
    ) -> Reply:
        """Answer one question (greedy: the same question gets the same answer) and say everything about it.
        `schema`: the answer is JSON valid against it (`value`); `tools`: the model may call them (`tool_calls`;
        nothing runs them). ValueError for bad input (an unreadable image, a schema the grammar cannot express);
        InvalidAnswerError when `max_new_tokens` cut a JSON answer or a tool call short."""
        return self._run(self._prepare(text, schema, tools, options), None, None)

    @overload
    def ask(
        self,
        text: str,
        *,
        schema: None = None,
        tools: None = None,
        stream: Literal[False] = False,
        **options: Unpack[AskOptions],
    ) -> str: ...
    @overload
    def ask(
        self,
        text: str,
        *,
        schema: Mapping[str, Any],
        tools: None = None,
        stream: Literal[False] = False,
        **options: Unpack[AskOptions],
    ) -> Any: ...
    @overload
    def ask(
        self,
        text: str,
        *,
        schema: None = None,
        tools: Sequence[ToolLike],
        stream: Literal[False] = False,
        **options: Unpack[AskOptions],
    ) -> list[ToolCall]: ...
    @overload
    def ask(
        self,
        text: str,
        *,
        schema: Mapping[str, Any] | None = None,
        tools: Sequence[ToolLike] | None = None,
        stream: Literal[True],
        **options: Unpack[AskOptions],
    ) -> Iterator[str]: ...
    def ask(
        self,
        text: str,
        *,
        schema: Mapping[str, Any] | None = None,
        tools: Sequence[ToolLike] | None = None,
        stream: bool = False,
        **options: Unpack[AskOptions],
    ) -> Any:
        """The answer alone: its text; with `schema`, the parsed JSON value; with `tools`, the list of tool calls;
        with `stream=True`, an iterator of text pieces (see `stream`). Options and errors as for `reply`."""
        if stream:
            return self.stream(text, schema=schema, tools=tools, **options)
        answer = self.reply(text, schema=schema, tools=tools, **options)
        if schema is not None:
            return answer.value
        if tools:
            return list(answer.tool_calls)
        return answer.text

    def stream(
        self,
        text: str,
        *,
        schema: Mapping[str, Any] | None = None,
        tools: Sequence[ToolLike] | None = None,
        **options: Unpack[AskOptions],
    ) -> Iterator[str]:
        """The answer's text in pieces as it is written; joined, they are `reply(...).text`. Bad input raises
        here, at the call; leaving the loop early stops the generation."""
        request = self._prepare(text, schema, tools, options)
        pieces: queue.SimpleQueue[str | BaseException | None] = queue.SimpleQueue()
        cancel = threading.Event()

        def work() -> None:
            try:
                self._run(request, TextStream(self._readable, lambda piece, _reset: pieces.put(piece), 0.0), cancel)
            except BaseException as exc:  # handed to the caller's thread
                pieces.put(exc)
            else:
                pieces.put(None)

        def pieces_of_the_answer() -> Iterator[str]:
            worker = threading.Thread(target=work, name="edge-agent-stream", daemon=True)
            worker.start()
            try:
                while (item := pieces.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    yield item
            finally:
                cancel.set()
                worker.join()

        return pieces_of_the_answer()

    def _readable(self, raw: str) -> str:
        return visible_text(self._model(), raw)

    def _prepare(
        self, text: str, schema: Mapping[str, Any] | None, tools: Sequence[ToolLike] | None, options: AskOptions
    ) -> _Request:
        """Check and convert the inputs (before the model is busy with them)."""
        unknown = set(options) - set(AskOptions.__annotations__)
        if unknown:
            raise TypeError(f"unknown option(s): {', '.join(sorted(unknown))}")
        if not isinstance(text, str):
            raise ValueError(f"the question must be a str, not {type(text).__name__}")
        images, audio = options.get("images", ()), options.get("audio", ())
        if isinstance(images, (str, bytes)) or isinstance(audio, (str, bytes)):
            raise ValueError("images and audio are lists (of paths, bytes or arrays), not one item")
        if schema is not None and tools:
            raise ValueError("give a schema or tools, not both")
        tool_choice = options.get("tool_choice", "auto")
        if tool_choice not in ("auto", "required"):
            raise ValueError(f"tool_choice must be 'auto' or 'required', not {tool_choice!r}")
        max_new_tokens = options.get("max_new_tokens", 256)
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {max_new_tokens}")
        system = options.get("system")
        if schema is not None and system is None:
            system = "Reply with JSON only, valid against this JSON Schema: " + json.dumps(schema, sort_keys=True)
        question = Question(
            text,
            images=tuple(as_image(item) for item in images),
            audio=tuple(as_audio(item) for item in audio),
            system=system,
            image_budget=options.get("image_budget", 280),
            thinking=options.get("thinking", False),
            tools=tuple(as_tool(tool) for tool in tools or ()),
        )
        return _Request(question, max_new_tokens, schema, tool_choice)

    def _run(self, request: _Request, stream: TextStream | None, cancel: threading.Event | None) -> Reply:
        """Generate under the request's constraint and read the answer (holds the model meanwhile)."""
        with self._lock:
            model = self._model()
            question = request.question
            model.answerer.check_supported(question)
            constraint: Any = None
            if request.schema is not None:
                constraint = model.constraints.json_answer(request.schema, after_thought=question.thinking)
            elif question.tools:
                constraint = model.constraints.tool_calls(question.tools, request.tool_choice == "required")
            settings = replace(answer_settings(model, question, request.max_new_tokens, constraint), cancel=cancel)
            answer = answer_streamed(model, question, settings, None, stream)
        text = visible_text(model, answer.text)
        value = None
        if request.schema is not None:
            value = parse_answer(text, dict(request.schema))
        calls: list[ToolCall] = []
        if question.tools:
            try:
                calls = parse_tool_calls(answer.text)
            except ToolCallParseError as exc:  # cut by max_new_tokens in the middle of a call
                raise InvalidAnswerError(f"a tool call was not completed: {exc}") from None
        return Reply(
            text=text,
            value=value,
            tool_calls=tuple(calls),
            finish_reason=answer.finish_reason,
            prompt_tokens=answer.prompt_tokens,
            timings_ms=answer.times.as_ms(),
            decode_tokens_per_s=answer.decode_tokens_per_s,
            ids=tuple(answer.ids),
        )

    def close(self) -> None:
        """Free the model's memory (sessions, caches); later calls raise ModelError."""
        with self._lock:
            self._loaded = None

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()
