"""Small frozen messages passed between the stages over bounded queues."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

CameraState = Literal["starting", "ok", "reconnecting", "failed", "ended"]


@dataclass(frozen=True, eq=False)
class Frame:
    """One camera frame (BGR, uint8) with when it was captured."""

    camera: str
    image: np.ndarray
    index: int
    captured_at: float  # wall clock (time.time())
    monotonic: float  # time.monotonic() at capture


@dataclass(frozen=True, eq=False)
class AudioChunk:
    """A block of 16 kHz mono float32 audio in [-1, 1]."""

    samples: np.ndarray
    start_s: float  # seconds since the stream started


@dataclass(frozen=True, eq=False)
class Utterance:
    """A stretch of speech cut out of the audio stream by the voice gate."""

    samples: np.ndarray  # 16 kHz mono float32, pre-roll included
    start_s: float
    end_s: float
    reason: Literal["silence", "max_length", "end_of_stream"]


@dataclass(frozen=True)
class MotionResult:
    """What the motion gate saw in one frame."""

    camera: str
    frame_index: int
    motion: bool
    area: float  # largest changed region, as a fraction of the (unmasked) frame
    changed: float  # fraction of unmasked pixels that changed
    scene_change: bool


@dataclass(frozen=True)
class Inbound:
    """An MQTT message addressed to the node, with its MQTT 5 request/response properties."""

    topic: str
    payload: bytes
    retain: bool = False
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()  # MQTT 5 user properties, in order


@dataclass(frozen=True)
class AskRequest:
    """A question for the model; `question` None means "analyse now" (the Home Assistant button)."""

    question: str | None
    origin: Literal["mqtt", "text", "button"]
    id: str | None = None
    camera: str | None = None
    received: float = 0.0  # wall clock (time.time())
    image: bytes | None = None  # a JPEG/PNG the asker sent (decoded from base64, not yet checked)
    audio: bytes | None = None  # a WAV/FLAC the asker sent (decoded from base64, not yet checked)
    partial: Callable[[str, bool], None] | None = None  # streamed answer: (new text, it replaces what was sent)
    references: tuple[str, ...] = ()  # names of configured reference images to show the model first


@dataclass(frozen=True)
class AskReply:
    """What the handler answered; the ask service adds the request's id and the timing."""

    status: Literal["ok", "error", "busy"]
    answer: str | None = None
    error: str | None = None
    model: str | None = None  # the model that answered, e.g. "gemma-4-e2b-it (q4)"
    meta: Mapping[str, Any] = field(default_factory=dict)  # context: task, camera, trigger, timings, tool calls...


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: name, description and a JSON-schema `parameters` object."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ToolCall:
    """A call the model made."""

    name: str
    arguments: Mapping[str, Any]


@dataclass(frozen=True)
class ToolResponse:
    """What a tool returned, sent back to the model."""

    name: str
    response: Any


@dataclass(frozen=True)
class ModelSizes:
    """What admission needs to know of a model before loading it: its graph files and its KV cache per position."""

    root: str
    variant: str
    files_bytes: int
    kv_bytes_per_position: int  # every layer that keeps a cache
    sliding_kv_bytes_per_position: int  # the part of it in sliding-window layers
    sliding_window: int
    level4_repack_bytes: int = 0  # kept beyond the files if the decoder and encoder INT4 kernels run at level 4 here
    stored_level4_repack_bytes: int = 0  # the same for the kernels whose files already set level 4
    kv_bytes_per_value: int = 4  # bytes of one cached key/value element as exported (2: a half-precision cache)

    def with_float16_cache(self) -> ModelSizes:
        """These sizes with the KV cache kept in float16 (`model.kv_cache: float16`; already so when half)."""
        if self.kv_bytes_per_value <= 2:
            return self
        scale = self.kv_bytes_per_value // 2
        return replace(
            self,
            kv_bytes_per_position=self.kv_bytes_per_position // scale,
            sliding_kv_bytes_per_position=self.sliding_kv_bytes_per_position // scale,
            kv_bytes_per_value=2,
        )

    def kv_cache_bytes(self, context: int, trim_sliding: bool = False) -> int:
        """Keys plus values for `context` positions; with `trim_sliding`, sliding layers keep only their window."""
        sliding = min(self.sliding_window, context) if trim_sliding else context
        full = self.kv_bytes_per_position - self.sliding_kv_bytes_per_position
        return full * context + self.sliding_kv_bytes_per_position * sliding
