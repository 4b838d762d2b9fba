"""What onnxruntime's MatMulNBits kernel alone streams at a decoder's own INT4 shapes: the kernel ceiling of decode.

Every distinct (K, N, bits, block size, accuracy level, zero points, scale type) of the decoder's MatMulNBits nodes
(read from the graph, with the accuracy level the engine's load-time rewrite gives them, and the head the engine
quantizes when the file's lm_head is float) is rebuilt as a graph of
that one node repeated over random weights, enough copies to exceed the caches (--kernel-bytes per shape), and run
at M=1 (one decode token) with the same thread count. Its time times the node count in the decoder is what one
decode token would spend in MatMulNBits if nothing else ran; stored bytes / that time is the kernel's bandwidth.
Run: .venv/bin/python bench/kernel_ceiling.py MODEL_DIR [--variant q4] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edge_agent.config.model import ModelConfig
from edge_agent.model.runtime.engine import EngineOptions
from edge_agent.model.runtime.graph_head import BLOCK_SIZE as HEAD_BLOCK
from edge_agent.model.runtime.graph_head import float_weight, head_bits
from edge_agent.model.runtime.graph_rewrite import Rewrites, all_nodes, find_head, load_proto, set_accuracy_level

SHAPE_BYTES = 160_000_000  # stored weight bytes per measured shape: well past any last-level cache
IR_VERSION = 10  # onnxruntime 1.23 (the newest with Python 3.10 wheels) reads IR versions up to 11


@dataclass(frozen=True)
class KernelShape:
    """One MatMulNBits configuration of a decoder graph."""

    k: int
    n: int
    bits: int
    block_size: int
    accuracy_level: int
    zero_points: bool
    scale_type: int  # TensorProto data type of the scales (and of A)

    @property
    def blocks(self) -> int:
        """Quantization blocks along K."""
        return math.ceil(self.k / self.block_size)

    @property
    def stored_bytes(self) -> int:
        """Weights + scales (+ zero points) as stored in the graph."""
        weights = self.n * self.blocks * self.block_size * self.bits // 8
        scales = self.n * self.blocks * np.dtype(helper.tensor_dtype_to_np_dtype(self.scale_type)).itemsize
        zero_points = self.n * math.ceil(self.blocks * self.bits / 8) if self.zero_points else 0
        return weights + scales + zero_points


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def decoder_shapes(decoder: Path, rewrites: Rewrites) -> Counter[KernelShape]:
    """The decoder's MatMulNBits configurations and how many nodes have each, after the accuracy-level rewrite."""
    model = load_proto(str(decoder))
    set_accuracy_level(model, rewrites)
    initializers = {t.name: t for t in model.graph.initializer}
    shapes: Counter[KernelShape] = Counter()
    for node in all_nodes(model.graph):
        if node.op_type != "MatMulNBits":
            continue
        attrs = _attributes(node)
        scales = initializers.get(node.input[2])
        has_zero_points = len(node.input) > 3 and bool(node.input[3])
        shape = KernelShape(
            k=int(attrs["K"]),
            n=int(attrs["N"]),
            bits=int(attrs.get("bits", 4)),
            block_size=int(attrs["block_size"]),
            accuracy_level=int(attrs.get("accuracy_level", 0)),
            zero_points=has_zero_points,
            scale_type=scales.data_type if scales is not None else TensorProto.FLOAT,
        )
        shapes[shape] += 1
    head = _quantized_head(model, decoder.parent, rewrites)
    if head is not None:
        shapes[head] += 1
    return shapes


def _quantized_head(model: onnx.ModelProto, folder: Path, rewrites: Rewrites) -> KernelShape | None:
    """The MatMulNBits the engine makes of a float lm_head (`model.quantize_head`), if it makes one."""
    bits = head_bits(model, rewrites.head)
    head = find_head(model.graph) if bits else None
    weight = float_weight(model.graph, head, folder) if head is not None else None
    if bits is None or weight is None:
        return None
    rows, cols = weight.matrix.shape
    return KernelShape(rows, cols, bits, HEAD_BLOCK, rewrites.new_node_level or 0, False, TensorProto.FLOAT)


