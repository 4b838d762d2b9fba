"""A prompt with images, audio and video: run the encoders, merge their features, prefill from the merged embeddings."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import numpy as np

from edge_agent.model.runtime.engine import TextEngine
from edge_agent.model.runtime.kv_cache import KVCache
from edge_agent.model.runtime.multimodal import (
    MediaMismatchError,
    MediaTokens,
    expand_placeholders,
    expand_video_frames,
    ids_for_embedding,
    scatter_features,
)


class MediaUnsupportedError(ValueError):
    """The model has no encoder for this kind of input."""


class ImageTensors(Protocol):
    """A preprocessed image (see model.vision.ImageInput)."""

    @property
    def pixel_values(self) -> np.ndarray: ...
    @property
    def position_ids(self) -> np.ndarray: ...
    @property
    def num_soft_tokens(self) -> int: ...


class AudioTensors(Protocol):
    """Preprocessed audio (see model.audio.AudioInput)."""

    @property
    def features(self) -> np.ndarray: ...
    @property
    def mask(self) -> np.ndarray: ...
    @property
    def num_soft_tokens(self) -> int: ...


class VideoTensors(Protocol):
    """A preprocessed clip (see model.media.video.VideoInput): its sampled frames, each as an image."""

    @property
    def frames(self) -> Sequence[ImageTensors]: ...


@dataclass(frozen=True)
class MediaPrompt:
    """Expanded prompt ids and the decoder inputs for them, features already merged."""

    ids: list[int]
    inputs_embeds: np.ndarray
    per_layer_inputs: np.ndarray
    encoder_s: float


def _image_features(engine: TextEngine, images: Sequence[ImageTensors]) -> np.ndarray:
    if engine.vision is None:
        raise MediaUnsupportedError(
            f"this model cannot see images: {engine.files.root}/onnx has no vision_encoder graph "
            f"for variant {engine.files.variant!r}"
        )
    # One batch per padded length (images of one budget share it), concatenated back in the images' order.
    rows: list[np.ndarray | None] = [None] * len(images)
    by_length: dict[int, list[int]] = {}
    for index, image in enumerate(images):
        by_length.setdefault(image.pixel_values.shape[0], []).append(index)
    for members in by_length.values():
        features = engine.vision.run(
            {
                "pixel_values": np.stack([images[i].pixel_values for i in members]),
                "pixel_position_ids": np.stack([images[i].position_ids for i in members]),
            }
        )
        expected = sum(images[i].num_soft_tokens for i in members)
        if features.shape[0] != expected:
            raise MediaMismatchError(
                f"image features and image tokens do not match: the vision encoder returned {features.shape[0]} "
                f"rows for {expected} soft tokens"
            )
        start = 0
        for i in members:
            rows[i] = features[start : start + images[i].num_soft_tokens]
            start += images[i].num_soft_tokens
    return np.concatenate([r for r in rows if r is not None])


def _audio_features(engine: TextEngine, clips: Sequence[AudioTensors]) -> np.ndarray:
    if engine.audio is None:
        raise MediaUnsupportedError(
            f"this model cannot hear audio: {engine.files.root}/onnx has no audio_encoder graph "
            f"for variant {engine.files.variant!r}"
        )
    parts = [
        engine.audio.run({"input_features": clip.features[None], "input_features_mask": clip.mask[None]})
        for clip in clips
    ]
    return np.concatenate(parts)


@dataclass(frozen=True)
class EncodedMedia:
    """Encoder features of a question's images and clips, kept so that later steps of a request reuse them."""

    image_counts: tuple[int, ...]
    audio_counts: tuple[int, ...]
    image_rows: np.ndarray | None
    audio_rows: np.ndarray | None
    encoder_s: float
    video_frame_counts: tuple[int, ...] = ()  # soft tokens of every frame of every clip, in order
    video_rows: np.ndarray | None = None
    video_counts: tuple[int, ...] = ()  # soft tokens of each clip

    @property
    def empty(self) -> bool:
        """No media at all."""
        return not self.image_counts and not self.audio_counts and not self.video_frame_counts


NO_MEDIA = EncodedMedia((), (), None, None, 0.0)


