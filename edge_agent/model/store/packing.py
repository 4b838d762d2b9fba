"""Memory onnxruntime keeps beyond a decoder's files for its MatMulNBits (INT4/INT8) weights, on this platform.

Read from onnxruntime's sources (contrib_ops/cpu/quantization/matmul_nbits.cc `PrePack`, MLAS
`sqnbitgemm_kernel_avx_common.h` and `qnbitgemm_kernel_neon.cpp` `QNBitGemmPackQuantBDataSize`, 1.2x-1.3x) and
measured on x86-64 with onnxruntime 1.32 (bench/memory.py):
- x86-64 at accuracy level 4 (int8 activations): the packed buffer holds the weights (as many bytes as the file),
  a float32 copy of the scales and a float32 block sum per block of every column (columns rounded up to 16); the
  file's scales (and zero points) stay alive as initializers, because `PrePack` reports them not packed. Extra:
  scales as float32 + block sums, 0.4x the file's MatMulNBits bytes at block 32 (0.1x at block 128).
- x86-64 at levels 0-3 (float32 compute): the weights are repacked into a buffer of their own size and the file's
  copy released; the scales are read from the file. No extra.
- ARM64 at level 4: with KleidiAI the weights are packed with bfloat16 scales and the file's scales released
  (about 10 % below the file at block 32); without it the weights are repacked at their own size. No extra is
  counted. Measured with onnxruntime 1.32 aarch64 under qemu-user with a Cortex-A76's features (a Pi 5's;
  bench/repack_memory.py): anonymous memory 1.10-1.15x the INT4 bytes at level 4 against 1.02-1.07x at level 0,
  below the file's INT4 + float32 scales (1.25x); on x86-64 the same script gives 1.50x against 1.00x.
"""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import AttributeProto, GraphProto, NodeProto, helper

from edge_agent.model.store.manifest import ModelFilesError

INT8_ACTIVATIONS = 4  # the accuracy level whose kernels repack with extra tables
_X86 = frozenset({"x86_64", "amd64", "i386", "i686", "x86"})
_BLOCK_SUM_COLUMNS = 16  # MLAS stores block sums for columns in groups of 16
_ALIGNMENT_SLACK = 128  # the packed data and the block sums each start on an aligned address


@dataclass(frozen=True)
class RepackBytes:
    """Bytes onnxruntime keeps beyond the files when MatMulNBits nodes run at accuracy level 4 here."""

    every_node: int  # if every MatMulNBits node runs at level 4
    stored_level4: int  # for the nodes whose file already sets level 4


def is_x86(machine: str | None = None) -> bool:
    """Whether `machine` (default: this one, platform.machine()) is an x86 CPU."""
    return (machine if machine is not None else platform.machine()).lower() in _X86


def level4_extra_bytes(n: int, k: int, block_size: int, machine: str | None = None) -> int:
    """Bytes one MatMulNBits node of N columns and K rows keeps beyond its file tensors at level 4 on `machine`."""
    if not is_x86(machine) or block_size <= 0:
        return 0
    blocks = math.ceil(k / block_size)
    scales = n * blocks * 4
    block_sums = math.ceil(n / _BLOCK_SUM_COLUMNS) * _BLOCK_SUM_COLUMNS * blocks * 4
    return scales + block_sums + _ALIGNMENT_SLACK


def _nodes(graph: GraphProto) -> list[NodeProto]:
    found = []
    for node in graph.node:
        found.append(node)
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                found += _nodes(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for sub in attribute.graphs:
                    found += _nodes(sub)
    return found


def _int_attribute(node: NodeProto, name: str) -> int | None:
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return value if isinstance(value, int) else None
    return None


def repack_bytes(decoder: Path, machine: str | None = None) -> RepackBytes:
    """What the decoder graph's MatMulNBits nodes keep beyond the files at level 4 on `machine` (weights not read)."""
    try:
        graph = onnx.load(str(decoder), load_external_data=False).graph
    except Exception as exc:  # protobuf's DecodeError, OSError: not an ONNX graph
        raise ModelFilesError(f"{decoder}: not a readable ONNX graph ({exc})") from None
    every, stored = 0, 0
    for node in _nodes(graph):
        if node.op_type != "MatMulNBits":
            continue
        n, k, block = (_int_attribute(node, key) for key in ("N", "K", "block_size"))
        if n is None or k is None or block is None:
            raise ModelFilesError(f"{decoder}: MatMulNBits node {node.name!r} lacks N, K or block_size")
        extra = level4_extra_bytes(n, k, block, machine)
        every += extra
        if _int_attribute(node, "accuracy_level") == INT8_ACTIVATIONS:
            stored += extra
    return RepackBytes(every, stored)
