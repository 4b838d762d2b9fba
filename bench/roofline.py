"""Decode roofline: memory read bandwidth of this machine and the weight bytes a decode token reads.

Bandwidth: the best of several reads of a buffer much larger than the caches (1 GiB), with 1 thread and with N
threads (each reading its own slice; numpy releases the GIL). Bytes per token: every initializer (and Constant)
of the decoder graph as stored (MatMulNBits weights + scales at 4 bits), grouped by the op that consumes it,
plus one row of each embedding table the embed graph gathers from (not the whole table). Kernel ceiling
(bench/kernel_ceiling.py): what onnxruntime's MatMulNBits kernel alone streams at the decoder's own shapes, block
sizes and the accuracy levels the daemon runs by default.
Run: .venv/bin/python bench/roofline.py MODEL_DIR [--variant q4] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import kernel_ceiling
import numpy as np
import onnx
from onnx import helper

from edge_agent.config.model import ModelConfig
from edge_agent.model.runtime.engine import EngineOptions

GIB = 1 << 30
CATEGORIES = ("MatMulNBits", "MatMul/Gemm", "Gather", "other")


def read_bandwidth(threads: int, size: int = GIB, repeats: int = 5) -> float:
    """Bytes per second of the best of `repeats` reads of a `size`-byte buffer, split over `threads` threads."""
    buffer = np.ones(size // 8, dtype=np.uint64)  # written once, so every page is resident
    parts = np.array_split(buffer, threads)
    best = float("inf")
    with ThreadPoolExecutor(threads) as pool:
        for _ in range(repeats):
            started = time.perf_counter()
            list(pool.map(np.bitwise_or.reduce, parts))
            best = min(best, time.perf_counter() - started)
    return buffer.nbytes / best


def tensor_bytes(tensor: onnx.TensorProto) -> int:
    """Stored size of a tensor (external data included, without loading it)."""
    for entry in tensor.external_data:
        if entry.key == "length":
            return int(entry.value)
    if tensor.raw_data:
        return len(tensor.raw_data)
    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


def _category(op_types: set[str]) -> str:
    if "MatMulNBits" in op_types:
        return "MatMulNBits"
    if op_types & {"MatMul", "Gemm"}:
        return "MatMul/Gemm"
    if "Gather" in op_types:
        return "Gather"
    return "other"


def _stored_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node values of a graph, by the name its consumers use."""
    tensors = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    tensors[node.output[0]] = attribute.t
    return tensors


def graph_bytes(path: Path) -> dict[str, int]:
    """Bytes of stored tensors in a graph, by the kind of op that reads them."""
    graph = onnx.load(str(path), load_external_data=False).graph
    consumers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, set()).add(node.op_type)
    totals = dict.fromkeys(CATEGORIES, 0)
    for name, tensor in _stored_tensors(graph).items():
        totals[_category(consumers.get(name, set()))] += tensor_bytes(tensor)
    return totals


def embedding_row_bytes(path: Path) -> int:
    """Bytes one token reads from the embed graph: one row of each table a Gather reads (axis 0)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    tensors = _stored_tensors(graph)
    total = 0
    for node in graph.node:
        table = tensors.get(node.input[0]) if node.op_type == "Gather" else None
        if table is not None and len(table.dims) >= 2:
            total += tensor_bytes(table) // int(table.dims[0])
    return total


def weight_bytes(model: Path, variant: str) -> dict[str, Any]:
    """Weight bytes read per decode token: the decoder's stored tensors by op, plus the embedding rows."""
    suffix = "" if variant == "fp32" else f"_{variant}"
    decoder = graph_bytes(model / "onnx" / f"decoder_model_merged{suffix}.onnx")
    rows = embedding_row_bytes(model / "onnx" / f"embed_tokens{suffix}.onnx")
    return {"decoder": decoder, "embedding_rows": rows, "total": sum(decoder.values()) + rows}


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--variant", default="q4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-kernel-ceiling", action="store_true", help="skip timing MatMulNBits alone")
    args = parser.parse_args()
    args.model = args.model.expanduser()
    weights = weight_bytes(args.model, args.variant)
    for name, size in [*weights["decoder"].items(), ("embedding rows", weights["embedding_rows"])]:
        print(f"  {name:15s} {size / 1e6:10.1f} MB")
    print(f"  {'per token':15s} {weights['total'] / 1e6:10.1f} MB")
    bandwidth = 0.0
    for threads in sorted({1, args.threads}):
        bandwidth = read_bandwidth(threads)
        print(f"  read bandwidth, {threads} thread(s): {bandwidth / 1e9:.1f} GB/s", end="")
        print(f" -> decode bound {bandwidth / weights['total']:.1f} tok/s")
    if not args.no_kernel_ceiling:
        suffix = "" if args.variant == "fp32" else f"_{args.variant}"
        decoder = args.model / "onnx" / f"decoder_model_merged{suffix}.onnx"
        rewrites = EngineOptions.from_config(ModelConfig(path=args.model)).rewrites  # the daemon's default levels
        ceiling = kernel_ceiling.measure(decoder, rewrites, args.threads)
        print("\n".join(kernel_ceiling.describe(ceiling)))
        print(f"  MatMulNBits alone reads at {ceiling['bandwidth'] / bandwidth:.1%} of the read bandwidth")


if __name__ == "__main__":
    main()
