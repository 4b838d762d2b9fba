"""Answer one question about images and audio: preprocess, encode, merge, prefill, decode, with stage timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_agent.messages import ToolSpec
from edge_agent.model.media.audio import AudioInput, AudioSettings, audio_features
from edge_agent.model.media.vision import ImageInput, VisionSettings, preprocess_image
from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.runtime.generate import GenerationSettings, generate
from edge_agent.model.runtime.media_prompt import MediaUnsupportedError, PrefilledModel, build_media_prompt
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.prompt.chat import Media, Message, render_prompt


@dataclass(frozen=True)
class Question:
    """What to ask: text, BGR frames, 16 kHz mono clips, and how."""

    text: str
    images: tuple[np.ndarray, ...] = ()
    audio: tuple[np.ndarray, ...] = ()
    system: str | None = None
    image_budget: int = 280
    thinking: bool = False
    tools: tuple[ToolSpec, ...] = ()  # declared in the system turn
    steps: tuple[Message, ...] = ()  # model turns of this exchange so far (tool calls and their responses)


@dataclass(frozen=True)
class StageTimes:
    """Seconds spent in each stage of one answer."""

    preprocess_s: float
    encoder_s: float
    prefill_s: float
    decode_s: float
    ttft_s: float

    def as_ms(self) -> dict[str, float]:
        """The stages in milliseconds, rounded, for JSON."""
        return {name.removesuffix("_s") + "_ms": round(value * 1000, 2) for name, value in vars(self).items()}


@dataclass(frozen=True)
class Answer:
    """The model's answer and what it took."""

    text: str
    ids: list[int]
    finish_reason: str
    prompt_tokens: int
    image_tokens: tuple[int, ...]
    audio_tokens: tuple[int, ...]
    audio_truncated: bool
    times: StageTimes
    decode_tokens_per_s: float = 0.0


class Answerer:
    """One loaded model that answers questions; not thread-safe (one inference at a time)."""

    def __init__(self, engine: TextEngine, tokenizer: Tokenizer) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        self.vision_settings = VisionSettings.from_model_dir(engine.files.root)
        self.audio_settings = AudioSettings.from_model_dir(engine.files.root)

    def check_supported(self, question: Question) -> None:
        """Refuse media the model has no encoder for, before any work is done."""
        if question.images and self.engine.vision is None:
            raise MediaUnsupportedError(f"this model cannot see images: {self.engine.files.root} has no vision encoder")
        if question.audio and self.engine.audio is None:
            raise MediaUnsupportedError(f"this model cannot hear audio: {self.engine.files.root} has no audio encoder")

    def preprocess(self, question: Question) -> tuple[list[ImageInput], list[AudioInput]]:
        """Images to patches at the question's budget, clips to log-mel features."""
        images = [preprocess_image(frame, question.image_budget, self.vision_settings) for frame in question.images]
        clips = [audio_features(samples, self.audio_settings) for samples in question.audio]
        return images, clips

    def prompt_ids(self, question: Question) -> list[int]:
        """The rendered chat prompt, one placeholder per image and clip (images first)."""
        image: Media = "image"
        audio: Media = "audio"
        media = (image,) * len(question.images) + (audio,) * len(question.audio)
        turns = [Message("system", question.system)] if question.system else []
        turns.append(Message("user", question.text, media=media))
        turns += question.steps
        return self.tokenizer.encode(render_prompt(turns, question.tools, thinking=question.thinking))

    def answer(
        self,
        question: Question,
        settings: GenerationSettings,
        on_text: Callable[[str], None] | None = None,
        special_tokens: bool = False,
    ) -> Answer:
        """Run every stage and return the answer with its timings (`special_tokens`: keep tool-call markup)."""
        self.check_supported(question)
        started = time.monotonic()
        images, clips = self.preprocess(question)
        preprocess_s = time.monotonic() - started
        started = time.monotonic()
        prompt = build_media_prompt(self.engine, self.prompt_ids(question), images, clips)
        merge_s = time.monotonic() - started - prompt.encoder_s
        result = generate(
            PrefilledModel(self.engine, prompt),
            prompt.ids,
            settings,
            self.tokenizer.stream(not special_tokens),
            on_text,
        )
        return Answer(
            text=result.text,
            ids=result.ids,
            finish_reason=result.finish_reason,
            prompt_tokens=len(prompt.ids),
            image_tokens=tuple(i.num_soft_tokens for i in images),
            audio_tokens=tuple(c.num_soft_tokens for c in clips),
            audio_truncated=any(c.truncated for c in clips),
            times=StageTimes(
                preprocess_s=preprocess_s,
                encoder_s=prompt.encoder_s,
                prefill_s=merge_s + result.prefill_s,
                decode_s=result.decode_s,
                ttft_s=preprocess_s + prompt.encoder_s + merge_s + result.ttft_s,
            ),
            decode_tokens_per_s=result.decode_tokens_per_s,
        )
