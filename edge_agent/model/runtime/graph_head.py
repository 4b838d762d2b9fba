"""Quantize a float lm_head (the largest weight read per token at a 262k vocabulary) to one MatMulNBits node."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnx import GraphProto, ModelProto, NodeProto, TensorProto, helper, numpy_helper

from edge_agent.model.runtime.graph_rewrite import Head, HeadQuantization, all_nodes, find_head
from edge_agent.model.store.manifest import ModelFilesError

log = logging.getLogger(__name__)

BLOCK_SIZE = 32
PLACEHOLDER = "edge-agent-quantized-head.bin"  # location of tensors the session receives as external initializers
_COLUMNS_PER_CHUNK = 8192


@dataclass(frozen=True)
class FloatWeight:
    """The head's weight as a [K, N] array (possibly a view) and the graph items that only it needed."""

    matrix: np.ndarray
    initializer: str
    transpose: NodeProto | None


def head_bits(model: ModelProto, choice: HeadQuantization) -> int | None:
    """The bits to quantize a float head to: 'auto' is 8 in a decoder whose other weights are INT4, else none."""
    if choice == "auto":
        return 8 if any(node.op_type == "MatMulNBits" for node in all_nodes(model.graph)) else None
    return {"int8": 8, "int4": 4}.get(choice)


def read_tensor(tensor: TensorProto, folder: Path) -> np.ndarray:
    """An initializer's values, memory-mapped from its external data file under `folder` when it has one."""
    if tensor.data_location != TensorProto.EXTERNAL:
        return numpy_helper.to_array(tensor)
    info = {entry.key: entry.value for entry in tensor.external_data}
    path = (folder / info["location"]).resolve()
    if folder.resolve() not in path.parents:
        raise ModelFilesError(f"{path}: external data of {tensor.name!r} lies outside {folder}")
    dtype = helper.tensor_dtype_to_np_dtype(tensor.data_type)
    shape = tuple(int(d) for d in tensor.dims)
    offset = int(info.get("offset", 0))
    needed = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if not path.is_file() or path.stat().st_size < offset + needed:
        raise ModelFilesError(f"{path}: too short for initializer {tensor.name!r} ({needed} bytes at {offset})")
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


def float_weight(graph: GraphProto, head: Head, folder: Path) -> FloatWeight | None:
    """The float [K, N] weight of a MatMul head: an initializer, or a Transpose of one (a tied embedding)."""
    if head.node.op_type != "MatMul":
        return None
    initializers = {t.name: t for t in graph.initializer}
    name = head.node.input[1]
    transpose = None
    if name not in initializers:
        transpose = next((n for n in graph.node if n.op_type == "Transpose" and name in n.output), None)
        perm = [list(a.ints) for a in transpose.attribute if a.name == "perm"] if transpose else []
        if transpose is None or transpose.input[0] not in initializers or perm not in ([], [[1, 0]]):
            return None
        name = transpose.input[0]
    tensor = initializers[name]
    if len(tensor.dims) != 2 or tensor.data_type not in (TensorProto.FLOAT, TensorProto.FLOAT16):
        return None
    matrix = read_tensor(tensor, folder)
    return FloatWeight(matrix.T if transpose is not None else matrix, name, transpose)


def quantize_columns(matrix: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric block-32 quantization of a [K, N] matrix: MatMulNBits' packed B [N, blocks, blob] and scales.

    As onnxruntime's own symmetric quantizer: per block of K the signed value of largest magnitude maps to
    -2^(bits-1), the zero point is the default 2^(bits-1), nibbles low first (it agrees with onnxruntime's
    to the last bit but for a few ties in a million values, which round the other way)."""
    rows, cols = matrix.shape
    blocks = (rows + BLOCK_SIZE - 1) // BLOCK_SIZE
    half = np.float32(1 << (bits - 1))
    packed = np.zeros((cols, blocks, BLOCK_SIZE * bits // 8), dtype=np.uint8)
    scales = np.zeros((cols, blocks), dtype=matrix.dtype)
    for start in range(0, cols, _COLUMNS_PER_CHUNK):
        stop = min(cols, start + _COLUMNS_PER_CHUNK)
        chunk = np.zeros((blocks * BLOCK_SIZE, stop - start), dtype=np.float32)
        chunk[:rows] = matrix[:, start:stop]
        values = chunk.T.reshape(stop - start, blocks, BLOCK_SIZE)
        peak = np.take_along_axis(values, np.abs(values).argmax(axis=2)[..., None], axis=2)[..., 0]
        scale = (peak / -half).astype(np.float32)
        divisor = np.where(scale != 0, scale, np.float32(1))[..., None]
        levels = np.clip(np.rint(values / divisor) + half, 0, 2 * half - 1).astype(np.uint8)
        packed[start:stop] = levels[..., 0::2] | (levels[..., 1::2] << 4) if bits == 4 else levels
        scales[start:stop] = scale
    return packed, scales


def _placeholder(name: str, array: np.ndarray) -> TensorProto:
    tensor = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(array.dtype), dims=array.shape)
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", PLACEHOLDER), ("offset", "0"), ("length", str(array.nbytes))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return tensor


def _drop_unused(graph: GraphProto, weight: FloatWeight) -> None:
    used = {name for node in graph.node for name in node.input}
    if weight.transpose is not None and weight.transpose.output[0] not in used:
        graph.node.remove(weight.transpose)
        used = {name for node in graph.node for name in node.input}
    if weight.initializer not in used:
        graph.initializer.remove(next(t for t in graph.initializer if t.name == weight.initializer))


def quantize_head(model: ModelProto, folder: Path, bits: int, level: int | None) -> dict[str, np.ndarray]:
    """Replace a float lm_head MatMul by MatMulNBits; returns the new tensors (the graph holds placeholders)."""
    graph = model.graph
    head = find_head(graph)
    weight = float_weight(graph, head, folder) if head is not None else None
    if head is None or weight is None:
        log.debug("decoder: lm_head is not a float MatMul; nothing to quantize")
        return {}
    rows, cols = weight.matrix.shape
    packed, scales = quantize_columns(weight.matrix, bits)
    base = f"edge_agent/lm_head_q{bits}"
    tensors = {f"{base}/B": packed, f"{base}/scales": scales}
    attributes = {"K": rows, "N": cols, "bits": bits, "block_size": BLOCK_SIZE}
    if level is not None:
        attributes["accuracy_level"] = level
    node = helper.make_node("MatMulNBits", [head.node.input[0], *tensors], list(head.node.output), name=base)
    node.domain = "com.microsoft"
    node.attribute.extend(helper.make_attribute(key, value) for key, value in attributes.items())
    graph.node.remove(head.node)
    graph.node.insert(head.index, node)
    graph.initializer.extend(_placeholder(name, array) for name, array in tensors.items())
    _drop_unused(graph, weight)
    if not any(op.domain == "com.microsoft" for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    log.debug("decoder: lm_head [%d x %d] quantized to INT%d (block %d)", rows, cols, bits, BLOCK_SIZE)
    return tensors
