"""Images and audio in a prompt: placeholder expansion, the ids `embed_tokens` sees, and the feature scatter.

As transformers 5.23 does it (Gemma4Processor and Gemma4Model.forward, checked in the source):
- the chat template writes one `<|image|>` per image and one `<|audio|>` per clip; the processor replaces each
  with `<|image>` + `<|image|>` x n + `<image|>` (audio: `<|audio>` ... `<audio|>`), n = that item's soft tokens;
- placeholder ids are looked up as the pad id for both `inputs_embeds` and `per_layer_inputs`, so this client
  swaps them before `embed_tokens` and does not depend on whether an export's embed graph does it too;
- encoder rows are written, in order, at the positions holding the placeholder id; `per_layer_inputs` stays.
- a clip: the template writes one `<|video|>` and the processor replaces it with, per sampled frame, its `mm:ss`
  timestamp, a space, `<|image>` + `<|video|>` x n + `<image|>`, frames joined by spaces (n = soft tokens of one
  frame); the frames go through the vision tower like images (Gemma4Model.get_video_features) and their rows are
  scattered at the `video_token_id` positions (from config.json). This client writes the timestamps and frame
  markers as text with one `<|video|>` per frame, tokenizes, then widens each to its n slots (expand_video_frames).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_agent.model.store.files import ModelFilesError, ModelInfo


class MediaMismatchError(ValueError):
    """Placeholders and media (or encoder rows) do not pair up."""


@dataclass(frozen=True)
class MediaTokens:
    """The token ids that frame and stand for images and audio in a prompt."""

    image: int
    boi: int
    eoi: int
    audio: int
    boa: int
    eoa: int
    pad: int
    video: int | None = None

    @classmethod
    def from_info(cls, info: ModelInfo) -> MediaTokens:
        """Read them from config.json's fields; a missing one is a ModelFilesError naming it."""
        wanted = {
            "image_token_id": info.image_token_id,
            "boi_token_id": info.boi_token_id,
            "eoi_token_id": info.eoi_token_id,
            "audio_token_id": info.audio_token_id,
            "boa_token_id": info.boa_token_id,
            "eoa_token_id": info.eoa_token_id,
            "pad_token_id": info.pad_token_id,
        }
        missing = [name for name, value in wanted.items() if value is None]
        if missing:
            raise ModelFilesError(f"config.json: no {', '.join(missing)} (not a multimodal Gemma 4 export?)")
        image, boi, eoi, audio, boa, eoa, pad = (int(v or 0) for v in wanted.values())
        return cls(image, boi, eoi, audio, boa, eoa, pad, video=info.video_token_id)

    @property
    def placeholders(self) -> frozenset[int]:
        """Ids whose embedding row is replaced by encoder features."""
        return frozenset(i for i in (self.image, self.audio, self.video) if i is not None)


def _expand_one(ids: Sequence[int], token: int, frame: tuple[int, int], counts: Sequence[int], kind: str) -> list[int]:
    found = sum(1 for i in ids if i == token)
    if found != len(counts):
        raise MediaMismatchError(f"the prompt has {found} {kind} placeholder(s) but {len(counts)} {kind}(s) were given")
    out: list[int] = []
    pending = iter(counts)
    for i in ids:
        if i == token:
            out += [frame[0], *[token] * next(pending), frame[1]]
        else:
            out.append(i)
    return out


def expand_placeholders(
    ids: Sequence[int], tokens: MediaTokens, image_counts: Sequence[int] = (), audio_counts: Sequence[int] = ()
) -> list[int]:
    """Replace the k-th image (audio) placeholder by its framed run of `counts[k]` soft-token slots."""
    expanded = _expand_one(ids, tokens.image, (tokens.boi, tokens.eoi), image_counts, "image")
    return _expand_one(expanded, tokens.audio, (tokens.boa, tokens.eoa), audio_counts, "audio")


def expand_video_frames(ids: Sequence[int], tokens: MediaTokens, frame_counts: Sequence[int]) -> list[int]:
    """Widen the k-th `<|video|>` id (one per frame, already framed by `<|image>` ... `<image|>`) to
    `frame_counts[k]` slots."""
    if not frame_counts:
        return list(ids)
    if tokens.video is None:
        raise MediaMismatchError("config.json has no video_token_id: this export cannot take video")
    found = sum(1 for i in ids if i == tokens.video)
    if found != len(frame_counts):
        raise MediaMismatchError(
            f"the prompt has {found} video frame slot(s) but {len(frame_counts)} frame(s) were given"
        )
    out: list[int] = []
    pending = iter(frame_counts)
    for i in ids:
        out += [i] * next(pending) if i == tokens.video else [i]
    return out


def ids_for_embedding(ids: Sequence[int], tokens: MediaTokens) -> list[int]:
    """The ids `embed_tokens` gets: placeholders become the pad id, as in Gemma4Model.forward."""
    placeholders = tokens.placeholders
    return [tokens.pad if i in placeholders else i for i in ids]


def scatter_features(
    inputs_embeds: np.ndarray, ids: Sequence[int], token: int, features: np.ndarray, kind: str
) -> np.ndarray:
    """A copy of `inputs_embeds` [1,S,H] with row k of `features` [N,H] at the k-th position holding `token`."""
    positions = np.flatnonzero(np.asarray(ids) == token)
    hidden = inputs_embeds.shape[-1]
    if features.ndim != 2 or features.shape[1] != hidden:
        raise MediaMismatchError(
            f"{kind} features have shape {list(features.shape)}; expected [N, {hidden}] (the text model's hidden size)"
        )
    if len(positions) != features.shape[0]:
        raise MediaMismatchError(
            f"{kind} features and {kind} tokens do not match: {len(positions)} placeholder tokens, "
            f"{features.shape[0]} feature rows"
        )
    merged: np.ndarray = inputs_embeds.copy()
    merged[0, positions] = features.astype(merged.dtype, copy=False)
    return merged
