"""Config sections for the inputs: cameras and the microphone."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from edge_agent.config.base import FilePath, Identifier, Section


class CropConfig(Section):
    """A region of the frame to keep, in pixels of the (rotated) source frame."""

    x: int = Field(ge=0, description="Left edge in pixels.")
    y: int = Field(ge=0, description="Top edge in pixels.")
    width: int = Field(gt=0, description="Width in pixels.")
    height: int = Field(gt=0, description="Height in pixels.")


Point = tuple[float, float]


def _is_stream_or_command(source: str) -> bool:
    return "://" in source or source.startswith("exec:")


class MotionConfig(Section):
    """The motion gate: cheap frame differencing that decides when a camera's watch tasks run."""

    enabled: bool = Field(default=True, description="Run the motion gate on this camera's frames.")
    threshold: int = Field(
        default=25, ge=1, le=255, description="Grey-level difference (0-255) at which a pixel counts as changed."
    )
    min_area: float = Field(
        default=0.003, gt=0, le=1, description="Smallest changed region, as a fraction of the frame, that is motion."
    )
    warmup_frames: int = Field(
        default=5, ge=1, le=1000, description="Frames used to learn the scene before it can fire."
    )
    scene_change: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Fraction of the frame changing at once that counts as a scene change (lights, camera moved): "
        "the background is learnt anew instead of firing.",
    )
    width: int = Field(default=160, ge=32, le=1920, description="Width in pixels the frame is scaled to for the check.")
    mask: list[list[Point]] = Field(
        default_factory=list,
        description="Polygons to ignore (a tree, a TV), each a list of [x, y] points in 0..1 of the frame's "
        "width and height.",
    )

    @field_validator("mask")
    @classmethod
    def _polygons(cls, value: list[list[Point]]) -> list[list[Point]]:
        for number, polygon in enumerate(value):
            if len(polygon) < 3:
                raise ValueError(f"polygon {number} needs at least 3 points")
            if any(not (0 <= x <= 1 and 0 <= y <= 1) for x, y in polygon):
                raise ValueError(f"polygon {number}: coordinates must be fractions in 0..1")
        return value


class ClipBufferConfig(Section):
    """A camera's recent frames kept in memory for clip questions (only on a camera a task with `clip:` watches)."""

    seconds: float | None = Field(
        default=None,
        gt=0,
        le=600,
        description="Seconds of frames kept; default: the longest pre_roll_s + post_roll_s of the clip tasks on "
        "this camera, plus 30 s for a question waiting its turn.",
    )
    fps: float = Field(default=2.0, gt=0, le=30, description="Frames kept per second (at most the camera's fps).")
    max_mb: float = Field(
        default=16.0, gt=0, le=1024, description="Most memory the kept frames may take, in MB; the oldest go first."
    )
    width: int = Field(
        default=640,
        ge=64,
        le=1920,
        description="Frames wider than this many pixels are scaled down before they are kept.",
    )
    jpeg_quality: int = Field(default=80, ge=10, le=100, description="JPEG quality of the kept frames.")


