"""Text generation speed: prefill and decode tokens/s, time to first token and peak RSS, for a model directory.

Runs edge-agent's engine and decode loop (greedy, eos ignored) on a prompt of --prompt-tokens ids and
--new-tokens new ones; with --peer, runs transformers.js (models/.node, the public reference client of
these exports) on the same files and ids in the same run and prints the ratio. Prints one line per run
and, with --json, the figures as JSON for later benchmarks to extend.
Run: .venv/bin/python bench/generate.py --model models/tiny-gemma4 --variant q4 [--peer]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from edge_agent.model.runtime.engine import EngineOptions, TextEngine
from edge_agent.model.runtime.generate import GenerationSettings, generate
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model

REPO = Path(__file__).resolve().parent.parent
PEER_SCRIPT = REPO / "models" / "transformers_js_generate.mjs"


def ours(model: Path, variant: str, prompt: list[int], new_tokens: int, threads: int | None) -> dict[str, float]:
    """Figures of edge-agent's loop (best of three runs after a warm-up)."""
    load_start = time.monotonic()
    engine = TextEngine(locate_model(model, variant), EngineOptions(intra_op_threads=threads))
    load_s = time.monotonic() - load_start
    tokenizer = Tokenizer(model)
    settings = GenerationSettings(max_new_tokens=new_tokens, max_context=len(prompt) + new_tokens + 1)
    generate(engine, prompt[:8], GenerationSettings(max_new_tokens=2), tokenizer.stream())  # warm-up
    runs = [generate(engine, prompt, settings, tokenizer.stream()) for _ in range(3)]
    best = min(runs, key=lambda r: r.prefill_s + r.decode_s)
    return {
        "load_s": load_s,
        "prefill_tokens_per_s": best.prefill_tokens_per_s,
        "decode_tokens_per_s": best.decode_tokens_per_s,
        "ttft_ms": best.ttft_s * 1000,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "ids": best.ids,  # type: ignore[dict-item]
    }


def peer(model: Path, variant: str, prompt: list[int], new_tokens: int) -> dict[str, float] | None:
    """The same run in transformers.js (Node), or None when it is not installed."""
    if shutil.which("node") is None or not (REPO / "models" / ".node" / "node_modules").is_dir():
        return None
    out = subprocess.run(
        ["node", str(PEER_SCRIPT), str(model), variant, json.dumps(prompt), str(new_tokens)],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "tiny-gemma4")
    parser.add_argument("--variant", default="q4")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: all cores)")
    parser.add_argument("--peer", action="store_true", help="also run transformers.js on the same files")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    vocab = locate_model(args.model, args.variant, verify=False).info.vocab_size
    prompt = [2] + [(37 * i + 11) % (vocab - 300) + 300 for i in range(args.prompt_tokens - 1)]
    figures = {"edge-agent": ours(args.model, args.variant, prompt, args.new_tokens, args.threads)}
    if args.peer and (peer_figures := peer(args.model, args.variant, prompt, args.new_tokens)) is not None:
        figures["transformers.js"] = peer_figures
    print(f"{args.model.name} {args.variant}: {args.prompt_tokens} prompt tokens, {args.new_tokens} new tokens")
    for name, f in figures.items():
        print(
            f"  {name:15s} prefill {f['prefill_tokens_per_s']:9.1f} tok/s  decode {f['decode_tokens_per_s']:8.1f} tok/s"
            f"  ttft {f['ttft_ms']:7.1f} ms  peak RSS {f['peak_rss_mb']:7.1f} MB"
        )
    if "transformers.js" in figures:
        mine, theirs = figures["edge-agent"], figures["transformers.js"]
        prefill = mine["prefill_tokens_per_s"] / theirs["prefill_tokens_per_s"]
        decode = mine["decode_tokens_per_s"] / theirs["decode_tokens_per_s"]
        same = mine["ids"] == theirs["ids"]
        print(f"  ratio edge-agent/transformers.js: prefill {prefill:.2f}  decode {decode:.2f}  (same ids: {same})")
    if args.json:
        print(json.dumps({"model": str(args.model), "variant": args.variant, "figures": figures}))


if __name__ == "__main__":
    sys.exit(main())
