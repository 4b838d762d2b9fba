"""The tokenizer wrapper on the fixture's tokenizer.json: ids from the files, whole characters when streaming."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import ModelFilesError
from edge_agent.prompt.chat import Message, render_prompt

MODEL = Path(__file__).resolve().parents[2] / "models" / "tiny-gemma4"
TOKENIZER = Tokenizer(MODEL)


def test_special_ids_come_from_the_files() -> None:
    assert (TOKENIZER.pad_id, TOKENIZER.eos_id, TOKENIZER.bos_id) == (0, 1, 2)
    assert TOKENIZER.token_id("<turn|>") == 6
    with pytest.raises(ModelFilesError, match="no token '<nope>'"):
        TOKENIZER.token_id("<nope>")


def test_a_rendered_prompt_has_exactly_one_bos() -> None:
    ids = TOKENIZER.encode(render_prompt([Message("user", "Is the garage door open?")]))
    assert ids[0] == TOKENIZER.bos_id and ids.count(TOKENIZER.bos_id) == 1
    assert (
        TOKENIZER.token_id("<|turn>") in ids and TOKENIZER.decode(ids[1:3], skip_special_tokens=False) == "<|turn>user"
    )


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=0, max_size=40))
def test_streaming_equals_decoding_and_never_splits_a_character(text: str) -> None:
    ids = TOKENIZER.encode(text)
    stream = TOKENIZER.stream()
    pieces = [stream.add(i) for i in ids]
    pieces.append(stream.flush())
    assert "".join(pieces) == TOKENIZER.decode(ids)
    whole = TOKENIZER.decode(ids)
    assert all("\ufffd" not in piece for piece in pieces) or "\ufffd" in whole


def test_multibyte_characters_arrive_whole() -> None:
    ids = TOKENIZER.encode("Grüße 🌍")
    stream = TOKENIZER.stream()
    pieces = [stream.add(i) for i in ids]
    assert "".join(pieces) == "Grüße 🌍"
    assert "🌍" in pieces and "" in pieces  # the emoji's four byte tokens came out as one piece


def test_corrupt_tokenizer_is_named(tmp_path: Path) -> None:
    shutil.copytree(MODEL, tmp_path / "m")
    (tmp_path / "m" / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(ModelFilesError, match=r"tokenizer\.json: not a usable tokenizer"):
        Tokenizer(tmp_path / "m")
