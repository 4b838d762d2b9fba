"""Voice gate on espeak-ng speech in silence and noise: one utterance per sentence, bounds within 300 ms."""

from __future__ import annotations

import numpy as np
import pytest
from rig.speech import Scene, compose, speak

from edge_agent.config import VadConfig
from edge_agent.gating.vad import EnergyScorer, SileroScorer, VoiceGate
from edge_agent.messages import AudioChunk, Utterance


def run_gate(scene: Scene, gate: VoiceGate) -> list[Utterance]:
    utterances = []
    for start in range(0, len(scene.samples) - 511, 512):
        chunk = AudioChunk(scene.samples[start : start + 512], start / 16000)
        if (utterance := gate.feed(chunk, now=start / 16000)) is not None:
            utterances.append(utterance)
    if (last := gate.flush()) is not None:
        utterances.append(last)
    return utterances


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    workdir = tmp_path_factory.mktemp("speech")
    return [speak(text, workdir) for text in ("Turn on the kitchen light.", "Is the garage door open?")]


@pytest.mark.parametrize("noise_db", [-70.0, -40.0])
def test_each_sentence_is_one_utterance_with_accurate_bounds(sentences: list[np.ndarray], noise_db: float) -> None:
    scene = compose([1.5, sentences[0], 1.5, sentences[1], 2.0], noise_db=noise_db)
    utterances = run_gate(scene, VoiceGate(VadConfig(), SileroScorer()))
    assert len(utterances) == len(scene.truth), [(u.start_s, u.end_s) for u in utterances]
    for utterance, (start, end) in zip(utterances, scene.truth, strict=True):
        assert abs(utterance.start_s - start) <= 0.3 and abs(utterance.end_s - end) <= 0.3
        assert utterance.reason == "silence"
        assert len(utterance.samples) / 16000 >= utterance.end_s - utterance.start_s  # pre-roll included


def test_pure_noise_gives_no_utterance() -> None:
    scene = compose([10.0], noise_db=-25.0)
    assert run_gate(scene, VoiceGate(VadConfig(), SileroScorer())) == []
    # the loudness fallback cannot tell noise from speech: that is why Silero is the default
    assert run_gate(scene, VoiceGate(VadConfig(engine="energy"), EnergyScorer(-35.0)))


def test_long_speech_is_cut_at_max_length(sentences: list[np.ndarray]) -> None:
    talk = np.concatenate([sentences[0], sentences[1], sentences[0]])
    scene = compose([0.5, talk, 1.0], noise_db=-70.0)
    utterances = run_gate(scene, VoiceGate(VadConfig(max_utterance_s=2.0, hangover_ms=1500), SileroScorer()))
    assert utterances[0].reason == "max_length"
    assert utterances[0].end_s - utterances[0].start_s <= 2.0
    assert len(utterances[0].samples) <= (2.0 + 0.3 + 0.032) * 16000  # + pre-roll
    assert utterances[1].start_s == pytest.approx(utterances[0].end_s, abs=0.04)  # the talk goes on


def test_short_blips_are_dropped(sentences: list[np.ndarray]) -> None:
    scene = compose([1.0, sentences[0][:2400], 2.0], noise_db=-70.0)  # 150 ms of speech
    assert run_gate(scene, VoiceGate(VadConfig(min_speech_ms=300), SileroScorer())) == []


def test_triggered_mode_listens_once_then_times_out(sentences: list[np.ndarray]) -> None:
    scene = compose([1.0, sentences[0], 1.0, sentences[1], 1.0], noise_db=-70.0)
    gate = VoiceGate(VadConfig(mode="triggered", listen_timeout_s=3.0), SileroScorer())
    assert run_gate(scene, gate) == []  # never triggered: nothing is picked up
    gate = VoiceGate(VadConfig(mode="triggered", listen_timeout_s=3.0), SileroScorer())
    gate.arm(now=0.0)
    heard = run_gate(scene, gate)
    assert len(heard) == 1 and abs(heard[0].start_s - scene.truth[0][0]) <= 0.3
    gate = VoiceGate(VadConfig(mode="triggered", listen_timeout_s=0.5), SileroScorer())
    gate.arm(now=0.0)
    assert run_gate(scene, gate) == []  # speech began after the listening window closed


def test_chunks_below_the_silence_floor_are_not_scored(sentences: list[np.ndarray]) -> None:
    silero = SileroScorer()
    scored: list[float] = []

    def counting(samples: np.ndarray) -> float:
        scored.append(float(np.max(np.abs(samples))))
        return silero(samples)

    scene = compose([3.0, sentences[0], 3.0], noise_db=-120.0)  # near-digital silence around it
    utterances = run_gate(scene, VoiceGate(VadConfig(), counting))
    assert len(utterances) == 1
    assert 0 < len(scored) <= len(sentences[0]) / 512 + 2, "only the audible chunks reach the scorer"
