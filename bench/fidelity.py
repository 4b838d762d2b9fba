"""Fidelity (and optionally speed) of the decoder rewrites, judged against the fp32 graph by an error budget.

Teacher-forced: one fixed token sequence (bos + seeded random ids, --positions long) runs through each
configuration in prefill chunks with the KV cache; the logits at every position are compared with the fp32
graph's: KL(softmax(fp32) || softmax(config)) mean / p99 / max, the largest absolute logit error, and top-1
agreement. Configurations: q4 at accuracy level 0 (as exported) and level 4 (int8 activations); "q4, float
head": the q4 graph with its lm_head swapped for the fp32 graph's float one (what an export that leaves the head
unquantized runs), as is and with the head quantized to INT8 / INT4; fp32 with an INT8 / INT4 head (the head's
own error); the KV cache kept in float16, on fp32 (its own error) and on q4 at level 4. With --speed, also
prefill and decode tokens/s of each q4 configuration (best of --repeats).
Run: .venv/bin/python bench/fidelity.py --model models/tiny-gemma4 [--model DIR ...] [--speed] [--json]
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from edge_agent.model.runtime.engine import EngineOptions, open_session
from edge_agent.model.runtime.graph_cache import PreparedGraph, apply_rewrites
from edge_agent.model.runtime.graph_head import float_weight
from edge_agent.model.runtime.graph_rewrite import (
    LOGITS_TO_KEEP,
    Head,
    HeadQuantization,
    Rewrites,
    find_head,
    load_proto,
)
from edge_agent.model.runtime.graph_split import PRESENT_IS_NEW
from edge_agent.model.store.files import ModelFiles, locate_model

REPO = Path(__file__).resolve().parent.parent
PAST = "past_key_values."
LEVEL0, LEVEL4 = Rewrites(), Rewrites(int8_activations=True)
HEADS: tuple[HeadQuantization, ...] = ("int8", "int4")


@dataclass(frozen=True)
class Config:
    """One configuration: a variant, the rewrites of its decoder, and whether the q4 head is swapped for a float one."""

    name: str
    variant: str
    rewrites: Rewrites
    float_head: bool = False


FIDELITY = [
    Config("q4 level 0 (as exported)", "q4", LEVEL0),
    Config("q4 level 4", "q4", LEVEL4),
    Config("q4, float head, level 0", "q4", LEVEL0, True),
    Config("q4, float head, level 4", "q4", LEVEL4, True),
    *(Config(f"q4, head -> {b}, level 4", "q4", Rewrites(int8_activations=True, head=b), True) for b in HEADS),
    *(Config(f"fp32, head -> {b}", "fp32", Rewrites(head=b)) for b in HEADS),
    Config("fp32, KV cache float16", "fp32", Rewrites(kv_float16=True)),
    Config("q4 level 4, KV cache float16", "q4", Rewrites(int8_activations=True, kv_float16=True)),
]
SPEED = [
    Config("q4 as exported (all logits)", "q4", Rewrites(logits_to_keep=False)),
    Config("q4 + last logits", "q4", LEVEL0),
    Config("q4 + last logits + level 4", "q4", LEVEL4),
    Config("q4, float head, level 4", "q4", LEVEL4, True),
    *(Config(f"q4, head -> {b}, level 4", "q4", Rewrites(int8_activations=True, head=b), True) for b in HEADS),
]


def with_float_head(q4: ModelFiles, fp32: ModelFiles) -> onnx.ModelProto:
    """The q4 decoder with the fp32 graph's float lm_head MatMul (its weight read from the fp32 sidecar)."""
    model, reference = load_proto(str(q4.decoder.onnx)), load_proto(str(fp32.decoder.onnx)).graph
    head, float_head = find_head(model.graph), find_head(reference)
    assert head is not None and float_head is not None and float_head.node.op_type == "MatMul"
    weight = next(t for t in reference.initializer if t.name == float_head.node.input[1])
    dropped = set(head.node.input[1:])
    node = onnx.helper.make_node("MatMul", [head.node.input[0], weight.name], list(head.node.output), name="float_head")
    model.graph.node.remove(head.node)
    model.graph.node.insert(head.index, node)
    kept = [t for t in model.graph.initializer if t.name not in dropped]
    del model.graph.initializer[:]
    model.graph.initializer.extend([*kept, weight])
    return model


