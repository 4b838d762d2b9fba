"""Placeholder expansion, the ids embed_tokens sees, and the feature scatter (pure functions)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge_agent.model.runtime.multimodal import (
    MediaMismatchError,
    MediaTokens,
    expand_placeholders,
    ids_for_embedding,
    scatter_features,
)
from edge_agent.model.store.files import ModelFilesError, parse_model_info

REPO = Path(__file__).resolve().parents[2]
TOKENS = MediaTokens(image=50, boi=51, eoi=52, audio=60, boa=61, eoa=62, pad=0, video=70)


def test_tokens_come_from_config_json() -> None:
    info = parse_model_info(REPO / "models" / "tiny-gemma4" / "config.json")
    tokens = MediaTokens.from_info(info)
    assert (tokens.image, tokens.audio, tokens.pad) == (info.image_token_id, info.audio_token_id, 0)
    assert len({tokens.image, tokens.boi, tokens.eoi, tokens.audio, tokens.boa, tokens.eoa}) == 6


def test_tokens_missing_from_config_name_the_key(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"vocab_size": 8, "num_hidden_layers": 1, "image_token_id": 5}')
    with pytest.raises(ModelFilesError, match=r"boi_token_id.*audio_token_id"):
        MediaTokens.from_info(parse_model_info(tmp_path / "config.json"))


def test_each_placeholder_expands_to_its_own_count_in_order() -> None:
    ids = [2, 9, 50, 9, 50, 60, 8]
    out = expand_placeholders(ids, TOKENS, image_counts=[2, 3], audio_counts=[1])
    assert out == [2, 9, 51, 50, 50, 52, 9, 51, 50, 50, 50, 52, 61, 60, 62, 8]


@pytest.mark.parametrize(("images", "audio", "message"), [([2], [], "2 image placeholder"), ([2, 2, 2], [], "3 image")])
def test_placeholder_and_media_counts_must_agree(images: list[int], audio: list[int], message: str) -> None:
    with pytest.raises(MediaMismatchError, match=message):
        expand_placeholders([50, 50], TOKENS, image_counts=images, audio_counts=audio)


def test_audio_without_placeholder_is_refused() -> None:
    with pytest.raises(MediaMismatchError, match="0 audio placeholder"):
        expand_placeholders([2, 9], TOKENS, audio_counts=[4])


def test_placeholders_are_embedded_as_pad() -> None:
    assert ids_for_embedding([2, 51, 50, 50, 52, 61, 60, 62, 70, 9], TOKENS) == [2, 51, 0, 0, 52, 61, 0, 62, 0, 9]


def test_scatter_writes_rows_in_order_and_leaves_the_rest() -> None:
    embeds = np.arange(2 * 6 * 4, dtype=np.float32).reshape(2, 6, 4)[:1]
    ids = [2, 50, 9, 50, 50, 9]
    features = np.array([[-1] * 4, [-2] * 4, [-3] * 4], dtype=np.float32)
    merged = scatter_features(embeds, ids, 50, features, "image")
    assert merged[0, [1, 3, 4], 0].tolist() == [-1, -2, -3]
    np.testing.assert_array_equal(merged[0, [0, 2, 5]], embeds[0, [0, 2, 5]])
    assert embeds[0, 1, 0] == 4  # the input is not modified


def test_scatter_count_mismatch_is_a_clear_error() -> None:
    embeds = np.zeros((1, 4, 3), np.float32)
    with pytest.raises(MediaMismatchError, match="2 placeholder tokens, 3 feature rows"):
        scatter_features(embeds, [50, 50, 9, 9], 50, np.ones((3, 3), np.float32), "image")


def test_scatter_width_mismatch_names_the_hidden_size() -> None:
    with pytest.raises(MediaMismatchError, match=r"expected \[N, 3\]"):
        scatter_features(np.zeros((1, 2, 3), np.float32), [60, 9], 60, np.ones((1, 5), np.float32), "audio")
