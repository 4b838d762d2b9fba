"""Text generation speed: prefill and decode tokens/s, time to first token and peak RSS, for a model directory.

Every measurement runs in a fresh process (this script with --worker ours|peer), so RSS and caches are per run.
Ours is edge-agent's engine and decode loop (TextEngine + generate, greedy, eos ignored); with --peer, the same
cases run in transformers.js (models/.node, the public reference client of these exports) on the same files,
ids and thread count, alternating ours / peer for --rounds rounds; medians and ratios are printed. Cases: a
--prompt-tokens prompt then --new-tokens new tokens; a --long-prompt prompt (prefill); ours only, a --context
prompt then --context-new tokens (decode at a long context). Also prints the decode roofline (bench/roofline.py),
the kernel ceiling (bench/kernel_ceiling.py: MatMulNBits alone at the model's shapes), ours' RSS by stage
(bench/rss.py) and the load average at start and end; --json FILE (or --json alone: stdout) writes the figures.
Run: .venv/bin/python bench/generate.py --model ~/.cache/edge-agent/bench-models/e2b --variant q4 --peer
Benchmark model: bench/build_bench_model.py. The peer: ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix
models/.node @huggingface/transformers@4.3.1 (as `make fixtures` does).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_report
import kernel_ceiling
import roofline
from rss import MB, RssSampler, resident_by_mapping, rss_bytes

from edge_agent.config.model import ModelConfig
from edge_agent.model.runtime.engine import EngineOptions, TextEngine
from edge_agent.model.runtime.generate import GenerationSettings, generate
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import ModelFiles, locate_model

REPO = Path(__file__).resolve().parent.parent
PEER_SCRIPT = REPO / "models" / "transformers_js_generate.mjs"
Case = tuple[str, int, int, tuple[str, ...]]  # name, prompt tokens, new tokens, sides


def prompt_ids(vocab: int, count: int) -> list[int]:
    """A fixed prompt: bos, then ids spread over the vocabulary (past the special and byte tokens)."""
    return [2] + [(37 * i + 11) % (vocab - 300) + 300 for i in range(count - 1)]


def _parse(value: str, annotation: str) -> Any:
    """An engine option's text as the type its field declares."""
    if value.lower() == "none" and "None" in annotation:
        return None
    if "bool" in annotation:
        return value.lower() in ("1", "true", "yes", "on")
    if "tuple" in annotation:
        return tuple(v for v in value.split(",") if v)
    if "int" in annotation and value.lstrip("-").isdigit():
        return int(value)
    if "float" in annotation:
        return float(value)
    return Path(value) if "Path" in annotation else value


def _with_option(options: Any, key: str, value: str) -> Any:
    """`options` (a dataclass) with the field `key` (dotted for a nested one, rewrites.accuracy_level) set."""
    name, _, rest = key.partition(".")
    fields = {f.name: f for f in dataclasses.fields(options)}
    if name not in fields:
        raise SystemExit(f"--engine-option {key}: no field {name!r} (has: {', '.join(fields)})")
    current = getattr(options, name)
    if dataclasses.is_dataclass(current) and not rest:
        raise SystemExit(f"--engine-option {key}: set a field of it, {name}.FIELD=VALUE")
    new = _with_option(current, rest, value) if rest else _parse(value, str(fields[name].type))
    return dataclasses.replace(options, **{name: new})


def engine_options(model: Path, threads: int, pairs: list[str]) -> EngineOptions:
    """The daemon's options for this model (a default `model` config section: int8 activations, last-position
    logits, head quantization) with the thread count and every --engine-option key=value on top
    (e.g. rewrites.int8_activations=false for the file's own numerics, as the peer runs them)."""
    options = replace(EngineOptions.from_config(ModelConfig(path=model)), intra_op_threads=threads)
    for pair in pairs:
        key, _, value = pair.partition("=")
        options = _with_option(options, key, value)
    return options


def make_engine(files: ModelFiles, options: EngineOptions) -> TextEngine:
    """The engine a worker measures (the one place to pass new engine options)."""
    return TextEngine(files, options, encoders=())


