"""Chat requests of either dialect become Gemma 4 prompts: tool results go back in the model's native form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.app.reload import sections_needing_restart
from edge_agent.config import Config
from edge_agent.config.http import HttpConfig, is_loopback
from edge_agent.messages import ToolCall, ToolSpec
from edge_agent.prompt.chat import Message, render_prompt
from edge_agent.web.chat import ChatRequest, Turn, build_question
from edge_agent.web.errors import ApiError

LIGHT = ToolSpec("set_light", "Switch the light.", {"type": "object", "properties": {"state": {"type": "string"}}})


def prompt(request: ChatRequest) -> str:
    """What Answerer.prompt_ids renders for the request's question."""
    question = build_question(request, 70)
    turns = [Message("system", question.system)] if question.system else []
    turns.append(Message("user", question.text, media=("image",) * len(question.images)))
    return render_prompt([*turns, *question.steps], question.tools)


def test_tool_results_become_the_model_turns_tool_responses_as_the_template_renders_them() -> None:
    call = ToolCall("set_light", {"state": "ON"})
    turns = [
        Turn("system", "Be brief."),
        Turn("user", "Light on, please."),
        Turn("assistant", "", tool_calls=[("call_1", call)]),
        Turn("tool", '{"ok": true, "level": 3}', tool_call_id="call_1"),
    ]
    text = prompt(ChatRequest(turns, tools=(LIGHT,)))
    expected_tail = (
        "<|turn>user\nLight on, please.<turn|>\n"
        '<|turn>model\n<|tool_call>call:set_light{state:<|"|>ON<|"|>}<tool_call|>'
        "<|tool_response>response:set_light{level:3,ok:true}<tool_response|><|channel>thought\n<channel|>"
    )  # the model's turn goes on after the results, as the template renders `tool_responses`
    assert text.startswith("<bos><|turn>system\nBe brief.<|tool>") and text.endswith(expected_tail)
    assert "<|turn>tool" not in text  # never a plain `tool` turn
    finished = prompt(ChatRequest([*turns, Turn("assistant", "Done."), Turn("user", "Thanks")], tools=(LIGHT,)))
    assert "<tool_response|>Done.<turn|>\n<|turn>user\nThanks<turn|>\n<|turn>model\n" in finished


def test_results_are_matched_by_id_by_name_or_by_position() -> None:
    calls = [("a", ToolCall("set_light", {"state": "ON"})), ("b", ToolCall("get_time", {}))]
    by_id = [Turn("user", "x"), Turn("assistant", tool_calls=calls), Turn("tool", "12:00", tool_call_id="b")]
    assert '<|tool_response>response:get_time{value:<|"|>12:00<|"|>}' in prompt(ChatRequest(by_id))
    by_name = [*by_id[:2], Turn("tool", "1", tool_name="get_time")]
    assert "response:get_time{value:1}" in prompt(ChatRequest(by_name))
    by_position = [*by_id[:2], Turn("tool", "on"), Turn("tool", "noon")]
    rendered = prompt(ChatRequest(by_position))
    assert rendered.index("response:set_light") < rendered.index("response:get_time")


def test_images_and_refusals() -> None:
    frame = np.zeros((8, 8, 3), np.uint8)
    question = build_question(ChatRequest([Turn("user", "a", [frame]), Turn("user", "b", [frame])]), 140)
    assert len(question.images) == 2 and question.image_budget == 140
    with pytest.raises(ApiError, match="must follow an assistant message"):
        build_question(ChatRequest([Turn("user", "x"), Turn("tool", "1")]), 70)
    with pytest.raises(ApiError, match="no user message"):
        build_question(ChatRequest([Turn("system", "x")]), 70)
    assert build_question(ChatRequest([Turn("user", "x")], tools=(LIGHT,), tool_choice="none"), 70).tools == ()


def test_the_http_section_is_safe_by_default() -> None:
    assert not HttpConfig().enabled and HttpConfig().host == "127.0.0.1"
    for host in ("127.0.0.1", "::1", "localhost", "127.8.0.1"):
        assert is_loopback(host)
    for host in ("0.0.0.0", "192.168.1.5", "node.local", "::"):
        assert not is_loopback(host)
    with pytest.raises(ValueError, match="'token' is required"):
        HttpConfig(enabled=True, host="0.0.0.0")
    with pytest.raises(ValueError, match="at least 16"):
        HttpConfig(enabled=True, host="0.0.0.0", token="short")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="http"):
        HttpConfig(fetch_urls=["file:///etc/"])
    assert HttpConfig(enabled=True, host="0.0.0.0", token="x" * 16).token is not None  # type: ignore[arg-type]


def test_changing_the_http_section_needs_a_restart(model_dir: Path) -> None:
    old = Config.model_validate({"model": {"path": str(model_dir)}})
    new = Config.model_validate({"model": {"path": str(model_dir)}, "http": {"enabled": True, "port": 8080}})
    assert sections_needing_restart(old, new) == ["http"]


def test_a_call_cut_short_by_max_tokens_leaves_the_complete_ones() -> None:
    from edge_agent.web.gate import complete_calls

    whole = '<|tool_call>call:set_light{state:<|"|>ON<|"|>}<tool_call|>'
    assert [c.name for c in complete_calls(whole + whole + "<|tool_call>call:set_li")] == ["set_light", "set_light"]
    assert complete_calls("<|tool_call>call:set_li") == []
    assert complete_calls("no calls at all") == []
