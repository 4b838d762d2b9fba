"""The microphone: sounddevice capture into a bounded ring buffer, or an audio file; 16 kHz mono out."""

from __future__ import annotations

import collections
import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import soxr

from edge_agent.audio_io import RAW_SUFFIXES, AudioFileError, read_audio
from edge_agent.config import MicrophoneConfig
from edge_agent.messages import AudioChunk
from edge_agent.service import Backoff
from edge_agent.sources.frame_sources import SourceError

log = logging.getLogger(__name__)

RATE = 16000
CHUNK = 512  # 32 ms: the window Silero VAD scores
_RING_SECONDS = 5.0
_MAX_AHEAD_S = 0.25  # a device this far ahead of the wall clock has no clock of its own ...
_MAX_DRIFT = 0.01  # ... beyond 1 % of the time elapsed: a real sound card's clock drifts well under 0.1 %


def import_sounddevice() -> ModuleType:
    """sounddevice, imported only when a microphone is configured (it needs PortAudio)."""
    try:
        import sounddevice as module
    except OSError as exc:  # raised when libportaudio is missing
        raise SourceError(
            f"microphone: PortAudio is not installed ({exc}); run `sudo apt-get install -y libportaudio2`",
            permanent=True,
        ) from None
    loaded: ModuleType = module
    return loaded


class Rechunker:
    """Mixes to mono, resamples to 16 kHz and cuts fixed 512-sample chunks with stream timestamps."""

    def __init__(self, rate: int, emit: Callable[[AudioChunk], None], start_sample: int = 0) -> None:
        self._resampler = soxr.ResampleStream(rate, RATE, 1, dtype="float32") if rate != RATE else None
        self._pending = np.zeros(0, np.float32)
        self.emitted = start_sample  # 16 kHz samples emitted so far (the stream clock)
        self._emit = emit

    def feed(self, block: np.ndarray, last: bool = False) -> None:
        """Add captured frames (frames x channels, or mono) in [-1, 1]."""
        mono = block.mean(axis=1) if block.ndim == 2 else block
        mono = mono.astype(np.float32, copy=False)
        if self._resampler is not None:
            mono = self._resampler.resample_chunk(mono, last=last)
        self._pending = np.concatenate([self._pending, mono])
        while len(self._pending) >= CHUNK:
            chunk, self._pending = self._pending[:CHUNK], self._pending[CHUNK:]
            self._emit(AudioChunk(chunk, self.emitted / RATE))
            self.emitted += CHUNK


def find_input_device(sd: ModuleType, wanted: str | int | None) -> int | None:
    """The index of the input device named (a case-insensitive substring) or numbered by `wanted`."""
    if wanted is None:
        return None
    devices = [(i, d) for i, d in enumerate(sd.query_devices()) if d["max_input_channels"] > 0]
    if isinstance(wanted, int):
        if any(i == wanted for i, _ in devices):
            return wanted
        raise SourceError(f"no input device with index {wanted}", permanent=True)
    for index, device in devices:
        if wanted.lower() in str(device["name"]).lower():
            return index
    names = ", ".join(repr(d["name"]) for _, d in devices) or "none"
    raise SourceError(f"no input device matching {wanted!r} (inputs: {names})", permanent=True)


class DeviceClock:
    """How far the audio a device delivered runs ahead of the wall clock since it was opened."""

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.frames = 0
        self.opened = time.monotonic()

    def ahead_s(self) -> float:
        """Seconds of audio delivered beyond the time elapsed (about 0 for a real device)."""
        return self.frames / self.rate - (time.monotonic() - self.opened)

    def runs_ahead(self, strict: bool) -> float | None:
        """How far ahead a clockless device is (strict: once known to be one), else None."""
        ahead = self.ahead_s()
        slack = _MAX_AHEAD_S + (0.0 if strict else _MAX_DRIFT * (time.monotonic() - self.opened))
        return ahead if ahead > slack else None