def _max_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (as the peer's is read: ru_maxrss, KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    """One measured generation in this process (after a short warm-up)."""
    options = engine_options(args.model, args.threads, args.engine_option)
    files = locate_model(args.model, args.variant, verify=False)
    started = time.monotonic()
    engine = make_engine(files, options)
    load_s = time.monotonic() - started
    after_load = rss_bytes()
    rss: dict[str, Any] = {
        "load_peak_mb": _max_rss_mb() * 2**20 / MB,
        "after_load_mb": after_load / MB if after_load else None,
    }
    tokenizer = Tokenizer(args.model)
    prompt = prompt_ids(files.info.vocab_size, args.prompt_tokens)
    generate(engine, prompt[:8], GenerationSettings(max_new_tokens=2), tokenizer.stream())  # warm-up
    settings = GenerationSettings(max_new_tokens=args.new_tokens, max_context=len(prompt) + args.new_tokens + 1)
    with RssSampler() as sampler:
        began = time.monotonic()
        result = generate(engine, prompt, settings, tokenizer.stream())
        ended = time.monotonic()
    rss["prefill_peak_mb"] = sampler.peak_mb(began, began + result.ttft_s)
    rss["decode_peak_mb"] = sampler.peak_mb(began + result.ttft_s, ended)
    rss["end"] = resident_by_mapping()
    return {
        "ids": result.ids,
        "prefill_tokens_per_s": len(prompt) / result.ttft_s,
        "decode_tokens_per_s": result.decode_tokens_per_s,
        "ttft_ms": result.ttft_s * 1000,
        "load_s": load_s,
        "peak_rss_mb": _max_rss_mb(),
        "rss": rss,
        "engine_options": {k: repr(v) for k, v in dataclasses.asdict(options).items()},
    }


def run_peer(args: argparse.Namespace) -> dict[str, Any]:
    """One measured generation in transformers.js (a Node child; its peak RSS from the kernel)."""
    vocab = locate_model(args.model, args.variant, verify=False).info.vocab_size
    prompt = prompt_ids(vocab, args.prompt_tokens)
    command = ["node", str(PEER_SCRIPT), str(args.model), args.variant, json.dumps(prompt), str(args.new_tokens)]
    out = subprocess.run([*command, str(args.threads), "1"], capture_output=True, text=True, check=True).stdout
    figures = dict(json.loads(out.strip().splitlines()[-1]))
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return figures


def spawn(side: str, args: argparse.Namespace, prompt: int, new: int) -> dict[str, Any]:
    """Run one measurement in a fresh process of this script; its JSON line."""
    command = [sys.executable, __file__, "--worker", side, "--model", str(args.model), "--variant", args.variant]
    command += ["--prompt-tokens", str(prompt), "--new-tokens", str(new), "--threads", str(args.threads)]
    command += [f"--engine-option={pair}" for pair in args.engine_option]
    done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
    if done.returncode != 0:
        raise SystemExit(f"{side} worker failed ({prompt}+{new}):\n{done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def cases(args: argparse.Namespace, sides: tuple[str, ...]) -> list[Case]:
    """The measured cases; the long-context one runs ours only."""
    chosen: list[Case] = [("prompt", args.prompt_tokens, args.new_tokens, sides)]
    if args.long_prompt:
        chosen.append(("long_prompt", args.long_prompt, args.long_prompt_new, sides))
    if args.context:
        chosen.append(("context", args.context, args.context_new, ("ours",)))
    return chosen


def measure(args: argparse.Namespace, sides: tuple[str, ...]) -> dict[str, Any]:
    """All rounds: in each, every case runs ours then peer in fresh processes; raw runs by case and side."""
    runs: dict[str, Any] = {}
    for round_index in range(args.rounds):
        for name, prompt, new, case_sides in cases(args, sides):
            entry = runs.setdefault(name, {"prompt_tokens": prompt, "new_tokens": new, "runs": {}})
            for side in case_sides:
                figures = spawn(side, args, prompt, new)
                entry["runs"].setdefault(side, []).append(figures)
                print(f"  round {round_index + 1} {name} {side}: {bench_report.one_line(figures)}", flush=True)
    return runs


def peer_available() -> bool:
    """Node and the transformers.js install are present."""
    return shutil.which("node") is not None and (REPO / "models" / ".node" / "node_modules").is_dir()


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "tiny-gemma4")
    parser.add_argument("--variant", default="q4")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--long-prompt", type=int, default=1024, help="prefill case prompt length (0: skip)")
    parser.add_argument("--long-prompt-new", type=int, default=16, help="new tokens after the long prompt")
    parser.add_argument("--context", type=int, default=4000, help="ours only: long-context prompt (0: skip)")
    parser.add_argument("--context-new", type=int, default=32, help="new tokens decoded at the long context")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime intra-op threads, both sides")
    parser.add_argument("--rounds", type=int, default=3, help="fresh-process rounds (medians reported)")
    parser.add_argument("--peer", action="store_true", help="also run transformers.js on the same files")
    parser.add_argument(
        "--engine-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an EngineOptions field for ours (repeat; nested: rewrites.accuracy_level=4)",
    )
    parser.add_argument("--no-roofline", action="store_true", help="skip the bandwidth and kernel measurements")
    parser.add_argument(
        "--no-kernel-ceiling", action="store_true", help="skip timing MatMulNBits alone at the model's shapes"
    )
    parser.add_argument(
        "--kernel-bytes", type=int, default=kernel_ceiling.SHAPE_BYTES, help="stored bytes per kernel shape timed"
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds one worker may take")
    parser.add_argument("--json", nargs="?", const="-", metavar="FILE", help="write the figures (no FILE: stdout)")
    parser.add_argument("--worker", choices=("ours", "peer"), help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    """Command line."""
    args = parse_args()
    args.model = args.model.expanduser().resolve()
    if args.worker:
        print(json.dumps((run_ours if args.worker == "ours" else run_peer)(args)))
        return
    engine_options(args.model, args.threads, args.engine_option)  # refuse unknown options before any run
    sides: tuple[str, ...] = ("ours", "peer") if args.peer and peer_available() else ("ours",)
    if args.peer and len(sides) == 1:
        print("transformers.js is not installed (models/.node): measuring ours only")
    report: dict[str, Any] = {"model": str(args.model), "variant": args.variant, "threads": args.threads}
    report.update(rounds=args.rounds, load_start=bench_report.load_average(), started=time.time())
    report["bench_model"] = bench_report.model_shape(args.model)
    report["cases"] = measure(args, sides)
    if not args.no_roofline:
        report["roofline"] = {
            "weights": roofline.weight_bytes(args.model, args.variant),
            "bandwidth": {str(t): roofline.read_bandwidth(t) for t in sorted({1, args.threads})},
        }
        if not args.no_kernel_ceiling:
            decoder = locate_model(args.model, args.variant, verify=False).decoder.onnx
            rewrites = engine_options(args.model, args.threads, args.engine_option).rewrites
            report["roofline"]["kernel"] = kernel_ceiling.measure(decoder, rewrites, args.threads, args.kernel_bytes)
    report["load_end"] = bench_report.load_average()
    bench_report.summarize(report)
    print(bench_report.table(report))
    if args.json:
        text = json.dumps(report, indent=1)
        print(text) if args.json == "-" else Path(args.json).write_text(text + "\n")


if __name__ == "__main__":
    main()
