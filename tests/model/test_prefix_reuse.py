"""Prefix reuse: a request's later steps and later requests start from cached prefixes, with the same ids as a
fresh run, and the sequence the decoder holds is exactly the prompt the published chat template renders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_agent.messages import ToolCall, ToolResponse, ToolSpec
from edge_agent.model.media.vision import load_image
from edge_agent.model.runtime.answer import Answerer, Question
from edge_agent.model.runtime.context import Conversation, PrefixCache, common_prefix
from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.multimodal import MediaTokens, expand_placeholders
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model
from edge_agent.prompt.chat import Message

MODELS = Path(__file__).resolve().parents[2] / "models"
FIXTURES = ["tiny-gemma4", "tiny-gemma4-b"]
TEMPLATE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "gemma4-chat-template.jinja"
SYSTEM = "You watch a camera of a home and answer questions about it briefly, in one sentence, without guessing."
LIGHT = ToolSpec(
    "set_light",
    "Switch a light.",
    {"type": "object", "properties": {"room": {"type": "string"}, "on": {"type": "boolean"}}, "required": ["room"]},
)
CLOCK = ToolSpec("get_time", "The time.", {"type": "object", "properties": {}})
GREEDY = GenerationSettings(max_new_tokens=6, max_context=512, eos_token_ids=frozenset())


@pytest.fixture(scope="module", params=[(name, variant) for name in FIXTURES for variant in ("fp32", "q4")])
def model(request: pytest.FixtureRequest) -> tuple[TextEngine, Tokenizer]:
    name, variant = request.param
    return TextEngine(locate_model(MODELS / name, variant)), Tokenizer(MODELS / name)


def fresh(model: tuple[TextEngine, Tokenizer]) -> Answerer:
    """An answerer that shares nothing: no prefix cache."""
    return Answerer(*model, prefix_cache_bytes=0)


def test_a_shared_system_turn_is_reused_by_the_next_request_with_the_same_ids(
    model: tuple[TextEngine, Tokenizer],
) -> None:
    warm = Answerer(*model)
    warm.answer(Question("Is the garage door open?", system=SYSTEM, tools=(LIGHT, CLOCK)), GREEDY)
    second = Question("Which lights are on in the kitchen?", system=SYSTEM, tools=(LIGHT, CLOCK))
    reused = warm.answer(second, GREEDY)
    cold = fresh(model).answer(second, GREEDY)
    assert reused.reused_tokens > 0 and cold.reused_tokens == 0
    assert reused.prefilled_tokens + reused.reused_tokens == cold.prefilled_tokens == cold.prompt_tokens
    assert reused.ids == cold.ids


def test_tool_steps_continue_the_request_cache_with_the_same_ids(model: tuple[TextEngine, Tokenizer]) -> None:
    question = Question("Turn on the kitchen light.", system=SYSTEM, tools=(LIGHT,))
    context = Conversation()
    answerer = Answerer(*model)
    first = answerer.answer(question, GREEDY, conversation=context)
    turn = Message(
        "model",
        tool_calls=(ToolCall("set_light", {"room": "kitchen", "on": True}),),
        tool_responses=(ToolResponse("set_light", {"ok": True}),),
    )
    step = Question(question.text, system=SYSTEM, tools=(LIGHT,), steps=(turn,))
    second = answerer.answer(step, GREEDY, conversation=context)
    cold = fresh(model).answer(step, GREEDY)
    assert second.ids == cold.ids
    assert second.reused_tokens >= first.prompt_tokens - 8  # the whole first prompt but its generation prompt
    assert context.prefilled_tokens == first.prompt_tokens + second.prefilled_tokens
    assert context.ids[: second.prompt_tokens] == model[1].encode(render_reference(step))


def test_a_request_encodes_its_image_once_across_steps() -> None:
    root = MODELS / "tiny-gemma4"
    answerer = Answerer(TextEngine(locate_model(root, "q4")), Tokenizer(root))
    image = load_image(root / json.loads((root / "goldens.json").read_text())["multimodal"][0]["images"][0])
    question = Question("Is the garage door open?", images=(image,), image_budget=70, tools=(CLOCK,))
    context = Conversation()
    answerer.answer(question, GREEDY, conversation=context)
    turn = Message("model", tool_calls=(ToolCall("get_time", {}),), tool_responses=(ToolResponse("get_time", "9"),))
    step = Question(question.text, images=(image,), image_budget=70, tools=(CLOCK,), steps=(turn,))
    again = answerer.answer(step, GREEDY, conversation=context)
    cold = Answerer(answerer.engine, answerer.tokenizer, prefix_cache_bytes=0).answer(step, GREEDY)
    assert context.encoder_runs == 1 and again.times.encoder_s == 0.0
    assert again.ids == cold.ids and again.reused_tokens > sum(again.image_tokens)


def test_prefixes_never_reach_into_media() -> None:
    root = MODELS / "tiny-gemma4"
    answerer = Answerer(TextEngine(locate_model(root, "q4")), Tokenizer(root))
    frames = [np.full((96, 128, 3), value, dtype=np.uint8) for value in (0, 255)]
    dark, bright = (Question("Is it dark?", images=(frame,), system=SYSTEM, image_budget=70) for frame in frames)
    answerer.answer(dark, GREEDY)
    warm = answerer.answer(bright, GREEDY)
    cold = Answerer(answerer.engine, answerer.tokenizer, prefix_cache_bytes=0).answer(bright, GREEDY)
    tokens = MediaTokens.from_info(answerer.engine.files.info)
    prompt = expand_placeholders(answerer.prompt_ids(bright), tokens, warm.image_tokens)
    first_image = prompt.index(tokens.image)
    assert 0 < warm.reused_tokens <= first_image and warm.ids == cold.ids


def test_the_prefix_cache_keeps_to_its_byte_budget(model: tuple[TextEngine, Tokenizer]) -> None:
    engine = model[0]
    cache = engine.forward(list(range(3, 60)))[1]
    prefixes = PrefixCache(max_bytes=2 * cache.nbytes)
    for start in range(3, 8):
        prefixes.store([start, *range(4, 60)], cache)
    assert prefixes.nbytes <= 2 * cache.nbytes and len(prefixes._entries) == 2
    assert prefixes.longest([7, *range(4, 40)], limit=30) is not None
    assert prefixes.longest([3, *range(4, 40)], limit=30) is None  # dropped, least recently used


def render_reference(question: Question) -> str:
    """The prompt as the published template renders it (jinja2, as transformers' apply_chat_template does)."""
    jinja2 = pytest.importorskip("jinja2")
    if not TEMPLATE.is_file():
        pytest.skip(f"the published chat template is not at {TEMPLATE} (../shared/reference)")
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    messages: list[dict[str, Any]] = [{"role": "system", "content": question.system}] if question.system else []
    content = [{"type": "image"}] * len(question.images) + [{"type": "audio"}] * len(question.audio)
    messages.append({"role": "user", "content": [*content, {"type": "text", "text": question.text}]})
    for turn in question.steps:
        calls = [{"function": {"name": c.name, "arguments": dict(c.arguments)}} for c in turn.tool_calls]
        responses = [{"name": r.name, "response": r.response} for r in turn.tool_responses]
        messages.append({"role": "model", "content": turn.text, "tool_calls": calls, "tool_responses": responses})
    tools = [
        {"type": "function", "function": vars(tool) | {"parameters": dict(tool.parameters)}} for tool in question.tools
    ]
    text: str = environment.from_string(TEMPLATE.read_text()).render(
        messages=messages, tools=tools, bos_token="<bos>", add_generation_prompt=True, enable_thinking=question.thinking
    )
    return text


words = st.text(alphabet="abcdefghij klmnop?", min_size=1, max_size=30).map(str.strip).filter(bool)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    system=st.one_of(st.none(), words),
    first=words,
    second=words,
    tools=st.sampled_from([(), (CLOCK,), (LIGHT, CLOCK)]),
    response=st.one_of(words, st.integers(0, 99)),
)
def test_prompts_assembled_from_cached_prefixes_equal_the_published_template(
    system: str | None, first: str, second: str, tools: tuple[ToolSpec, ...], response: object
) -> None:
    root = MODELS / "tiny-gemma4"
    answerer = shared_answerer(root)
    for text in (first, second):  # a second request reuses what the first left in the prefix cache
        question = Question(text, system=system, tools=tools)
        context = Conversation()
        answerer.answer(question, GREEDY, conversation=context)
        turn = Message(
            "model", tool_calls=(ToolCall("get_time", {}),), tool_responses=(ToolResponse("get_time", response),)
        )
        step = Question(text, system=system, tools=tools, steps=(turn,))
        answer = answerer.answer(step, GREEDY, conversation=context)
        expected = answerer.tokenizer.encode(render_reference(step))
        assert context.ids[: answer.prompt_tokens] == expected
        assert common_prefix(context.ids, expected) == len(expected)
        # The cache the decoder holds is the one a single prefill of the template's prompt gives.
        assert context.cache is not None
        held = context.cache.truncated(len(expected))
        _, whole = answerer.engine.forward(expected)
        for name, tensor in whole.tensors.items():  # a sliding layer may hold only its last positions
            kept = held.tensors[name].shape[2]
            np.testing.assert_allclose(held.tensors[name], tensor[:, :, tensor.shape[2] - kept :], atol=2e-4, rtol=1e-3)


_ANSWERERS: dict[Path, Answerer] = {}


def shared_answerer(root: Path) -> Answerer:
    """One answerer per fixture for the property test, so its prefix cache carries over between examples."""
    if root not in _ANSWERERS:
        _ANSWERERS[root] = Answerer(TextEngine(locate_model(root, "q4")), Tokenizer(root))
    return _ANSWERERS[root]