def rescan_devices(sd: ModuleType) -> None:
    """Make PortAudio list the devices afresh, so that a replugged microphone is found again."""
    # No public rescan in sounddevice 0.5 (maintainer's advice, python-sounddevice#125: _terminate/_initialize).
    terminate, initialize = getattr(sd, "_terminate", None), getattr(sd, "_initialize", None)
    if not (callable(terminate) and callable(initialize)):
        _warn_no_rescan()
        return
    with contextlib.suppress(sd.PortAudioError):  # not initialised (an earlier retry failed): nothing to end
        terminate()
    try:
        initialize()
    except sd.PortAudioError as exc:
        log.warning("microphone: cannot reinitialise PortAudio (%s); trying again on the next retry", exc)


@functools.cache
def _warn_no_rescan() -> None:
    """Say once that this sounddevice cannot rescan devices."""
    log.warning("microphone: this sounddevice cannot rescan devices; a replugged one is found after a restart")


class SoundDeviceMicrophone:
    """Captures through PortAudio. A device that stops delivering is `reconnecting`: reopened with backoff (at most
    30 s apart). One that is not there (no such name or index, no PortAudio) is `failed`: said once at WARNING and
    tried again with a backoff growing to 5 minutes. Neither ends `run`, so the rest of the node works on."""

    def __init__(
        self, config: MicrophoneConfig, backoff: Backoff | None = None, failed_backoff: Backoff | None = None
    ) -> None:
        self.config = config
        self.backoff = backoff or Backoff(initial_s=1.0, maximum_s=30.0, healthy_after_s=30.0)
        self.failed_backoff = failed_backoff or Backoff(initial_s=1.0, maximum_s=300.0, healthy_after_s=30.0)
        self.overflows = 0  # blocks lost because the ring was full or PortAudio overran
        self.state = "starting"
        self.last_error: str | None = None  # why it is reconnecting or failed
        self.retries = 0
        self.paced = False  # set once the device was found running faster than real time
        # wraps each open, wait for audio and close: the systemd watchdog counts one that never returns as stalled
        self.busy: Callable[[str], AbstractContextManager[object]] = lambda _stage: nullcontext()
        self.on_state: Callable[[], None] = lambda: None  # called (on this thread) when `state` changed

    def _set(self, state: str, why: str | None) -> None:
        changed = state != self.state
        self.state, self.last_error = state, why
        if changed:
            self.on_state()

    def run(self, emit: Callable[[AudioChunk], None], stop: threading.Event) -> None:
        """Blocking: capture until `stop` is set."""
        while not stop.is_set():
            started, sd = time.monotonic(), None
            try:
                sd = import_sounddevice()
                self._capture(sd, emit, stop)
            except SourceError as exc:
                self._wait(stop, str(exc), exc.permanent, time.monotonic() - started)
            except Exception as exc:
                if sd is None or not isinstance(exc, sd.PortAudioError):
                    raise
                self._wait(stop, str(exc), False, time.monotonic() - started)
            if sd is not None and not stop.is_set():
                rescan_devices(sd)

    def _wait(self, stop: threading.Event, why: str, permanent: bool, ran_for_s: float) -> None:
        """`failed` or `reconnecting`, said at WARNING when that or the reason changed; then the backoff."""
        state = "failed" if permanent else "reconnecting"
        delay = (self.failed_backoff if permanent else self.backoff).delay(ran_for_s)
        level = logging.DEBUG if (state, why) == (self.state, self.last_error) else logging.WARNING
        self._set(state, why)
        self.retries += 1
        log.log(level, "microphone: %s (%s); trying again in %.1f s", state, why, delay)
        stop.wait(delay)

    def _capture(self, sd: ModuleType, emit: Callable[[AudioChunk], None], stop: threading.Event) -> None:
        ring: collections.deque[np.ndarray] = collections.deque(
            maxlen=int(_RING_SECONDS * self.config.sample_rate / 256)
        )
        ready = threading.Event()
        clock = DeviceClock(self.config.sample_rate)

        def callback(indata: np.ndarray, frames: int, _time: Any, status: Any) -> None:
            if status.input_overflow or len(ring) == ring.maxlen:
                self.overflows += 1
            ring.append(indata.astype(np.float32) / 32768.0)
            clock.frames += frames
            ready.set()
            if (ahead := clock.runs_ahead(strict=self.paced)) is not None:
                self._pace(ahead)

        rechunker = Rechunker(self.config.sample_rate, emit)
        with self.busy("microphone"):
            stream = sd.InputStream(
                device=find_input_device(sd, self.config.device),
                samplerate=self.config.sample_rate,
                channels=self.config.channels,
                dtype="int16",  # what every USB microphone and ALSA plugin offers
                blocksize=256,
                callback=callback,
            )
        try:
            stream.start()
            self._set("ok", None)
            log.info("microphone: capturing from %s", stream.device)
            while not stop.is_set():
                with self.busy("microphone"):
                    if not ready.wait(2.0) and not stop.is_set():
                        raise SourceError("no audio for 2 s (device gone?)")
                    ready.clear()
                    while ring and not stop.is_set():
                        rechunker.feed(ring.popleft())
                if not stream.active and not stop.is_set():
                    raise SourceError("the input stream stopped")
        finally:
            with self.busy("microphone"):
                with contextlib.suppress(sd.PortAudioError):  # a device that is gone cannot be stopped: close it
                    stream.stop()
                stream.close()

    def _pace(self, ahead_s: float) -> None:
        """Hold back a device that runs ahead of real time (ALSA's file plugin, a clockless loopback)."""
        if not self.paced:
            log.warning("microphone: the device delivers audio faster than real time; pacing it to real time")
        self.paced = True
        time.sleep(ahead_s)  # in PortAudio's thread: a device without a clock cannot overrun, it just waits