class CameraConfig(Section):
    """One camera: a V4L2 device or index, a stream URL, an `exec:` command, or a file/directory."""

    name: Identifier = Field(description="Camera name, used in topics, tasks and Home Assistant.")
    source: str | int = Field(
        description="Where frames come from: a V4L2 index (0) or device (/dev/video0, "
        "/dev/edge-agent/cam0); an rtsp:// or http(s):// stream; 'exec:<command>' whose stdout "
        "is MJPEG (e.g. 'exec:rpicam-vid -t 0 --codec mjpeg -o -'); a video file, an image file or "
        "a directory of images."
    )
    fps: float = Field(default=2.0, gt=0, le=120, description="Highest frame rate taken from the source.")
    width: int | None = Field(default=None, gt=0, le=8192, description="Requested capture width.")
    height: int | None = Field(default=None, gt=0, le=8192, description="Requested capture height.")
    rotate: Literal[0, 90, 180, 270] = Field(default=0, description="Clockwise rotation in degrees.")
    flip: Literal["none", "horizontal", "vertical", "both"] = Field(
        default="none", description="Mirror the frame after rotation."
    )
    crop: CropConfig | None = Field(default=None, description="Keep only this region (after rotate/flip).")
    loop: bool = Field(default=True, description="Files and image directories: start over at the end.")
    open_timeout_s: float = Field(
        default=10.0,
        ge=0.5,
        le=300,
        description="Streams and 'exec:' commands: seconds to wait for the source to open and send its first "
        "frame; then the camera logs a warning and reconnects with backoff.",
    )
    read_timeout_s: float = Field(
        default=10.0,
        ge=0.5,
        le=300,
        description="Streams and 'exec:' commands: seconds without a frame after which the stream counts as lost "
        "and the camera reconnects.",
    )
    max_frame_age_s: float | None = Field(
        default=None,
        gt=0,
        le=86400,
        description="Oldest frame an answer may use, in seconds; an older one (the camera is reconnecting or has "
        "ended) is refused: an ask gets an error, a watch task's entity becomes unavailable. Default: 10 s, or two "
        "frame intervals (2/fps) when that is longer.",
    )
    motion: MotionConfig = Field(default_factory=MotionConfig, description="The motion gate of this camera.")
    frame_publish_s: float = Field(
        default=10.0,
        ge=0,
        le=86400,
        description="Publish a downscaled JPEG of the newest frame (retained, on camera/<name>/frame, Home "
        "Assistant's image entity) at most this often while connected: 0 = never, else at least 1 s.",
    )
    clip_buffer: ClipBufferConfig = Field(
        default_factory=ClipBufferConfig,
        description="Recent frames kept for clip questions (watch tasks with 'clip:'); kept only when such a task "
        "watches this camera.",
    )

    @property
    def frame_age_limit_s(self) -> float:
        """The oldest frame an answer may use: `max_frame_age_s`, else 10 s or two frame intervals."""
        return self.max_frame_age_s if self.max_frame_age_s is not None else max(10.0, 2.0 / self.fps)

    @field_validator("frame_publish_s")
    @classmethod
    def _off_or_bounded(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("must be 0 (off) or at least 1 second")
        return value

    @field_validator("source")
    @classmethod
    def _relative_to_config(cls, value: str | int, info: ValidationInfo) -> str | int:
        """Relative file and directory sources are taken from the config file's directory."""
        base = (info.context or {}).get("base_dir")
        if isinstance(value, str) and base is not None and value.strip() and not _is_stream_or_command(value):
            path = Path(value).expanduser()
            if not path.is_absolute():
                return str(Path(base) / path)
        return value

    @model_validator(mode="after")
    def _source_not_blank(self) -> CameraConfig:
        if isinstance(self.source, str) and not self.source.strip():
            raise ValueError("'source' must not be empty")
        if isinstance(self.source, int) and self.source < 0:
            raise ValueError("'source' as a device index must be >= 0")
        if (self.width is None) != (self.height is None):
            raise ValueError("'width' and 'height' must be given together")
        if self.max_frame_age_s is not None and self.max_frame_age_s <= 1.0 / self.fps:
            raise ValueError(
                f"'max_frame_age_s' ({self.max_frame_age_s:g} s) must be longer than the time between two frames "
                f"(1/fps = {1.0 / self.fps:g} s)"
            )
        return self


class VadConfig(Section):
    """The voice gate: cuts the microphone stream into utterances."""

    engine: Literal["silero", "energy"] = Field(
        default="silero", description="'silero' (Silero VAD, robust to noise) or 'energy' (loudness only, fallback)."
    )
    threshold: float = Field(
        default=0.5, gt=0, lt=1, description="Silero speech probability at which a chunk counts as speech."
    )
    energy_threshold_db: float = Field(
        default=-35.0, ge=-90, le=0, description="'energy' engine: loudness (dBFS) at which a chunk counts as speech."
    )
    silence_floor_db: float = Field(
        default=-70.0,
        ge=-120,
        le=-20,
        description="Chunks quieter than this (dBFS) count as silence without being scored: a muted microphone "
        "or a silent room then costs next to no CPU.",
    )
    min_speech_ms: int = Field(default=300, ge=0, le=10000, description="Shorter utterances are dropped.")
    hangover_ms: int = Field(default=600, ge=32, le=10000, description="Silence after speech that ends an utterance.")
    pre_roll_ms: int = Field(default=300, ge=0, le=5000, description="Audio kept from before speech began.")
    max_utterance_s: float = Field(
        default=15.0, gt=0, le=30, description="An utterance is cut at this length (the model takes at most 30 s)."
    )
    mode: Literal["always", "triggered"] = Field(
        default="always",
        description="'always' listens all the time; 'triggered' listens only after a trigger (MQTT message, "
        "button, motion) and gives up after 'listen_timeout_s' without speech.",
    )
    listen_timeout_s: float = Field(
        default=8.0, gt=0, le=300, description="'triggered' mode: how long to wait for speech after a trigger."
    )
    arm_on_motion: list[Identifier] = Field(
        default_factory=list, description="'triggered' mode: cameras whose motion starts listening."
    )


class MicrophoneConfig(Section):
    """The microphone: a sound device through PortAudio, or a WAV/raw file for demos and tests."""

    device: str | int | None = Field(
        default=None,
        description="Input device name (a substring is enough) or index; default: the system default.",
    )
    file: FilePath | None = Field(
        default=None,
        description="Read audio from this file instead of a device: WAV, FLAC, OGG (what libsndfile reads), "
        "or int16 samples in a .raw/.pcm/.s16 file.",
    )
    sample_rate: int = Field(
        default=16000, ge=8000, le=192000, description="Capture rate in Hz; audio is resampled to 16 kHz."
    )
    channels: int = Field(default=1, ge=1, le=32, description="Captured channels; mixed down to mono.")
    realtime: bool = Field(
        default=True, description="'file' only: play the file at its real speed (false: as fast as possible)."
    )
    loop: bool = Field(default=False, description="'file' only: start over at the end.")
    vad: VadConfig = Field(default_factory=VadConfig, description="The voice gate.")

    @model_validator(mode="after")
    def _device_or_file(self) -> MicrophoneConfig:
        if self.device is not None and self.file is not None:
            raise ValueError("give either 'device' or 'file', not both")
        return self
