"""A video question end to end on the tiny multimodal fixture: our frames, vision encoder and merge vs PyTorch."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.model.media.video import Clip, frames_as_clip
from edge_agent.model.runtime.answer import Answerer, Question
from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.media_prompt import MediaUnsupportedError, build_media_prompt
from edge_agent.model.runtime.multimodal import MediaMismatchError, MediaTokens, expand_video_frames
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model

MODELS = Path(__file__).resolve().parents[2] / "models"
MODEL = MODELS / "tiny-gemma4"
CASE = json.loads((MODEL / "video_goldens.json").read_text())["question"]


def door_frames() -> np.ndarray:
    """The golden question's 4 BGR frames."""
    data = np.load(MODEL / "examples" / CASE["frames_file"])
    frames: np.ndarray = data["deltas"] + data["first"]
    return frames


def door_clip() -> Clip:
    return frames_as_clip(list(door_frames()), CASE["fps"])


def greedy(count: int) -> GenerationSettings:
    return GenerationSettings(max_new_tokens=count, max_context=4096)


@pytest.fixture(scope="module")
def model() -> Answerer:
    return Answerer(TextEngine(locate_model(MODEL, "fp32")), Tokenizer(MODEL))


def asked(clip: Clip) -> Question:
    return Question(CASE["question"], videos=(clip,), video_budget=CASE["budget"], video_frames=4)


def test_video_greedy_ids_equal_pytorch(model: Answerer) -> None:
    question = asked(door_clip())
    videos = model.preprocess_videos(question)
    frames = [frame for video in videos for frame in video.frames]
    # Our prompt, widened with our own soft-token counts, is the one PyTorch was run on.
    prompt = build_media_prompt(model.engine, model.prompt_ids(question), videos=videos)
    assert prompt.ids == CASE["prompt_ids"]
    assert prompt.encoder_s > 0 and len(frames) == 4
    answer = model.answer(question, greedy(len(CASE["greedy_ids"])))
    assert answer.ids == CASE["greedy_ids"]
    video_id = model.engine.files.info.video_token_id
    assert answer.video_tokens == (sum(1 for i in CASE["prompt_ids"] if i == video_id),)
    assert answer.image_tokens == () and answer.prompt_tokens == len(CASE["prompt_ids"])


def test_the_frames_change_the_answer(model: Answerer) -> None:
    frames = door_frames()
    still = frames_as_clip([frames[0]] * 4, CASE["fps"])  # nothing moves
    assert model.answer(asked(still), greedy(8)).ids != CASE["greedy_ids"][:8]


def test_a_video_with_an_image_and_a_conversation_reuses_the_encoded_frames(model: Answerer) -> None:
    from edge_agent.model.runtime.context import Conversation

    clip = door_clip()
    question = Question("What moved?", images=(door_frames()[0],), image_budget=70, videos=(clip,), video_frames=2)
    conversation = Conversation()
    first = model.answer(question, greedy(3), conversation=conversation)
    runs = conversation.encoder_runs
    assert runs == 3 and first.image_tokens and len(first.video_tokens) == 1
    model.answer(question, greedy(3), conversation=conversation)
    assert conversation.encoder_runs == runs


def test_a_model_without_vision_refuses_video() -> None:
    text_only = MODELS / "tiny-gemma4-b"
    answerer = Answerer(TextEngine(locate_model(text_only, "fp32")), Tokenizer(text_only))
    with pytest.raises(MediaUnsupportedError, match="cannot see"):
        answerer.answer(asked(door_clip()), greedy(2))


def ask(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "edge_agent", "ask", "--model", str(MODEL), "--variant", "fp32", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_ask_video_file_gives_the_reference_ids(tmp_path: Path) -> None:
    path = tmp_path / "door.mkv"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"FFV1"), CASE["fps"], (120, 90))  # lossless
    for frame in door_frames():
        writer.write(frame)
    writer.release()
    count = str(len(CASE["greedy_ids"]))
    flags = ("--frames", "4", "--greedy", "--ignore-eos", "--max-new-tokens", count, "--json")
    result = ask(CASE["question"], "--video", str(path), *flags)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ids"] == CASE["greedy_ids"] and report["prompt_tokens"] == len(CASE["prompt_ids"])
    video_id = json.loads((MODEL / "config.json").read_text())["video_token_id"]
    assert report["video_tokens"] == [CASE["prompt_ids"].count(video_id)] and report["image_tokens"] == []


@pytest.mark.parametrize("name", ["missing.mp4", "garbage.mp4"])
def test_a_bad_video_is_one_clear_line(tmp_path: Path, name: str) -> None:
    (tmp_path / "garbage.mp4").write_bytes(b"\x00not a video" * 50)
    result = ask("What happened?", "--video", str(tmp_path / name))
    assert result.returncode == 1 and result.stdout == ""
    # FFmpeg may say first what it found ("[mov,mp4,... @ 0x...] moov atom not found"): the CLI does not capture
    # native stderr. Ours is one line, the last.
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and name in lines[-1]
    assert all(re.match(r"\[[\w.,:-]+ @ 0x[0-9a-f]+\] ", line) for line in lines[:-1]), lines


def test_each_frame_slot_widens_to_its_soft_tokens(model: Answerer) -> None:
    tokens = MediaTokens.from_info(model.engine.files.info)
    assert tokens.video is not None
    ids = [5, tokens.boi, tokens.video, tokens.eoi, 7, tokens.boi, tokens.video, tokens.eoi]
    widened = expand_video_frames(ids, tokens, [2, 3])
    assert widened == [5, tokens.boi, *[tokens.video] * 2, tokens.eoi, 7, tokens.boi, *[tokens.video] * 3, tokens.eoi]
    with pytest.raises(MediaMismatchError, match="2 video frame slot"):
        expand_video_frames(ids, tokens, [2])
    with pytest.raises(MediaMismatchError, match="no video_token_id"):
        expand_video_frames(ids, dataclasses.replace(tokens, video=None), [2, 3])


def test_the_prompt_writes_each_frame_time_after_the_image(model: Answerer) -> None:
    frames = door_frames()
    late = Clip(tuple(frames), (0.0, 59.9, 61.0, 3599.5))
    question = Question("Which?", images=(frames[0],), videos=(door_clip(), late), video_frames=4)
    text = model.tokenizer.decode(model.prompt_ids(question), skip_special_tokens=False)
    frame = "<|image><|video|><image|>"
    clips = f"00:00 {frame} 00:00 {frame} 00:01 {frame} 00:01 {frame}"
    clips += f"\n\n\n\n00:00 {frame} 00:59 {frame} 01:01 {frame} 59:59 {frame}"
    assert f"<|image|>\n\n\n\n{clips}\n\nWhich?" in text