def repeated_node_graph(shape: KernelShape, copies: int, seed: int = 0) -> bytes:
    """A graph of `copies` independent MatMulNBits nodes of `shape` on one [1,1,K] input, random weights."""
    rng = np.random.default_rng(seed)
    scale_dtype = helper.tensor_dtype_to_np_dtype(shape.scale_type)
    block_bytes = shape.block_size * shape.bits // 8
    nodes, initializers, outputs = [], [], []
    for i in range(copies):
        weights = rng.integers(0, 256, (shape.n, shape.blocks, block_bytes), dtype=np.uint8)
        scales = (rng.random(shape.n * shape.blocks, dtype=np.float32) * 0.01).astype(scale_dtype)
        inputs = ["a", f"b{i}", f"s{i}"]
        initializers += [numpy_helper.from_array(weights, f"b{i}"), numpy_helper.from_array(scales, f"s{i}")]
        if shape.zero_points:
            middle = 1 << (shape.bits - 1)
            packed = middle | (middle << 4) if shape.bits == 4 else middle
            zero_points = np.full(shape.n * math.ceil(shape.blocks * shape.bits / 8), packed, dtype=np.uint8)
            initializers.append(numpy_helper.from_array(zero_points, f"z{i}"))
            inputs.append(f"z{i}")
        node = helper.make_node("MatMulNBits", inputs, [f"y{i}"], domain="com.microsoft")
        attributes = {"K": shape.k, "N": shape.n, "bits": shape.bits, "block_size": shape.block_size}
        attributes["accuracy_level"] = shape.accuracy_level
        node.attribute.extend(helper.make_attribute(key, value) for key, value in attributes.items())
        nodes.append(node)
        outputs.append(helper.make_tensor_value_info(f"y{i}", shape.scale_type, [1, 1, shape.n]))
    source = helper.make_tensor_value_info("a", shape.scale_type, [1, 1, shape.k])
    graph = helper.make_graph(nodes, "kernel_ceiling", [source], outputs, initializers)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    return bytes(helper.make_model(graph, opset_imports=opsets, ir_version=IR_VERSION).SerializeToString())


def time_per_node(shape: KernelShape, threads: int, shape_bytes: int = SHAPE_BYTES, repeats: int = 20) -> float:
    """Seconds one node of `shape` takes at M=1: the best of `repeats` runs over enough copies to leave the cache."""
    copies = max(1, math.ceil(shape_bytes / shape.stored_bytes))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(repeated_node_graph(shape, copies), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(1)
    feeds = {"a": rng.standard_normal((1, 1, shape.k)).astype(helper.tensor_dtype_to_np_dtype(shape.scale_type))}
    for _ in range(3):
        session.run(None, feeds)
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, feeds)
        best = min(best, time.perf_counter() - started)
    return best / copies


def measure(decoder: Path, rewrites: Rewrites, threads: int, shape_bytes: int = SHAPE_BYTES) -> dict[str, Any]:
    """Per shape: node count, bytes and GB/s; in all: MatMulNBits seconds and bytes per decode token."""
    rows = []
    for shape, count in sorted(decoder_shapes(decoder, rewrites).items(), key=lambda kv: -kv[0].stored_bytes * kv[1]):
        seconds = time_per_node(shape, threads, shape_bytes)
        rows.append({**asdict(shape), "count": count, "bytes": shape.stored_bytes, "seconds": seconds})
    total_s = sum(r["seconds"] * r["count"] for r in rows)
    total_bytes = sum(r["bytes"] * r["count"] for r in rows)
    return {
        "threads": threads,
        "shapes": rows,
        "seconds_per_token": total_s,
        "bytes_per_token": total_bytes,
        "bandwidth": total_bytes / total_s if total_s else 0.0,
        "tokens_per_s": 1 / total_s if total_s else 0.0,
    }


def describe(ceiling: dict[str, Any]) -> list[str]:
    """Printable lines: per shape and in all."""
    lines = []
    for row in ceiling["shapes"]:
        rate = row["bytes"] / row["seconds"] / 1e9
        lines.append(
            f"    K {row['k']:5d} N {row['n']:6d} block {row['block_size']:3d} level {row['accuracy_level']}"
            f"{' zp' if row['zero_points'] else ''} x{row['count']:3d}: {row['seconds'] * 1e6:8.1f} us/node"
            f"  {rate:5.1f} GB/s"
        )
    lines.append(
        f"  MatMulNBits alone at the model's shapes ({ceiling['threads']} thread(s)): "
        f"{ceiling['bandwidth'] / 1e9:.1f} GB/s, {ceiling['seconds_per_token'] * 1e3:.1f} ms per token of "
        f"{ceiling['bytes_per_token'] / 1e6:.1f} MB -> kernel ceiling {ceiling['tokens_per_s']:.2f} tok/s"
    )
    return lines


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--variant", default="q4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kernel-bytes", type=int, default=SHAPE_BYTES, help="stored bytes per measured shape")
    args = parser.parse_args()
    suffix = "" if args.variant == "fp32" else f"_{args.variant}"
    rewrites = EngineOptions.from_config(ModelConfig(path=args.model)).rewrites  # the daemon's default level
    decoder = args.model.expanduser() / "onnx" / f"decoder_model_merged{suffix}.onnx"
    print("\n".join(describe(measure(decoder, rewrites, args.threads, args.kernel_bytes))))


if __name__ == "__main__":
    main()
