"""Load-time rewrites of a decoder graph proto: INT4 kernel accuracy level, last-position logits, head finding."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, helper

from edge_agent.config.model import ModelConfig

log = logging.getLogger(__name__)

HeadQuantization = Literal["keep", "auto", "int8", "int4"]
LOGITS_TO_KEEP = "num_logits_to_keep"
INT8_ACTIVATIONS = 4  # MatMulNBits accuracy_level: int8 activations (the level onnxruntime's model builder uses on CPU)
_PASS_THROUGH = frozenset({"Mul", "Div", "Tanh", "Cast", "Add", "Sub"})  # the softcapping chain after lm_head
_HEAD_OPS = frozenset({"MatMul", "MatMulNBits"})
_PREFIX = "edge_agent/logits_to_keep"


@dataclass(frozen=True)
class Rewrites:
    """Which load-time rewrites to apply to the decoder graph."""

    int8_activations: bool = False  # MatMulNBits without an accuracy_level get level 4
    accuracy_level: int | None = None  # set this level on every MatMulNBits, whatever the file says
    logits_to_keep: bool = True  # add `num_logits_to_keep` (lm_head on the last positions only) when missing
    head: HeadQuantization = "keep"  # a float lm_head to INT8/INT4 MatMulNBits ("auto": INT8 in an INT4 decoder)
    grouped_attention: bool = True  # attention reads the KV cache itself, not a per-head copy; masks follow keys
    fused_ops: bool = True  # RMSNorm and tanh-GELU chains run as onnxruntime's fused kernels
    kv_float16: bool = False  # the KV cache is kept in float16 between steps (needs grouped_attention's split)

    @property
    def new_node_level(self) -> int | None:
        """The accuracy level for a MatMulNBits node a rewrite adds (None: unset)."""
        if self.accuracy_level is not None:
            return self.accuracy_level
        return INT8_ACTIVATIONS if self.int8_activations else None

    @classmethod
    def from_config(cls, model: ModelConfig) -> Rewrites:
        """The rewrites a node's `model` section asks for."""
        return cls(
            int8_activations=model.int8_activations,
            accuracy_level=model.accuracy_level,
            head=model.quantize_head,
            kv_float16=model.kv_cache == "float16",
        )

    def kernels_only(self) -> Rewrites:
        """Only the INT4 kernels' accuracy level, for encoder graphs (int8 activations made the 5 s audio encoder
        2.8x and the vision encoder 1.1x faster at E2B shape): no rewrite that is about the decoder."""
        return Rewrites(
            self.int8_activations, self.accuracy_level, logits_to_keep=False, grouped_attention=False, fused_ops=False
        )

    def as_dict(self) -> dict[str, object]:
        """The options as plain JSON values (for cache keys)."""
        return asdict(self)


@dataclass(frozen=True)
class Head:
    """The lm_head node and its position in graph.node."""

    node: NodeProto
    index: int