def encode_media(
    engine: TextEngine,
    images: Sequence[ImageTensors] = (),
    audio: Sequence[AudioTensors] = (),
    videos: Sequence[VideoTensors] = (),
) -> EncodedMedia:
    """Run the encoders once over every image, audio clip and video frame (frames through the vision encoder)."""
    frames = [frame for video in videos for frame in video.frames]
    if not images and not audio and not frames:
        return NO_MEDIA
    started = time.monotonic()
    image_rows = _image_features(engine, images) if images else None
    audio_rows = _audio_features(engine, audio) if audio else None
    # One vision run per frame: a 32-frame clip in one batch would hold every frame's activations at once.
    video_rows = np.concatenate([_image_features(engine, [frame]) for frame in frames]) if frames else None
    return EncodedMedia(
        tuple(i.num_soft_tokens for i in images),
        tuple(a.num_soft_tokens for a in audio),
        image_rows,
        audio_rows,
        time.monotonic() - started,
        tuple(frame.num_soft_tokens for frame in frames),
        video_rows,
        tuple(sum(frame.num_soft_tokens for frame in video.frames) for video in videos),
    )


def with_leading_images(media: EncodedMedia, rows: Sequence[np.ndarray], seconds: float = 0.0) -> EncodedMedia:
    """`media` with images placed before its own (reference images: the prompt shows them first), one row block each."""
    if not rows:
        return media
    own = [media.image_rows] if media.image_rows is not None else []
    return replace(
        media,
        image_counts=tuple(block.shape[0] for block in rows) + media.image_counts,
        image_rows=np.concatenate([*rows, *own]),
        encoder_s=media.encoder_s + seconds,
    )


def merge_media(engine: TextEngine, ids: Sequence[int], media: EncodedMedia) -> MediaPrompt:
    """Expand the placeholders in `ids` (one per image / clip / video frame, in order), embed, write the features in."""
    if media.empty:
        embeds, per_layer = engine.embed(ids)
        return MediaPrompt(list(ids), embeds, per_layer, 0.0)
    tokens = MediaTokens.from_info(engine.files.info)
    expanded = expand_placeholders(ids, tokens, media.image_counts, media.audio_counts)
    expanded = expand_video_frames(expanded, tokens, media.video_frame_counts)
    embeds, per_layer = engine.embed(ids_for_embedding(expanded, tokens))
    if media.image_rows is not None:
        embeds = scatter_features(embeds, expanded, tokens.image, media.image_rows, "image")
    if media.audio_rows is not None:
        embeds = scatter_features(embeds, expanded, tokens.audio, media.audio_rows, "audio")
    if media.video_rows is not None and tokens.video is not None:
        embeds = scatter_features(embeds, expanded, tokens.video, media.video_rows, "video")
    return MediaPrompt(expanded, embeds, per_layer, media.encoder_s)


def build_media_prompt(
    engine: TextEngine,
    ids: Sequence[int],
    images: Sequence[ImageTensors] = (),
    audio: Sequence[AudioTensors] = (),
    videos: Sequence[VideoTensors] = (),
) -> MediaPrompt:
    """Expand the placeholders in `ids` (one per image / clip / video frame, in order), encode, embed and merge."""
    return merge_media(engine, ids, encode_media(engine, images, audio, videos))


class PrefilledModel:
    """The engine as a generate() model whose first call prefills `prompt`'s merged embeddings after `start`,
    a cache that already holds the prompt's first positions (a reused prefix)."""

    def __init__(self, engine: TextEngine, prompt: MediaPrompt, start: KVCache | None = None) -> None:
        self.engine, self.prompt = engine, prompt
        self.start = start or engine.empty_cache()
        if self.start.length >= len(prompt.ids):
            raise ValueError("PrefilledModel: at least one prompt position must be left to prefill")

    def forward(self, input_ids: Sequence[int], cache: Any = None) -> tuple[np.ndarray, KVCache]:
        """Logits of the last position and the grown cache."""
        if cache is None:
            if list(input_ids) != self.prompt.ids:
                raise ValueError("PrefilledModel: the first call must pass the prompt's own ids")
            done = self.start.length
            return self.engine.decode(
                self.prompt.inputs_embeds[:, done:], self.prompt.per_layer_inputs[:, done:], self.start
            )
        return self.engine.forward(input_ids, cache)
