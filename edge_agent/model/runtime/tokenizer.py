"""Gemma's tokenizer.json through the `tokenizers` library; special-token ids read from the model's files."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer

from edge_agent.model.store.files import ModelFilesError, read_json

_REPLACEMENT = "\ufffd"


class Tokenizer:
    """Encode and decode text for one model directory."""

    def __init__(self, model_dir: Path) -> None:
        path = model_dir / "tokenizer.json"
        try:
            self._tokenizer = HFTokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception for unreadable files
            raise ModelFilesError(f"{path}: not a usable tokenizer ({exc})") from None
        settings = (
            read_json(model_dir / "tokenizer_config.json") if (model_dir / "tokenizer_config.json").is_file() else {}
        )
        self.bos_id = self.token_id(_token_text(settings.get("bos_token"), "<bos>"))
        self.eos_id = self.token_id(_token_text(settings.get("eos_token"), "<eos>"))
        self.pad_id = self.token_id(_token_text(settings.get("pad_token"), "<pad>"))
        self.vocab_size = self._tokenizer.get_vocab_size(with_added_tokens=True)
        added = self._tokenizer.get_added_tokens_decoder().values()
        self.special_tokens = tuple(sorted((t.content for t in added if t.special), key=len, reverse=True))

    def token_id(self, token: str) -> int:
        """The id of a (special) token; ModelFilesError when this tokenizer lacks it."""
        found = self._tokenizer.token_to_id(token)
        if found is None:
            raise ModelFilesError(f"tokenizer.json has no token {token!r}")
        return int(found)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`; special tokens written in the text (e.g. '<bos>', '<|turn>') become their ids."""
        return list(self._tokenizer.encode(text, add_special_tokens=False).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of `ids`."""
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def stream(self, skip_special_tokens: bool = True) -> StreamingDecoder:
        """A fresh streaming decoder."""
        return StreamingDecoder(self, skip_special_tokens)


def _token_text(value: object, default: str) -> str:
    if isinstance(value, dict):  # {"content": "<bos>", ...} in some tokenizer_config.json files
        value = value.get("content")
    return value if isinstance(value, str) else default


# tokenizers.decoders.DecodeStream (0.21+) yields the same pieces for well-formed output, but raises "Invalid prefix
# encountered while decoding stream" once a byte token (<0xE2>) is followed by a token that does not continue its
# character (sampled output does this; 8 tests in tests/model fail with it), and silently drops an incomplete
# character at the end, where flush() gives U+FFFD as Tokenizer.decode does.
class StreamingDecoder:
    """Ids in, whole UTF-8 text out; not tokenizers' DecodeStream: it raises on a stray byte token, has no flush."""

    def __init__(self, tokenizer: Tokenizer, skip_special_tokens: bool = True) -> None:
        self._tokenizer = tokenizer
        self._skip = skip_special_tokens
        self._pending: list[int] = []

    def add(self, token_id: int) -> str:
        """The text that became complete with this token (often empty for byte tokens)."""
        self._pending.append(token_id)
        text = self._tokenizer.decode(self._pending, self._skip)
        if text.endswith(_REPLACEMENT):
            return ""  # an incomplete character: wait for its remaining bytes
        self._pending = []
        return text

    def flush(self) -> str:
        """Whatever is still held back (invalid bytes become U+FFFD)."""
        text, self._pending = self._tokenizer.decode(self._pending, self._skip), []
        return text
