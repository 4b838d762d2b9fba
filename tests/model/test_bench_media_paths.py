"""The media benchmarks measure what they say, on the tiny multimodal fixture: the voice command with one tool call
encodes its clip once and prefills little more than its final context, with a fresh run's ids; clip costs count
every sampled frame's soft tokens."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import pytest

from edge_agent.agent.voice import VOICE_SYSTEM
from edge_agent.model.media.video import preprocess_video
from edge_agent.model.runtime.answer import Answerer, Question
from edge_agent.model.runtime.constrain import ConstraintFactory
from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "bench"))
import agent_paths  # noqa: E402
import media_costs  # noqa: E402
from multimodal import speech  # noqa: E402

ROOT = REPO / "models" / "tiny-gemma4"


@pytest.fixture(scope="module")
def answerer() -> Answerer:
    """The tiny multimodal fixture (q4), no prefix cache."""
    return Answerer(TextEngine(locate_model(ROOT, "q4")), Tokenizer(ROOT), prefix_cache_bytes=0)


def test_voice_command_with_a_tool_call_encodes_once_and_prefills_about_its_context(answerer: Answerer) -> None:
    files = answerer.engine.files
    constraints = ConstraintFactory(answerer.tokenizer, files.tokenizer_json, files.info.vocab_size)
    (call, after), context = agent_paths.voice_with_call(answerer, constraints, transcribe=False)
    final = after.prompt_tokens + len(after.ids)
    assert context.encoder_runs == 1 and call.times.encoder_s > 0 and after.times.encoder_s == 0.0
    assert context.prefilled_tokens <= 1.1 * final and after.reused_tokens > sum(call.audio_tokens)
    fresh = answerer.answer(replace(call_question(), steps=(agent_paths.SET_LIGHT,)), agent_paths.settings(16))
    assert after.ids == fresh.ids and after.prompt_tokens == fresh.prompt_tokens


def test_the_transcript_shares_the_clip_and_adds_only_its_own_tail(answerer: Answerer) -> None:
    files = answerer.engine.files
    constraints = ConstraintFactory(answerer.tokenizer, files.tokenizer_json, files.info.vocab_size)
    (transcript, call, after), context = agent_paths.voice_with_call(answerer, constraints, transcribe=True)
    assert context.encoder_runs == 1 and call.times.encoder_s == after.times.encoder_s == 0.0
    assert call.reused_tokens > sum(transcript.audio_tokens)  # the clip's positions are prefilled once
    final = after.prompt_tokens + len(after.ids)
    assert context.prefilled_tokens - final <= transcript.prompt_tokens - call.reused_tokens


def call_question() -> Question:
    """The voice question voice_with_call asks, with a new clip of the same samples."""
    return Question("", audio=(speech(5.0),), system=VOICE_SYSTEM, tools=agent_paths.TOOLS)


def test_clip_costs_count_every_sampled_frame(answerer: Answerer) -> None:
    clip = media_costs.camera_clip(4)
    question = Question("What happened at the garage?", videos=(clip,), video_frames=4)
    figures = media_costs.measure(answerer, question, repeat=1)
    frames = preprocess_video(clip, question.video_budget, 4, answerer.vision_settings).frames
    assert len(frames) == 4 and len(clip.frames) == 4
    assert figures["video_tokens"] == sum(f.num_soft_tokens for f in frames) > 0
    assert figures["prompt_tokens"] > figures["video_tokens"]
    assert figures["encoder_ms"] > 0 and figures["ttft_ms"] >= figures["encoder_ms"] + figures["prefill_ms"]
