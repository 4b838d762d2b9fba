"""Sampling: greedy, seeded sampling, and each logits filter on small hand-made distributions."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.model.runtime.sampling import Sampler, SamplingParams, apply_repetition_penalty, filter_logits

LOGITS = np.log(np.array([0.5, 0.25, 0.15, 0.07, 0.03]))


def kept(params: SamplingParams, logits: np.ndarray = LOGITS) -> list[int]:
    return [int(i) for i in np.flatnonzero(np.isfinite(filter_logits(logits, params)))]


def test_greedy_takes_the_argmax_whatever_the_seed() -> None:
    assert {Sampler(SamplingParams(seed=s))(LOGITS, []) for s in range(5)} == {0}


def test_top_k_keeps_k_tokens() -> None:
    assert kept(SamplingParams(temperature=1.0, top_k=2)) == [0, 1]


def test_top_p_keeps_the_smallest_set_reaching_p() -> None:
    assert kept(SamplingParams(temperature=1.0, top_p=0.5)) == [0]
    assert kept(SamplingParams(temperature=1.0, top_p=0.6)) == [0, 1]
    assert kept(SamplingParams(temperature=1.0, top_p=0.9)) == [0, 1, 2]


def test_min_p_drops_tokens_below_a_fraction_of_the_best() -> None:
    assert kept(SamplingParams(temperature=1.0, min_p=0.2)) == [0, 1, 2]


def test_repetition_penalty_divides_positive_and_multiplies_negative_scores() -> None:
    logits = np.array([2.0, -2.0, 1.0])
    assert apply_repetition_penalty(logits, [0, 1, 1], 2.0).tolist() == [1.0, -4.0, 1.0]


def test_seed_reproduces_and_distribution_is_followed() -> None:
    params = SamplingParams(temperature=1.0, seed=7)
    first = [Sampler(params)(LOGITS, []) for _ in range(3)]
    sampler_a, sampler_b = Sampler(params), Sampler(params)
    run_a = [sampler_a(LOGITS, []) for _ in range(50)]
    run_b = [sampler_b(LOGITS, []) for _ in range(50)]
    assert run_a == run_b and first == [run_a[0]] * 3
    big = Sampler(SamplingParams(temperature=1.0, seed=3))
    frequencies = np.bincount([big(LOGITS, []) for _ in range(4000)], minlength=5) / 4000
    assert np.allclose(frequencies, np.exp(LOGITS), atol=0.03)


def test_low_temperature_sharpens() -> None:
    sampler = Sampler(SamplingParams(temperature=0.05, seed=0))
    assert {sampler(LOGITS, []) for _ in range(200)} == {0}


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -1},
        {"top_k": -1},
        {"top_p": 0},
        {"top_p": 1.5},
        {"min_p": 1},
        {"repetition_penalty": 0},
    ],
)
def test_invalid_parameters_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SamplingParams(**bad)  # type: ignore[arg-type]
