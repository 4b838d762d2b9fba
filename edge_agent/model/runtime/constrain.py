"""Structured output through llguidance token masks: JSON answers and Gemma 4 tool calls."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import llguidance
import numpy as np

from edge_agent.messages import ToolSpec
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.prompt.chat import GEMMA4
from edge_agent.prompt.tool_grammar import tool_call_grammar
from edge_agent.prompt.tool_syntax import QUOTE

TOOL_CALL_START = "<|tool_call>"
TOOL_CALL_END = "<tool_call|>"
_CACHED_GRAMMARS = 32


class ConstraintError(RuntimeError):
    """The grammar rejected a token (or could not be built); generation cannot go on under it."""


def _summary(message: str) -> str:
    """llguidance's message without the parser-state dump it appends, on one line."""
    text = " ".join(message.split("<state>", maxsplit=1)[0].split())
    return (text[:297] + "...") if len(text) > 300 else text or "unknown llguidance error"


class _Matcher:
    """An llguidance matcher that raises ConstraintError instead of entering a silent error state."""

    def __init__(self, factory: ConstraintFactory, matcher: llguidance.LLMatcher) -> None:
        self._factory, self._matcher = factory, matcher

    def mask(self) -> np.ndarray:
        """Boolean mask of the tokens allowed next."""
        bits = self._matcher.compute_bitmask()
        self._check("computing the mask")
        return np.unpackbits(np.frombuffer(bits, dtype=np.uint8), bitorder="little")[: self._factory.vocab_size].view(
            np.bool_
        )

    def consume(self, token_id: int) -> None:
        """Advance by one token; ConstraintError when the grammar rejects it."""
        if not self._matcher.consume_token(token_id):
            text = self._factory.llg_tokenizer.dbg_tokens([token_id])
            raise ConstraintError(f"the grammar rejects token {token_id} {text}: {_summary(self._matcher.get_error())}")

    def _check(self, doing: str) -> None:
        if self._matcher.is_error():
            raise ConstraintError(f"output grammar failed {doing}: {_summary(self._matcher.get_error())}")


class JsonConstraint:
    """JSON valid against a schema, then the end-of-turn token; finished once that token is consumed."""

    def __init__(self, matcher: _Matcher, end_id: int, thought_end_id: int | None = None) -> None:
        self._matcher, self._end_id, self._done = matcher, end_id, False
        self._thinking = thought_end_id is not None  # free text until the thought channel closes
        self._thought_end_id = thought_end_id

    def allowed(self) -> np.ndarray | None:
        """Tokens that keep the output a prefix of a valid document (end of turn once it is complete)."""
        return None if self._thinking else self._matcher.mask()

    def advance(self, token_id: int) -> None:
        """Consume the picked token; ConstraintError when the grammar rejects it."""
        if self._thinking:
            self._thinking = token_id != self._thought_end_id
            return
        self._matcher.consume(token_id)
        self._done = token_id == self._end_id

    def finished(self) -> bool:
        """True once the end-of-turn token closed a valid document."""
        return self._done


class ToolCallConstraint:
    """Free text; after `<|tool_call>` the call grammar holds until `<tool_call|>`, then free text again.
    With `required`, the output must begin with a call (like `tool_choice: required` elsewhere)."""

    def __init__(self, factory: ConstraintFactory, grammar: str, required: bool = False) -> None:
        self._factory, self._grammar = factory, grammar
        self._call: _Matcher | None = None
        self._must_start = required

    @property
    def in_call(self) -> bool:
        """True while a tool call is being written."""
        return self._call is not None

    def allowed(self) -> np.ndarray | None:
        """None (any token) in free text; the call grammar's mask inside a call."""
        if self._must_start:
            only = np.zeros(self._factory.vocab_size, dtype=bool)
            only[self._factory.tool_call_start_id] = True
            return only
        return None if self._call is None else self._call.mask()

    def advance(self, token_id: int) -> None:
        """Consume the picked token, entering or leaving a call on its markers."""
        self._must_start = False
        if self._call is None:
            if token_id == self._factory.tool_call_start_id:
                self._call = self._factory.matcher(self._grammar)
            return
        self._call.consume(token_id)
        if token_id == self._factory.tool_call_end_id:
            self._call = None

    def finished(self) -> bool:
        """Never: the model's own end of turn ends the generation."""
        return False


