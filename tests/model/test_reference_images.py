"""Reference images on the tiny model: captioned before the question's media as the published template writes them,
at their own budget, encoded once per (name, content, budget) and reused with the same ids as a fresh run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge_agent.model.media.vision import load_image
from edge_agent.model.runtime.answer import Answerer, Question
from edge_agent.model.runtime.context import Conversation
from edge_agent.model.runtime.engine import Encoder, TextEngine
from edge_agent.model.runtime.feature_cache import FeatureCache, reference_image
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.media_prompt import MediaUnsupportedError
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model

MODELS = Path(__file__).resolve().parents[2] / "models"
ROOT = MODELS / "tiny-gemma4"
EXAMPLES = ROOT / "examples"
TEMPLATE = Path(__file__).resolve().parents[3] / "shared" / "reference" / "gemma4-chat-template.jinja"
GREEDY = GenerationSettings(max_new_tokens=8, max_context=2048, eos_token_ids=frozenset())


class CountingEncoder:
    """The real vision encoder, with its runs counted (each run is one batch through the graph)."""

    def __init__(self, encoder: Encoder) -> None:
        self.encoder, self.runs, self.images = encoder, 0, 0

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        self.runs += 1
        self.images += feeds["pixel_values"].shape[0]
        return self.encoder.run(feeds)


@pytest.fixture(scope="module")
def engine() -> TextEngine:
    return TextEngine(locate_model(ROOT, "q4"))


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer(ROOT)


def counted(engine: TextEngine) -> CountingEncoder:
    assert engine.vision is not None
    vision = engine.vision if isinstance(engine.vision, CountingEncoder) else CountingEncoder(engine.vision)
    engine.vision = vision  # type: ignore[assignment]
    vision.runs = vision.images = 0
    return vision


REX = reference_image("rex", load_image(EXAMPLES / "porch.png"), 70, "Rex, our dog")
GARAGE = load_image(EXAMPLES / "garage.png")


def render_reference(question: Question) -> str:
    """The prompt as the published template renders it (jinja2, as transformers' apply_chat_template does)."""
    jinja2 = pytest.importorskip("jinja2")
    if not TEMPLATE.is_file():
        pytest.skip(f"the published chat template is not at {TEMPLATE} (../shared/reference)")
    environment = jinja2.Environment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    content: list[dict[str, Any]] = []
    for reference in question.references:
        content += [{"type": "text", "text": reference.caption}, {"type": "image"}]
    content += [{"type": "image"}] * len(question.images) + [{"type": "audio"}] * len(question.audio)
    messages: list[dict[str, Any]] = [{"role": "system", "content": question.system}] if question.system else []
    messages.append({"role": "user", "content": [*content, {"type": "text", "text": question.text}]})
    text: str = environment.from_string(TEMPLATE.read_text()).render(
        messages=messages, tools=[], bos_token="<bos>", add_generation_prompt=True
    )
    return text


def test_the_prompt_captions_each_reference_before_the_questions_own_media(
    engine: TextEngine, tokenizer: Tokenizer
) -> None:
    kitty = reference_image("kitty", GARAGE[:64, :64].copy(), 140)
    question = Question("Is this Rex?", images=(GARAGE,), system="Answer briefly.", references=(REX, kitty))
    expected = render_reference(question)
    assert "Reference image 'rex' (Rex, our dog):\n\n<|image|>\n\nReference image 'kitty':\n\n<|image|>" in expected
    assert Answerer(engine, tokenizer).prompt_ids(question) == tokenizer.encode(expected)


def test_a_reference_is_encoded_once_and_reused_with_the_ids_of_a_fresh_run(
    engine: TextEngine, tokenizer: Tokenizer
) -> None:
    vision = counted(engine)
    answerer = Answerer(engine, tokenizer)
    first_context, second_context = Conversation(), Conversation()
    first = answerer.answer(
        Question("Is this Rex?", images=(GARAGE,), references=(REX,)), GREEDY, None, False, first_context
    )
    assert first_context.encoder_runs == 2 and vision.images == 2  # the reference and the question's own image
    other = GARAGE[::-1].copy()
    question = Question("And now?", images=(other,), references=(REX,))
    vision.runs = vision.images = 0
    second = answerer.answer(question, GREEDY, conversation=second_context)
    assert second_context.encoder_runs == 1 and vision.images == 1 and vision.runs == 1  # only its own image
    assert answerer.features.hits == 1 and answerer.features.encoded == 1
    assert second.reference_tokens == first.reference_tokens == (second.image_tokens[0],)
    assert second.image_tokens[0] < second.image_tokens[1]  # the reference at 70, the question's image at 280
    fresh = Answerer(engine, tokenizer, prefix_cache_bytes=0)
    cold = fresh.answer(question, GREEDY)
    assert fresh.features.encoded == 1 and second.ids == cold.ids
    cached_media, fresh_media = second_context.media, Conversation()
    Answerer(engine, tokenizer).answer(question, GREEDY, conversation=fresh_media)  # encodes the reference anew
    assert cached_media is not None and fresh_media.media is not None
    assert np.array_equal(cached_media.image_rows, fresh_media.media.image_rows)


def test_the_cache_key_is_the_name_the_content_and_the_budget(engine: TextEngine, tokenizer: Tokenizer) -> None:
    vision = counted(engine)
    answerer = Answerer(engine, tokenizer)
    budgets = [reference_image("rex", REX.image, budget) for budget in (70, 140, 70)]
    changed = reference_image("rex", REX.image[::-1].copy(), 70)  # the file was replaced
    renamed = reference_image("max", REX.image, 70)
    for reference in (*budgets, changed, renamed, changed):
        answerer.answer(Question("Who?", references=(reference,)), GREEDY)
    assert vision.images == 4 and answerer.features.encoded == 4 and answerer.features.hits == 2
    assert len(answerer.features) == 2  # the replaced image's entries (both budgets) are gone


def test_a_model_without_a_vision_encoder_refuses_references(tokenizer: Tokenizer) -> None:
    root = MODELS / "tiny-gemma4-b"
    answerer = Answerer(TextEngine(locate_model(root, "q4")), Tokenizer(root))
    with pytest.raises(MediaUnsupportedError, match="cannot see images"):
        answerer.answer(Question("Is this Rex?", references=(REX,)), GREEDY)


@pytest.mark.parametrize(
    ("name", "description", "problem"),
    [("rex dog", None, "a name is"), ("rex", "<|image|>", "plain text"), ("rex", "two\nlines", "plain text")],
)
def test_untrusted_names_and_descriptions_are_refused(
    engine: TextEngine, tokenizer: Tokenizer, name: str, description: str | None, problem: str
) -> None:
    bad = reference_image(name, REX.image, 70, description)
    with pytest.raises(ValueError, match=problem):
        Answerer(engine, tokenizer).answer(Question("Is this Rex?", references=(bad,)), GREEDY)


def test_the_feature_cache_stays_within_its_bytes() -> None:
    cache = FeatureCache(max_bytes=3 * 70 * 64 * 4)
    for index in range(10):
        cache.put((f"ref{index}", "digest", 70), np.zeros((70, 64), np.float32))
        assert cache.nbytes <= cache.max_bytes
    assert (
        len(cache) == 3 and cache.get(("ref9", "digest", 70)) is not None and cache.get(("ref0", "digest", 70)) is None
    )