def read_audio_file(path: Path, sample_rate: int = RATE, channels: int = 1) -> tuple[np.ndarray, int]:
    """Samples in [-1, 1] (frames x channels) and the rate of an audio file, or of raw int16 audio."""
    try:
        return read_audio(path, raw_rate=sample_rate, raw_channels=channels)
    except AudioFileError as exc:
        raw = path.suffix.lower() in RAW_SUFFIXES
        kind = "headerless int16 audio" if raw else "a PCM WAV file or other audio libsndfile reads"
        raise SourceError(f"{exc.path}: not {kind} ({exc.reason})", permanent=True) from None


class FileMicrophone:
    """Plays an audio file (WAV, FLAC, ... or raw int16) as if it were a microphone (demo and tests)."""

    def __init__(self, config: MicrophoneConfig) -> None:
        assert config.file is not None
        self.config = config
        self.overflows = 0
        self.state = "starting"
        self.last_error: str | None = None
        self.busy: Callable[[str], AbstractContextManager[object]] = lambda _stage: nullcontext()
        self.on_state: Callable[[], None] = lambda: None  # not called: a file's state is only read

    def run(self, emit: Callable[[AudioChunk], None], stop: threading.Event) -> None:
        """Blocking: emit the file's audio (in real time unless configured otherwise); a file that cannot be read
        is `failed` (said at WARNING) and ends the microphone, not the node."""
        assert self.config.file is not None
        try:
            samples, rate = read_audio_file(self.config.file, self.config.sample_rate, self.config.channels)
        except SourceError as exc:
            self.state, self.last_error = "failed", str(exc)
            log.warning("microphone: failed (%s)", exc)
            return
        block = max(1, rate // 50)  # 20 ms
        self.state = "ok"
        clock = 0
        while not stop.is_set():
            rechunker = Rechunker(rate, emit, clock)
            due = time.monotonic()
            for start in range(0, len(samples), block):
                if stop.is_set():
                    return
                rechunker.feed(samples[start : start + block], last=start + block >= len(samples))
                if self.config.realtime:
                    due += block / rate
                    stop.wait(max(0.0, due - time.monotonic()))
            clock = rechunker.emitted
            if not self.config.loop:
                self.state = "ended"
                return


def open_microphone(config: MicrophoneConfig) -> SoundDeviceMicrophone | FileMicrophone:
    """The configured microphone."""
    return FileMicrophone(config) if config.file is not None else SoundDeviceMicrophone(config)