class NoToolCall:
    """Free text in which no tool call may start (a transcript asked for while tools are declared)."""

    def __init__(self, vocab_size: int, tool_call_start_id: int) -> None:
        self._allowed = np.ones(vocab_size, dtype=bool)
        self._allowed[tool_call_start_id] = False

    def allowed(self) -> np.ndarray | None:
        """Every token but `<|tool_call>`."""
        return self._allowed

    def advance(self, token_id: int) -> None:
        """Nothing to track."""

    def finished(self) -> bool:
        """Never: the model's own end of turn ends the generation."""
        return False


class ConstraintFactory:
    """Builds constraints for one model; holds the costly llguidance tokenizer and compiled grammars."""

    def __init__(self, tokenizer: Tokenizer, tokenizer_json: Path, vocab_size: int) -> None:
        self.vocab_size = vocab_size
        self.end_of_turn_id = tokenizer.token_id(GEMMA4.turn_end)
        self.tool_call_start_id = tokenizer.token_id(TOOL_CALL_START)
        self.tool_call_end_id = tokenizer.token_id(TOOL_CALL_END)
        self.quote_id = tokenizer.token_id(QUOTE)
        self.thought_end_id = tokenizer.token_id(GEMMA4.channel_end)
        try:
            self.llg_tokenizer = llguidance.LLTokenizer(
                tokenizer_json.read_text(encoding="utf-8"), n_vocab=vocab_size, eos_token=self.end_of_turn_id
            )
        except (OSError, ValueError) as exc:
            raise ConstraintError(f"{tokenizer_json}: llguidance cannot use this tokenizer ({exc})") from None
        self._compiled: OrderedDict[str, llguidance.LLMatcher] = OrderedDict()

    def matcher(self, grammar: str, what: str = "the output grammar") -> _Matcher:
        """A fresh matcher at the start of `grammar` (compiled once, then copied); ValueError when it is unusable."""
        template = self._compiled.get(grammar)
        if template is None:
            error = llguidance.LLMatcher.validate_grammar(grammar, self.llg_tokenizer)
            if error:
                raise ValueError(f"{what} is not usable: {_summary(error)}")
            template = llguidance.LLMatcher(self.llg_tokenizer, grammar, log_level=0)
            if template.is_error():
                raise ValueError(f"{what} is not usable: {_summary(template.get_error())}")
            self._compiled[grammar] = template
            if len(self._compiled) > _CACHED_GRAMMARS:
                self._compiled.popitem(last=False)
        self._compiled.move_to_end(grammar)
        return _Matcher(self, template.deep_copy())

    def json_answer(self, schema: Mapping[str, Any], after_thought: bool = False) -> JsonConstraint:
        """Compact JSON valid against `schema`, followed by `<turn|>`; ValueError for a schema llguidance refuses.
        `after_thought`: the model thinks freely first, the JSON starts after `<channel|>` (thinking mode)."""
        try:
            grammar = llguidance.LLMatcher.grammar_from_json_schema(
                json.dumps(schema), overrides={"whitespace_flexible": False}
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a usable JSON schema: {exc}") from None
        thought_end = self.thought_end_id if after_thought else None
        return JsonConstraint(self.matcher(grammar, "the JSON schema"), self.end_of_turn_id, thought_end)

    def tool_calls(self, tools: Sequence[ToolSpec], required: bool = False) -> ToolCallConstraint:
        """Free text whose tool calls name a declared tool with valid arguments (`required`: begin with one);
        ToolSchemaError for a schema the grammar cannot express."""
        lark = tool_call_grammar(tools, self.quote_id, self.tool_call_end_id)
        grammar = llguidance.LLMatcher.grammar_from_lark(lark)
        self.matcher(grammar)  # compile now, so that a bad grammar fails before generation
        return ToolCallConstraint(self, grammar, required)

    def no_tool_calls(self) -> NoToolCall:
        """Free text without tool calls."""
        return NoToolCall(self.vocab_size, self.tool_call_start_id)