class Runner:
    """The embed and decoder sessions of one configuration."""

    def __init__(self, model: Path, config: Config, threads: int | None, proto: onnx.ModelProto | None = None) -> None:
        files = locate_model(model, config.variant, verify=False)
        options = EngineOptions(intra_op_threads=threads, rewrites=config.rewrites)
        proto = proto or load_proto(str(files.decoder.onnx))
        if config.float_head:
            proto = with_float_head(files, locate_model(model, "fp32", verify=False))
        folder = files.decoder.onnx.parent
        _, tensors = apply_rewrites(proto, folder, config.rewrites)
        prepared = PreparedGraph(proto.SerializeToString(), folder, tensors)
        self.embed = open_session(files.embed_tokens.onnx, options, ["CPUExecutionProvider"])
        self.decoder = open_session(files.decoder.onnx, options, ["CPUExecutionProvider"], prepared)
        self.inputs = {node.name: node for node in self.decoder.get_inputs()}
        self.past = sorted(n for n in self.inputs if n.startswith(PAST))
        # a split graph's `present` outputs hold only the new positions, which the caller appends
        self.appends = self.decoder.get_modelmeta().custom_metadata_map.get(PRESENT_IS_NEW) == "1"

    def empty(self) -> dict[str, np.ndarray]:
        """A zero-length KV cache, in the type the graph takes (float16 with a float16 cache)."""
        kinds = {n: np.float16 if self.inputs[n].type == "tensor(float16)" else np.float32 for n in self.past}
        return {n: np.zeros((1, self.inputs[n].shape[1], 0, self.inputs[n].shape[3]), kinds[n]) for n in self.past}

    def run(self, names: list[str], ids: list[int], cache: dict[str, np.ndarray], keep: int) -> list[np.ndarray]:
        """The decoder outputs `names` for `ids` after `cache` (logits of the last `keep` positions, 0: all)."""
        done = next(iter(cache.values())).shape[2] if cache else 0
        embeds, per_layer = self.embed.run(["inputs_embeds", "per_layer_inputs"], {"input_ids": np.asarray([ids])})
        total = done + len(ids)
        feeds = {"inputs_embeds": embeds, "per_layer_inputs": per_layer, **cache}
        feeds |= {"attention_mask": np.ones((1, total), np.int64), "position_ids": np.arange(done, total)[None, :]}
        if LOGITS_TO_KEEP in self.inputs:
            feeds[LOGITS_TO_KEEP] = np.array(keep, np.int64)
        return [np.asarray(value) for value in self.decoder.run(names, feeds)]

    def step(self, ids: list[int], cache: dict[str, np.ndarray], keep: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Logits [positions, vocab] of `ids` after `cache` and the grown cache."""
        logits, *present = self.run(["logits", *(n.replace(PAST, "present.") for n in self.past)], ids, cache, keep)
        if self.appends:
            present = [np.concatenate([cache[n], new], axis=2) for n, new in zip(self.past, present, strict=True)]
        return logits[0].astype(np.float32), dict(zip(self.past, present, strict=True))

    def teacher_forced(self, ids: list[int], chunk: int) -> np.ndarray:
        """Logits at every position of `ids`, prefilled `chunk` positions at a time."""
        cache, rows = self.empty(), []
        for start in range(0, len(ids), chunk):
            logits, cache = self.step(ids[start : start + chunk], cache, 0)
            rows.append(logits)
        return np.concatenate(rows)

    def timed(self, prompt: list[int], new_tokens: int) -> tuple[float, float]:
        """Prefill and greedy-decode tokens/s of one run."""
        start = time.perf_counter()
        logits, cache = self.step(prompt, self.empty(), 1)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        for _ in range(new_tokens):
            logits, cache = self.step([int(np.argmax(logits[-1]))], cache, 1)
        return len(prompt) / prefill, new_tokens / (time.perf_counter() - start)


def kernel_inputs(model: Path, ids: list[int], threads: int | None) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """The q4 decoder proto and the input activation [positions, K] of each of its MatMulNBits on `ids`."""
    proto = load_proto(str(locate_model(model, "q4", verify=False).decoder.onnx))
    names = sorted({n.input[0] for n in proto.graph.node if n.op_type == "MatMulNBits"})
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    runner = Runner(model, Config("probe", "q4", Rewrites(logits_to_keep=False)), threads, probe)
    values = runner.run(names, ids, runner.empty(), 0)
    return proto, {name: value.reshape(-1, value.shape[-1]) for name, value in zip(names, values, strict=True)}


def kernels_alone(
    proto: onnx.ModelProto, folder: Path, level: int, threads: int | None, xs: dict[str, np.ndarray]
) -> list[np.ndarray]:
    """Every MatMulNBits of `proto` run on its own captured input, side by side, at accuracy `level`."""
    helper, graph = onnx.helper, proto.graph
    nodes = [n for n in graph.node if n.op_type == "MatMulNBits"]
    used = {name for n in nodes for name in n.input[1:]}
    copies = []
    for i, node in enumerate(nodes):
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copy.input[0], copy.output[0] = f"x{i}", f"y{i}"
        del copy.attribute[:]
        copy.attribute.extend(a for a in node.attribute if a.name != "accuracy_level")
        copy.attribute.append(helper.make_attribute("accuracy_level", level))
        copies.append(copy)
    inputs = [helper.make_tensor_value_info(f"x{i}", onnx.TensorProto.FLOAT, [None, None]) for i in range(len(nodes))]
    outputs = [helper.make_empty_tensor_value_info(f"y{i}") for i in range(len(nodes))]
    initializers = [t for t in graph.initializer if t.name in used]
    alone = helper.make_model(helper.make_graph(copies, "kernels", inputs, outputs, initializers))
    del alone.opset_import[:]
    alone.opset_import.extend(proto.opset_import)
    alone.ir_version = proto.ir_version
    session = open_session(
        folder / "kernels.onnx",
        EngineOptions(intra_op_threads=threads),
        ["CPUExecutionProvider"],
        PreparedGraph(alone.SerializeToString(), folder),
    )
    feeds = {f"x{i}": xs[node.input[0]] for i, node in enumerate(nodes)}
    return [np.asarray(y) for y in session.run([f"y{i}" for i in range(len(nodes))], feeds)]


def kernel_errors(model: Path, positions: int, threads: int | None) -> dict[str, float]:
    """Relative output error of each INT4 kernel on the same real activations: weights alone, and level 4's share."""
    vocab = locate_model(model, "q4", verify=False).info.vocab_size
    ids = [2, *np.random.default_rng(1).integers(min(300, vocab // 2), vocab, positions - 1).tolist()]
    proto, xs = kernel_inputs(model, ids, threads)
    fp32 = locate_model(model, "fp32", verify=False).decoder
    reference = load_proto(str(fp32.onnx)).graph
    by_output = {n.output[0]: (i, n) for i, n in enumerate(reference.node) if n.op_type == "MatMul"}
    folder = locate_model(model, "q4", verify=False).decoder.onnx.parent
    level0, level4 = (kernels_alone(proto, folder, level, threads, xs) for level in (0, 4))
    weights, added, total = [], [], []
    for i, node in enumerate(n for n in proto.graph.node if n.op_type == "MatMulNBits"):
        index, matmul = by_output[node.output[0]]
        weight = float_weight(reference, Head(matmul, index), fp32.onnx.parent)
        assert weight is not None
        exact = xs[node.input[0]] @ np.asarray(weight.matrix, np.float32)
        norm = float(np.linalg.norm(exact))
        weights.append(float(np.linalg.norm(level0[i] - exact)) / norm)
        added.append(float(np.linalg.norm(level4[i] - level0[i])) / norm)
        total.append(float(np.linalg.norm(level4[i] - exact)) / norm)
    return {
        "kernels": len(weights),
        "int4_weights_mean": float(np.mean(weights)),
        "int4_weights_max": float(np.max(weights)),
        "int8_activations_added_mean": float(np.mean(added)),
        "int8_activations_added_max": float(np.max(added)),
        "level4_total_mean": float(np.mean(total)),
    }


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    result: np.ndarray = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


def compare(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """KL(ref || other) per position (mean, p99, max), max |logit error|, top-1 agreement."""
    log_p, log_q = _log_softmax(reference), _log_softmax(other)
    kl = (np.exp(log_p) * (log_p - log_q)).sum(axis=-1)
    return {
        "kl_mean": float(kl.mean()),
        "kl_p99": float(np.percentile(kl, 99)),
        "kl_max": float(kl.max()),
        "max_abs_logit": float(np.abs(reference - other).max()),
        "top1": float((reference.argmax(-1) == other.argmax(-1)).mean()),
    }


def fidelity(model: Path, positions: int, chunk: int, threads: int | None) -> dict[str, dict[str, float]]:
    """The comparison figures of every configuration against fp32 (and the q4 ones against q4 level 0)."""
    vocab = locate_model(model, "fp32", verify=False).info.vocab_size
    ids = [2, *np.random.default_rng(0).integers(min(300, vocab // 2), vocab, positions - 1).tolist()]
    reference = Runner(model, Config("fp32", "fp32", LEVEL0), threads).teacher_forced(ids, chunk)
    results: dict[str, dict[str, float]] = {}
    baselines: dict[bool, np.ndarray] = {}
    for config in FIDELITY:
        logits = Runner(model, config, threads).teacher_forced(ids, chunk)
        results[config.name] = compare(reference, logits)
        if config.variant == "q4" and config.float_head not in baselines:
            baselines[config.float_head] = logits
        elif config.variant == "q4":
            results[config.name]["kl_mean_vs_level0"] = compare(baselines[config.float_head], logits)["kl_mean"]
        gc.collect()
    return results


def speed(model: Path, prompt_tokens: int, new_tokens: int, threads: int | None, repeats: int) -> dict[str, Any]:
    """Prefill and decode tokens/s (best of `repeats`) and session build time of every speed configuration."""
    vocab = locate_model(model, "q4", verify=False).info.vocab_size
    prompt = [2] + [(37 * i + 11) % (vocab - 300) + 300 for i in range(prompt_tokens - 1)]
    figures = {}
    for config in SPEED:
        start = time.perf_counter()
        runner = Runner(model, config, threads)
        build_s = time.perf_counter() - start
        runner.timed(prompt[:8], 2)  # warm-up
        runs = [runner.timed(prompt, new_tokens) for _ in range(repeats)]
        figures[config.name] = {"prefill": max(r[0] for r in runs), "decode": max(r[1] for r in runs), "load": build_s}
        f = figures[config.name]
        print(
            f"  speed {config.name:30s} prefill {f['prefill']:8.1f} tok/s  decode {f['decode']:7.2f} tok/s"
            f"  load {f['load']:5.1f} s"
        )
        del runner
        gc.collect()
    return figures


def _print_fidelity(model: Path, positions: int, results: dict[str, dict[str, float]]) -> None:
    print(f"{model}: {positions} teacher-forced positions, against fp32")
    print(f"  {'configuration':30s} {'KL mean':>9s} {'KL p99':>9s} {'KL max':>9s} {'max|dlogit|':>11s} {'top-1':>7s}")
    for name, r in results.items():
        extra = f"  (added to level 0: KL mean {r['kl_mean_vs_level0']:.2e})" if "kl_mean_vs_level0" in r else ""
        print(
            f"  {name:30s} {r['kl_mean']:9.2e} {r['kl_p99']:9.2e} {r['kl_max']:9.2e} {r['max_abs_logit']:11.4f}"
            f" {r['top1']:7.1%}{extra}"
        )


def _print_kernels(positions: int, e: dict[str, float]) -> None:
    print(f"  each of {e['kernels']:.0f} INT4 kernels alone on the same {positions} positions of its real input:")
    print(
        f"    relative output error, INT4 weights (level 0 vs fp32): mean {e['int4_weights_mean']:.2%}"
        f" max {e['int4_weights_max']:.2%}; int8 activations add (level 4 vs level 0): mean"
        f" {e['int8_activations_added_mean']:.2%} max {e['int8_activations_added_max']:.2%};"
        f" level 4 vs fp32: mean {e['level4_total_mean']:.2%}"
    )


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", help="model directory (repeatable)")
    parser.add_argument("--positions", type=int, default=320, help="teacher-forced positions (default 320)")
    parser.add_argument("--chunk", type=int, default=64, help="positions per prefill call (default 64)")
    parser.add_argument("--kernel-positions", type=int, default=64, help="activations per kernel (default 64)")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: all cores)")
    parser.add_argument("--no-fidelity", action="store_true", help="only measure speed")
    parser.add_argument("--speed", action="store_true", help="also measure prefill and decode tokens/s")
    parser.add_argument("--prompt-tokens", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report: dict[str, dict[str, Any]] = {}
    for model in args.model or [REPO / "models" / "tiny-gemma4", REPO / "models" / "tiny-gemma4-b"]:
        report[str(model)] = {}
        if not args.no_fidelity:
            report[str(model)]["fidelity"] = results = fidelity(model, args.positions, args.chunk, args.threads)
            _print_fidelity(model, args.positions, results)
            report[str(model)]["kernels"] = errors = kernel_errors(model, args.kernel_positions, args.threads)
            _print_kernels(args.kernel_positions, errors)
        if args.speed:
            print(f"{model}: {args.prompt_tokens} prompt tokens, {args.new_tokens} new tokens")
            figures = speed(model, args.prompt_tokens, args.new_tokens, args.threads, args.repeats)
            report[str(model)]["speed"] = figures
    if args.json:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
