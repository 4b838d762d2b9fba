"""Build a random-weight Gemma 4 text model with E2B's (or E4B's) real text shapes, for speed benchmarks.

Writes, outside the repository (default ~/.cache/edge-agent/bench-models/<preset>; never commit it), the public
layout: onnx/{embed_tokens,decoder_model_merged}{,_q4}.onnx + .onnx_data sidecars, config.json,
generation_config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja and bench_model.json (shape,
sizes, build time). Reuses models/build_tiny_gemma4.py (export, quantize_q4, metadata, tokenizer). Needs the
`export` extra: python3 -m venv .venv-export && .venv-export/bin/pip install -e '.[export]'. Run:
    .venv-export/bin/python bench/build_bench_model.py --preset e2b [--vocab 32768] [--layers 35] [--out DIR]
With --encoders it also adds vision_encoder / audio_encoder (fp32 and _q4) at E2B's real shapes (see
bench/bench_encoders.py); on a folder that already holds this build only the encoders are written.

Shapes: e2b is the released E2B text config (GEMMA4.md); e4b follows the E4B config.json as quoted in public
code (42 layers, 5 sliding : 1 full, 2 KV heads, no double-wide MLP) [read, not checked against the release].
The vocabulary is cut (default 32,768 of 262,144) to fit this machine. To scale figures back to 262,144: the
tied lm_head inside the decoder grows by (262144 - vocab) x hidden weights, read on every decode token (fp32
4 bytes, q4 0.625 bytes per weight); the embedding tables grow by (262144 - vocab) x (hidden + layers x 256) rows
on disk, but a token still reads one row of each. --layers cuts layers (KV-shared layers in proportion).

The tokenizer is a BPE of `vocab` pieces trained on ~0.5 MB of English (the Python documentation's topic pages),
so prompts take about as many tokens as with a trained tokenizer (the fixtures' tiny one splits unseen words into
characters). A build made before that gets the new tokenizer.json when the command is run again.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "models"))

import build_tiny_gemma4 as tiny  # noqa: E402
import torch  # noqa: E402
from tiny_metadata import write_metadata  # noqa: E402
from tiny_tokenizer import CORPUS, build_tokenizer  # noqa: E402
from transformers import Gemma4ForCausalLM, Gemma4TextConfig  # noqa: E402

FULL_VOCAB = 262_144
PRESETS: dict[str, dict[str, Any]] = {
    "e2b": {
        "hidden_size": 1536,
        "num_hidden_layers": 35,
        "num_attention_heads": 8,
        "num_key_value_heads": 1,
        "head_dim": 256,
        "global_head_dim": 512,
        "sliding_window": 512,
        "intermediate_size": 6144,
        "hidden_size_per_layer_input": 256,
        "num_kv_shared_layers": 20,
        "use_double_wide_mlp": True,
        "sliding_per_full": 4,
    },
    "e4b": {
        "hidden_size": 2560,
        "num_hidden_layers": 42,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "head_dim": 256,
        "global_head_dim": 512,
        "sliding_window": 512,
        "intermediate_size": 10240,
        "hidden_size_per_layer_input": 256,
        "num_kv_shared_layers": 18,
        "use_double_wide_mlp": False,
        "sliding_per_full": 5,
    },
}
EMBED_STD, FINAL_NORM_GAIN = 0.01, 8.0
DEFAULT_ROOT = Path.home() / ".cache" / "edge-agent" / "bench-models"


def bench_config(preset: str, vocab: int, layers: int | None) -> Gemma4TextConfig:
    """The preset's text config with `vocab` tokens, cut to `layers` layers (KV-shared ones in proportion)."""
    shape = dict(PRESETS[preset])
    sliding = shape.pop("sliding_per_full")
    total = shape["num_hidden_layers"]
    count = layers or total
    pattern = (["sliding_attention"] * sliding + ["full_attention"]) * (count // (sliding + 1) + 1)
    shared = round(count * shape["num_kv_shared_layers"] / total)
    shape["num_kv_shared_layers"] = max(0, min(shared, count - sliding - 1))  # a full layer must hold a cache
    shape.update(num_hidden_layers=count, layer_types=[*pattern[: count - 1], "full_attention"])
    config = Gemma4TextConfig(
        vocab_size=vocab,
        vocab_size_per_layer_input=vocab,
        max_position_embeddings=131072,
        final_logit_softcapping=30.0,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
        hidden_activation="gelu_pytorch_tanh",
        **shape,
    )
    config.kv_sharing_modes  # noqa: B018 (raises when the unshared layers lack a layer type)
    return config


@contextlib.contextmanager
def deferred_externalize() -> Iterator[list[Path]]:
    """Collect the graphs tiny.export would externalize, so that runs after the torch model is freed."""
    original, pending = tiny.externalize, []
    tiny.externalize = pending.append  # type: ignore[assignment]
    try:
        yield pending
    finally:
        tiny.externalize = original


def bench_weights(model: Gemma4ForCausalLM, seed: int) -> None:
    """The tiny builder's spread weights, with a small token embedding and a wide final norm.

    With 35 layers and a tied head, spread_weights' large embedding dominates the residual stream, so the model
    echoes its input token forever; embedding std 0.01 and final norm x8 give varied greedy ids, logits std ~3.
    """
    tiny.spread_weights(model, seed)
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(EMBED_STD / 0.15)
        model.model.norm.weight.mul_(FINAL_NORM_GAIN)


def file_sizes(onnx_dir: Path) -> dict[str, int]:
    """Bytes of each file under onnx/."""
    return {p.name: p.stat().st_size for p in sorted(onnx_dir.iterdir()) if p.is_file()}


def scale_note(config: Gemma4TextConfig) -> dict[str, float]:
    """How figures move from this vocabulary to the real 262,144 (extra weights, in millions)."""
    extra = FULL_VOCAB - config.vocab_size
    per_layer = config.num_hidden_layers * config.hidden_size_per_layer_input
    head = extra * config.hidden_size / 1e6
    return {
        "extra_lm_head_weights_m": head,
        "extra_decode_bytes_per_token_fp32_mb": head * 4,
        "extra_decode_bytes_per_token_q4_mb": head * 0.625,
        "extra_embedding_table_weights_m": extra * (config.hidden_size + per_layer) / 1e6,
    }


def english_corpus() -> str:
    """The fixtures' home-automation sentences plus the Python documentation's topic pages (`pydoc_data`, in
    every CPython): ~0.5 MB of English, so prompts split into about as many tokens as a trained tokenizer makes."""
    from pydoc_data.topics import topics

    return CORPUS + "\n".join(text for _, text in sorted(topics.items()))


def write_tokenizer(out: Path, vocab: int) -> tuple[dict[str, int], dict[str, Any]]:
    """Train the benchmark tokenizer into `out`; returns its ids of the special tokens and how it splits text."""
    tokenizer, tokens = build_tokenizer(vocab, english_corpus())
    tokenizer.save(str(out / "tokenizer.json"))
    sample = "Is the garage door open? Transcribe the speech in this audio exactly, in its language."
    chars_per_token = round(len(sample) / len(tokenizer.encode(sample).ids), 2)
    return tokens, {"corpus": "tiny_tokenizer.CORPUS + pydoc_data.topics", "chars_per_token": chars_per_token}


def build(preset: str, out: Path, vocab: int, layers: int | None) -> dict[str, Any]:
    """Build, export (fp32) and quantize (q4) one benchmark model; returns its summary."""
    started = time.monotonic()
    config = bench_config(preset, vocab, layers)
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = Gemma4ForCausalLM(config).eval()
    bench_weights(model, seed=len(preset))
    params = sum(p.numel() for p in model.parameters())
    onnx_dir = out / "onnx"
    if onnx_dir.is_dir():
        shutil.rmtree(onnx_dir)  # leftovers of an earlier build (per-tensor files) must not mix in
    onnx_dir.mkdir(parents=True)
    tokens, trained = write_tokenizer(out, vocab)
    template = REPO / "models" / "tiny_chat_template.jinja"
    write_metadata(out, config, tokens, PRESETS[preset]["global_head_dim"], template)
    media_ids = [tokens[t] for t in ("<|image|>", "<|audio|>", "<|video|>")]
    with deferred_externalize() as pending:
        tiny.export(model, config, onnx_dir, media_ids)
    exported = time.monotonic()
    del model
    gc.collect()
    for graph in pending:
        tiny.externalize(graph)
    tiny.quantize_q4(onnx_dir)
    summary = {
        "preset": preset,
        "vocab_size": vocab,
        "num_hidden_layers": config.num_hidden_layers,
        "num_kv_shared_layers": config.num_kv_shared_layers,
        "layer_types": config.layer_types,
        "torch_parameters": params,
        "tokenizer": trained,
        "weights": {"embed_std": EMBED_STD, "final_norm_gain": FINAL_NORM_GAIN, "seed": len(preset)},
        "export_s": round(exported - started, 1),
        "build_s": round(time.monotonic() - started, 1),
        "files": file_sizes(onnx_dir),
        "to_full_vocab": scale_note(config),
    }
    (out / "bench_model.json").write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def add_encoders(out: Path, summary: dict[str, Any]) -> None:
    """Add the encoders beside the text graphs of the build `summary` describes; record and print them."""
    from bench_encoders import add_encoders as export_encoders

    config = bench_config(summary["preset"], summary["vocab_size"], summary["num_hidden_layers"])
    summary["encoders"] = export_encoders(out, config, REPO)
    (out / "bench_model.json").write_text(json.dumps(summary, indent=1) + "\n")
    params = summary["encoders"]["parameters"]
    print(
        f"added encoders to {out} in {summary['encoders']['build_s']:.0f} s: vision {params['vision'] / 1e6:.0f}M, "
        f"audio {params['audio'] / 1e6:.0f}M parameters"
    )
    for name, size in summary["encoders"]["files"].items():
        print(f"  onnx/{name:40s} {size / 2**20:10.1f} MiB")


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="e2b")
    parser.add_argument("--vocab", type=int, default=32768, help="vocabulary size (the real one is 262144)")
    parser.add_argument("--layers", type=int, help="cut to this many layers (default: all)")
    parser.add_argument("--out", type=Path, help=f"output folder (default {DEFAULT_ROOT}/<preset>)")
    parser.add_argument("--force", action="store_true", help="rebuild even when the folder holds this build")
    parser.add_argument(
        "--encoders",
        action="store_true",
        help="also add the vision and audio encoders at E2B's real shapes (bench/bench_encoders.py); "
        "an existing build keeps its text graphs",
    )
    args = parser.parse_args()
    out = args.out or DEFAULT_ROOT / args.preset
    done = out / "bench_model.json"
    if done.is_file() and not args.force:
        old = json.loads(done.read_text())
        wanted = args.layers or PRESETS[args.preset]["num_hidden_layers"]
        if (old["preset"], old["vocab_size"], old["num_hidden_layers"]) == (args.preset, args.vocab, wanted):
            print(f"{out}: already built ({done.name}); --force rebuilds")
            if "tokenizer" not in old:  # built before the English corpus: same special ids, new pieces
                _, old["tokenizer"] = write_tokenizer(out, old["vocab_size"])
                done.write_text(json.dumps(old, indent=1) + "\n")
                print(f"  tokenizer retrained: {old['tokenizer']['chars_per_token']} chars/token")
            if args.encoders:
                add_encoders(out, old)
            return
    summary = build(args.preset, out, args.vocab, args.layers)
    if args.encoders:
        add_encoders(out, summary)
    shape = f"{summary['num_hidden_layers']} layers ({summary['num_kv_shared_layers']} KV-shared)"
    print(f"wrote {out}: {args.preset}, {shape}, vocab {args.vocab}, in {summary['build_s']:.0f} s")
    for name, size in summary["files"].items():
        print(f"  onnx/{name:40s} {size / 2**20:10.1f} MiB")
    scale = summary["to_full_vocab"]
    print(
        f"  at 262,144 vocab: +{scale['extra_lm_head_weights_m']:.0f}M lm_head weights read per decode token "
        f"(+{scale['extra_decode_bytes_per_token_fp32_mb']:.0f} MB fp32, "
        f"+{scale['extra_decode_bytes_per_token_q4_mb']:.0f} MB q4); "
        f"+{scale['extra_embedding_table_weights_m']:.0f}M embedding-table weights on disk (one row read per token)"
    )


if __name__ == "__main__":
    main()
