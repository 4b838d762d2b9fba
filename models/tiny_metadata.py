"""The metadata files of a tiny Gemma 4 export, as the released exports carry them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from tiny_tokenizer import SPECIAL_TOKENS
from transformers import Gemma4TextConfig


def config_json(config: Gemma4TextConfig, tokens: dict[str, int], global_head_dim: int) -> dict[str, Any]:
    """config.json as the released Gemma 4 exports carry it (a multimodal wrapper around text_config)."""
    text = {k: v for k, v in config.to_dict().items() if k not in ("per_layer_config", "kv_sharing_modes")}
    text["global_head_dim"] = global_head_dim
    return {
        "architectures": ["Gemma4ForConditionalGeneration"],
        "model_type": "gemma4",
        "text_config": text,
        "image_token_id": tokens["<|image|>"],
        "audio_token_id": tokens["<|audio|>"],
        "video_token_id": tokens["<|video|>"],
        "boi_token_id": tokens["<|image>"],
        "eoi_token_id": tokens["<image|>"],
        "boa_token_id": tokens["<|audio>"],
        "eoa_token_id": tokens["<audio|>"],
        "eos_token_id": [1, tokens["<turn|>"]],
        "tie_word_embeddings": True,
    }


def write_metadata(
    out: Path, config: Gemma4TextConfig, tokens: dict[str, int], global_head_dim: int, chat_template: Path
) -> None:
    """tokenizer_config.json, config.json, generation_config.json and chat_template.jinja."""
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GemmaTokenizer",
                "bos_token": "<bos>",
                "eos_token": "<eos>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "add_bos_token": False,
                "model_max_length": 512,
                "additional_special_tokens": [t for t in SPECIAL_TOKENS if t.startswith("<|") or t.endswith("|>")],
            },
            indent=2,
        )
        + "\n"
    )
    (out / "config.json").write_text(json.dumps(config_json(config, tokens, global_head_dim), indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps(
            {
                "bos_token_id": 2,
                "pad_token_id": 0,
                "eos_token_id": [1, tokens["<turn|>"]],
                "do_sample": True,
                "top_k": 64,
                "top_p": 0.95,
                "temperature": 1.0,
            },
            indent=2,
        )
        + "\n"
    )
    shutil.copyfile(chat_template, out / "chat_template.jinja")
