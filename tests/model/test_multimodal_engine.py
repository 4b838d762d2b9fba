"""Images and audio end to end on the tiny multimodal fixture: our preprocessing, encoders and merge vs PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_agent.model.media.audio import load_audio
from edge_agent.model.media.vision import load_image, preprocess_image
from edge_agent.model.runtime.answer import Answerer, Question
from edge_agent.model.runtime.engine import EngineError, TextEngine
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.media_prompt import MediaUnsupportedError, build_media_prompt
from edge_agent.model.runtime.multimodal import MediaMismatchError
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model

MODELS = Path(__file__).resolve().parents[2] / "models"
MODEL = MODELS / "tiny-gemma4"
CASES = json.loads((MODEL / "goldens.json").read_text())["multimodal"]
QUESTIONS = {"image": "Is the garage door open?", "audio": "What did I say?", "two_images": "What changed?"}


@pytest.fixture(scope="module", params=["fp32", "q4"])
def answerer(request: pytest.FixtureRequest) -> tuple[str, Answerer]:
    engine = TextEngine(locate_model(MODEL, request.param))
    return request.param, Answerer(engine, Tokenizer(MODEL))


def question(case: dict, **changes: object) -> Question:  # type: ignore[type-arg]
    images = tuple(load_image(MODEL / path) for path in case["images"])
    audio = tuple(load_audio(MODEL / path) for path in [case["audio"]] if path)
    fields = {"text": QUESTIONS[case["name"]], "images": images, "audio": audio, "image_budget": case["image_budget"]}
    return Question(**{**fields, **changes})  # type: ignore[arg-type]


def greedy(count: int) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=count, max_context=4096)


def test_the_fixture_covers_image_audio_and_two_images() -> None:
    assert {c["name"] for c in CASES} == {"image", "audio", "two_images"}
    assert [len(c["images"]) for c in CASES] == [1, 0, 2] and CASES[1]["audio"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_greedy_ids_equal_the_references(answerer: tuple[str, Answerer], case: dict) -> None:  # type: ignore[type-arg]
    variant, model = answerer
    asked = question(case)
    # The chat prompt, expanded with our own soft-token counts, is the one the reference was run on.
    images, clips = model.preprocess(asked)
    assert build_media_prompt(model.engine, model.prompt_ids(asked), images, clips).ids == case["prompt_ids"]
    expected = case["greedy_ids"] if variant == "fp32" else case["q4_greedy_ids"]  # PyTorch / transformers.js
    answer = model.answer(asked, greedy(len(expected)))
    assert answer.ids == expected
    assert answer.prompt_tokens == len(case["prompt_ids"])
    info = model.engine.files.info
    slots = sum(1 for i in case["prompt_ids"] if i in (info.image_token_id, info.audio_token_id))
    assert sum(answer.image_tokens) + sum(answer.audio_tokens) == slots
    assert answer.times.encoder_s > 0 and answer.times.prefill_s > 0 and answer.times.preprocess_s > 0


def test_the_pictures_and_sound_change_the_answer(answerer: tuple[str, Answerer]) -> None:
    _, model = answerer
    image_case, audio_case = CASES[0], CASES[1]
    blank = np.full_like(load_image(MODEL / image_case["images"][0]), 128)
    assert model.answer(question(image_case, images=(blank,)), greedy(12)).ids != image_case["greedy_ids"][:12]
    reversed_speech = load_audio(MODEL / audio_case["audio"])[::-1].copy()
    changed = model.answer(question(audio_case, audio=(reversed_speech,)), greedy(12)).ids
    assert changed != audio_case["greedy_ids"][:12]


def test_images_of_different_budgets_in_one_prompt(answerer: tuple[str, Answerer]) -> None:
    _, model = answerer
    frames = [load_image(MODEL / p) for p in CASES[2]["images"]]
    small, large = preprocess_image(frames[0], 70), preprocess_image(frames[1], 140)
    ids = model.prompt_ids(Question("What changed?", images=(frames[0], frames[1])))
    prompt = build_media_prompt(model.engine, ids, [small, large])
    assert prompt.ids.count(model.engine.files.info.image_token_id) == small.num_soft_tokens + large.num_soft_tokens


def test_a_soft_token_count_that_disagrees_with_the_encoder_is_refused(answerer: tuple[str, Answerer]) -> None:
    _, model = answerer
    image = preprocess_image(load_image(MODEL / CASES[0]["images"][0]), 70)
    wrong = type(image)(image.pixel_values, image.position_ids, image.num_soft_tokens - 1, image.resized_hw)
    ids = model.prompt_ids(Question("?", images=(np.zeros((8, 8, 3), np.uint8),)))
    with pytest.raises(MediaMismatchError, match="do not match"):
        build_media_prompt(model.engine, ids, [wrong])


def test_more_images_than_placeholders_is_refused(answerer: tuple[str, Answerer]) -> None:
    _, model = answerer
    image = preprocess_image(load_image(MODEL / CASES[0]["images"][0]), 70)
    ids = model.prompt_ids(Question("?", images=(np.zeros((8, 8, 3), np.uint8),)))
    with pytest.raises(MediaMismatchError, match="1 image placeholder"):
        build_media_prompt(model.engine, ids, [image, image])


def test_a_text_only_model_refuses_images_and_audio() -> None:
    text_only = MODELS / "tiny-gemma4-b"
    model = Answerer(TextEngine(locate_model(text_only, "fp32")), Tokenizer(text_only))
    with pytest.raises(MediaUnsupportedError, match="cannot see images"):
        model.answer(Question("?", images=(np.zeros((32, 32, 3), np.uint8),)), greedy(2))
    with pytest.raises(MediaUnsupportedError, match="cannot hear audio"):
        model.answer(Question("?", audio=(np.zeros(16000, np.float32),)), greedy(2))


def test_an_encoder_refusing_its_input_is_an_engine_error(answerer: tuple[str, Answerer]) -> None:
    _, model = answerer
    assert model.engine.audio is not None
    wrong_bins = {"input_features": np.zeros((1, 40, 64), np.float32), "input_features_mask": np.ones((1, 40), bool)}
    with pytest.raises(EngineError, match="audio_encoder"):
        model.engine.audio.run(wrong_bins)
