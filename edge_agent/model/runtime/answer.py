"""Answer one question about images, audio and video: preprocess, encode, merge, prefill, decode, with stage timings."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_agent.messages import ToolSpec
from edge_agent.model.media.audio import AudioInput, AudioSettings, audio_features
from edge_agent.model.media.video import (
    DEFAULT_NUM_FRAMES,
    DEFAULT_VIDEO_BUDGET,
    VIDEO_TOKEN,
    Clip,
    VideoInput,
    preprocess_video,
    prompt_text,
    sampled_timestamps,
)
from edge_agent.model.media.vision import ImageInput, VisionSettings, preprocess_image
from edge_agent.model.runtime.context import Conversation, PrefixCache
from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.runtime.feature_cache import (
    DEFAULT_FEATURE_CACHE_BYTES,
    FeatureCache,
    ReferenceImage,
    check_reference,
    reference_features,
)
from edge_agent.model.runtime.generate import Generation, GenerationSettings
from edge_agent.model.runtime.kv_cache import KVCache
from edge_agent.model.runtime.media_prompt import (
    EncodedMedia,
    MediaPrompt,
    MediaUnsupportedError,
    PrefilledModel,
    encode_media,
    merge_media,
    with_leading_images,
)
from edge_agent.model.runtime.multimodal import MediaMismatchError, MediaTokens
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
    videos: tuple[Clip, ...] = ()  # BGR frames with their timestamps, written after the images and audio
    video_budget: int = DEFAULT_VIDEO_BUDGET  # soft tokens per video frame
    video_frames: int = DEFAULT_NUM_FRAMES  # frames sampled from each clip (all of a shorter one)
    references: tuple[ReferenceImage, ...] = ()  # named images shown first, each with its caption and own budget


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
    prefilled_tokens: int = 0  # prompt positions this answer ran through the decoder
    reused_tokens: int = 0  # prompt positions taken from a cached prefix instead
    video_tokens: tuple[int, ...] = ()  # soft tokens of each clip (all its frames)
    reference_tokens: tuple[int, ...] = ()  # soft tokens of each reference image (also first in image_tokens)


DEFAULT_PREFIX_CACHE_BYTES = 64 * 2**20


class Answerer:
    """One loaded model that answers questions; not thread-safe (one inference at a time)."""

    def __init__(
        self,
        engine: TextEngine,
        tokenizer: Tokenizer,
        prefix_cache_bytes: int = DEFAULT_PREFIX_CACHE_BYTES,
        feature_cache_bytes: int = DEFAULT_FEATURE_CACHE_BYTES,
    ) -> None:
        self.engine, self.tokenizer = engine, tokenizer
        self.prefixes = PrefixCache(prefix_cache_bytes)
        self.features = FeatureCache(feature_cache_bytes)  # reference images' encoder rows, for this model only
        self._placeholders = MediaTokens.from_info(engine.files.info).placeholders
        self.vision_settings = VisionSettings.from_model_dir(engine.files.root)
        self.audio_settings = AudioSettings.from_model_dir(engine.files.root)

    def check_supported(self, question: Question) -> None:
        """Refuse media the model has no encoder for, before any work is done."""
        if (question.images or question.videos or question.references) and self.engine.vision is None:
            raise MediaUnsupportedError(f"this model cannot see images: {self.engine.files.root} has no vision encoder")
        if question.audio and self.engine.audio is None:
            raise MediaUnsupportedError(f"this model cannot hear audio: {self.engine.files.root} has no audio encoder")
        for reference in question.references:  # a name or description that could break the prompt
            check_reference(reference)

    def preprocess(self, question: Question) -> tuple[list[ImageInput], list[AudioInput]]:
        """Images to patches at the question's budget, clips to log-mel features."""
        images = [preprocess_image(frame, question.image_budget, self.vision_settings) for frame in question.images]
        clips = [audio_features(samples, self.audio_settings) for samples in question.audio]
        return images, clips

    def preprocess_videos(self, question: Question) -> list[VideoInput]:
        """Each clip's sampled frames at the question's video budget."""
        return [
            preprocess_video(clip, question.video_budget, question.video_frames, self.vision_settings)
            for clip in question.videos
        ]

    def prompt_ids(self, question: Question) -> list[int]:
        """The rendered chat prompt: each reference's caption and placeholder, then one placeholder per image and audio
        clip, and per video frame (images first)."""
        image: Media = "image"
        audio: Media = "audio"
        video: Media = "video"
        media = (image,) * len(question.images) + (audio,) * len(question.audio) + (video,) * len(question.videos)
        turns = [Message("system", question.system)] if question.system else []
        captioned = tuple((reference.caption, image) for reference in question.references)
        turns.append(Message("user", question.text, media=media, captioned=captioned))
        turns += question.steps
        text = render_prompt(turns, question.tools, thinking=question.thinking)
        if question.videos:  # each clip's timestamps and frame markers, one frame slot each, as the processor writes
            parts = text.split(VIDEO_TOKEN)
            if len(parts) != len(question.videos) + 1:
                raise MediaMismatchError(
                    f"the prompt holds {len(parts) - 1} {VIDEO_TOKEN} for {len(question.videos)} clip(s)"
                )
            clips = [prompt_text(sampled_timestamps(clip, question.video_frames)) for clip in question.videos]
            text = parts[0] + "".join(clip + part for clip, part in zip(clips, parts[1:], strict=True))
        return self.tokenizer.encode(text)

    def _media(self, question: Question, conversation: Conversation) -> tuple[EncodedMedia, float, float]:
        """The question's encoded media, preprocessing and encoder seconds (none when this request has them)."""
        own = (*question.images, *question.audio, *question.videos)
        key = tuple(id(item) for item in (*own, *(reference.image for reference in question.references)))
        if conversation.media is not None and conversation.media_key == key:
            return conversation.media, 0.0, 0.0
        started = time.monotonic()
        images, clips = self.preprocess(question)
        videos = self.preprocess_videos(question)
        preprocess_s = time.monotonic() - started
        media = encode_media(self.engine, images, clips, videos)
        rows, reference_s, encoded = reference_features(
            self.engine, question.references, self.vision_settings, self.features
        )
        media = with_leading_images(media, rows, reference_s)
        conversation.media, conversation.media_key = media, key
        conversation.encoder_runs += encoded + len(images) + len(clips) + sum(len(v.frames) for v in videos)
        conversation.audio_truncated = any(c.truncated for c in clips)
        return media, preprocess_s, media.encoder_s

    def _text_prefix(self, ids: list[int]) -> int:
        """How many leading ids are text (before the first media placeholder): what may be shared between requests."""
        return next((i for i, token in enumerate(ids) if token in self._placeholders), len(ids))

    def _start(self, prompt: MediaPrompt, text: int, conversation: Conversation) -> KVCache | None:
        own = conversation.start_for(prompt.ids)
        if own is not None or conversation.cache is not None:
            return own
        return self.prefixes.longest(prompt.ids, min(text, len(prompt.ids) - 1))

    def answer(
        self,
        question: Question,
        settings: GenerationSettings,
        on_text: Callable[[str], None] | None = None,
        special_tokens: bool = False,
        conversation: Conversation | None = None,
    ) -> Answer:
        """Run every stage and return the answer with its timings (`special_tokens`: keep tool-call markup).
        With a `conversation` (one request's steps), its cache and encoded media are reused and updated."""
        self.check_supported(question)
        conversation = conversation or Conversation()
        media, preprocess_s, encoder_s = self._media(question, conversation)
        started = time.monotonic()
        prompt = merge_media(self.engine, self.prompt_ids(question), media)
        text = self._text_prefix(prompt.ids)  # leading text ids: what may be shared with other requests
        start = self._start(prompt, text, conversation)
        merge_s = time.monotonic() - started
        generation = Generation(
            PrefilledModel(self.engine, prompt, start), prompt.ids, settings, self.tokenizer.stream(not special_tokens)
        )
        for step in generation:
            if on_text is not None and step.text:
                on_text(step.text)
        result = generation.result
        reused = start.length if start is not None else 0
        if generation.prompt_cache is not None:  # before decoding: a sliding layer still holds the whole prompt
            self.prefixes.store(prompt.ids[:text], generation.prompt_cache)
        conversation.remember(prompt.ids + result.ids, generation.cache, generation.prompt_cache)
        conversation.prefilled_tokens += len(prompt.ids) - reused
        conversation.reused_tokens += reused
        return Answer(
            text=result.text,
            ids=result.ids,
            finish_reason=result.finish_reason,
            prompt_tokens=len(prompt.ids),
            image_tokens=media.image_counts,
            audio_tokens=media.audio_counts,
            audio_truncated=conversation.audio_truncated,
            times=StageTimes(
                preprocess_s=preprocess_s,
                encoder_s=encoder_s,
                prefill_s=merge_s + result.prefill_s,
                decode_s=result.decode_s,
                ttft_s=preprocess_s + encoder_s + merge_s + result.ttft_s,
            ),
            decode_tokens_per_s=result.decode_tokens_per_s,
            prefilled_tokens=len(prompt.ids) - reused,
            reused_tokens=reused,
            video_tokens=media.video_counts,
            reference_tokens=media.image_counts[: len(question.references)],
        )