def all_nodes(graph: GraphProto) -> Iterator[NodeProto]:
    """Every node of `graph` and of its subgraphs (If/Loop bodies)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == AttributeProto.GRAPH:
                yield from all_nodes(attr.g)
            elif attr.type == AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from all_nodes(sub)


def _attribute(node: NodeProto, name: str) -> AttributeProto | None:
    return next((a for a in node.attribute if a.name == name), None)


def set_accuracy_level(model: ModelProto, rewrites: Rewrites) -> int:
    """Set `accuracy_level` on MatMulNBits nodes as `rewrites` asks; returns how many nodes changed."""
    if rewrites.accuracy_level is None and not rewrites.int8_activations:
        return 0
    changed = 0
    for node in all_nodes(model.graph):
        if node.op_type != "MatMulNBits":
            continue
        attr = _attribute(node, "accuracy_level")
        if rewrites.accuracy_level is not None:
            level = rewrites.accuracy_level
        elif attr is None:  # unset means 0 (fp32 compute); a level the file sets is kept
            level = INT8_ACTIVATIONS
        else:
            continue
        if attr is None:
            node.attribute.append(helper.make_attribute("accuracy_level", level))
            changed += 1
        elif attr.i != level:
            attr.i = level
            changed += 1
    return changed


def _producers(graph: GraphProto) -> dict[str, tuple[int, NodeProto]]:
    return {out: (i, node) for i, node in enumerate(graph.node) for out in node.output}


def _constants(graph: GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer}
    names.update(out for node in graph.node if node.op_type == "Constant" for out in node.output)
    return names


def find_head(graph: GraphProto, output: str = "logits") -> Head | None:
    """The MatMul/MatMulNBits whose result becomes `output` through elementwise ops (softcapping), or None."""
    producers = _producers(graph)
    constants = _constants(graph)
    name = output
    for _ in range(16):
        if name not in producers:
            return None
        index, node = producers[name]
        if node.op_type in _HEAD_OPS:
            return Head(node, index)
        if node.op_type not in _PASS_THROUGH:
            return None
        variable = [i for i in node.input if i and i not in constants]
        if len(variable) != 1:
            return None
        name = variable[0]
    return None


def _int64(name: str, values: list[int]) -> TensorProto:
    return helper.make_tensor(name, TensorProto.INT64, [len(values)], values)


def add_logits_to_keep(model: ModelProto) -> bool:
    """Add the scalar int64 input `num_logits_to_keep`: lm_head sees only the last that many positions (0: all)."""
    graph = model.graph
    if any(i.name == LOGITS_TO_KEEP for i in graph.input):
        return False
    head = find_head(graph)
    if head is None:
        log.warning("decoder: no lm_head found before 'logits'; prefill computes logits at every position")
        return False
    graph.input.append(helper.make_tensor_value_info(LOGITS_TO_KEEP, TensorProto.INT64, []))
    graph.initializer.extend(
        [
            _int64(f"{_PREFIX}/one", [1]),
            _int64(f"{_PREFIX}/end", [np.iinfo(np.int64).max]),
            _int64(f"{_PREFIX}/axis", [1]),
        ]
    )
    hidden = head.node.input[0]
    nodes = [
        helper.make_node("Neg", [LOGITS_TO_KEEP], [f"{_PREFIX}/neg"], name=f"{_PREFIX}/Neg"),
        helper.make_node(
            "Reshape", [f"{_PREFIX}/neg", f"{_PREFIX}/one"], [f"{_PREFIX}/start"], name=f"{_PREFIX}/Reshape"
        ),
        helper.make_node(
            "Slice",
            [hidden, f"{_PREFIX}/start", f"{_PREFIX}/end", f"{_PREFIX}/axis"],
            [f"{_PREFIX}/hidden"],
            name=f"{_PREFIX}/Slice",
        ),
    ]
    head.node.input[0] = f"{_PREFIX}/hidden"
    for offset, node in enumerate(nodes):
        graph.node.insert(head.index + offset, node)
    for out in graph.output:
        dims = out.type.tensor_type.shape.dim
        if out.name == "logits" and len(dims) == 3:
            dims[1].Clear()
            dims[1].dim_param = "num_logits"
    return True


def _tensor_bytes(tensor: TensorProto) -> int:
    count = int(np.prod(tensor.dims, dtype=np.int64)) if tensor.dims else 1
    return count * helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize


def bytes_per_token(graph: GraphProto) -> dict[str, int]:
    """Weight bytes one decode step reads, by consumer: MatMulNBits, float MatMul/Gemm, other (a Gather: one row)."""
    sizes = {t.name: (_tensor_bytes(t), list(t.dims)) for t in graph.initializer}
    transposed = {n.output[0]: n.input[0] for n in graph.node if n.op_type == "Transpose" and n.input[0] in sizes}
    totals = {"MatMulNBits": 0, "float MatMul": 0, "other": 0}
    seen: set[str] = set()
    for node in all_nodes(graph):
        if node.op_type == "Transpose":
            continue  # counted where its output is read
        for position, name in enumerate(node.input):
            source = transposed.get(name, name)
            if source not in sizes or source in seen:
                continue
            seen.add(source)
            size, dims = sizes[source]
            if node.op_type == "MatMulNBits":
                totals["MatMulNBits"] += size
            elif node.op_type in ("MatMul", "Gemm") and position == 1:
                totals["float MatMul"] += size
            elif node.op_type == "Gather" and position == 0 and dims:
                totals["other"] += size // max(dims[0], 1)
            else:
                totals["other"] += size
    return totals


def describe_bytes(totals: dict[str, int]) -> str:
    """One log line of `bytes_per_token` figures."""
    parts = ", ".join(f"{kind} {size / 2**20:.1f} MiB" for kind, size in totals.items())
    return f"weights read per decoded token: {parts}"


def load_proto(path: str) -> ModelProto:
    """The graph proto of `path` without its external weights."""
    return onnx.load(path, load_external_data=False)
