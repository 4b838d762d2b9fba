"""Load-time fusions of the exported decoder's elementwise chains into onnxruntime's fused CPU kernels: each
RMSNorm (Pow, ReduceMean, Add, Pow -0.5, Mul, Mul weight) into SimplifiedLayerNormalization, and each tanh GELU
(eight Mul/Add nodes around a Tanh) into FastGelu. Decode runs ~2,000 tiny nodes per token; each costs a launch."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from onnx import GraphProto, ModelProto, NodeProto, helper, numpy_helper

from edge_agent.model.runtime.graph_attention import remove_unused

_MS = "com.microsoft"
_PREFIX = "edge_agent/fused"
_GELU_INNER = math.sqrt(2 / math.pi)  # 0.7978845608...


class _Graph:
    """Producers, consumers and small constant values."""

    def __init__(self, graph: GraphProto) -> None:
        self.graph = graph
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.initializers = {init.name: init for init in graph.initializer}
        self.outputs = {out.name for out in graph.output}

    def scalar(self, name: str) -> float | None:
        """The value of a one-element constant (Constant node or initializer), else None."""
        node = self.producer.get(name)
        tensor = None
        if node is not None and node.op_type == "Constant":
            tensor = next((a.t for a in node.attribute if a.name == "value"), None)
        elif name in self.initializers and not self.initializers[name].external_data:
            tensor = self.initializers[name]
        if tensor is None:
            return None
        value = numpy_helper.to_array(tensor)
        return float(value.reshape(-1)[0]) if value.size == 1 else None

    def sole_user(self, name: str, op_type: str) -> NodeProto | None:
        """The only node reading `name`, if it is an `op_type` (and `name` is no graph output)."""
        users = self.consumers.get(name, [])
        if len(users) != 1 or users[0].op_type != op_type or name in self.outputs:
            return None
        return users[0]

    def other_input(self, node: NodeProto, known: str) -> str | None:
        """The input of a two-input node that is not `known`."""
        if len(node.input) != 2 or known not in node.input:
            return None
        return str(node.input[1] if node.input[0] == known else node.input[0])

    def weight(self, name: str) -> bool:
        """Whether `name` is a 1-D initializer (a norm's scale)."""
        init = self.initializers.get(name)
        return init is not None and len(init.dims) == 1


def _close(value: float | None, expected: float, tolerance: float = 1e-5) -> bool:
    return value is not None and abs(value - expected) <= tolerance * max(1.0, abs(expected))


def _rms_norm(g: _Graph, reduce: NodeProto) -> tuple[list[NodeProto], list[NodeProto]] | None:
    """The nodes of one RMSNorm around `reduce` and the fused nodes that replace them, or None."""
    square = g.producer.get(reduce.input[0])
    if square is None or square.op_type != "Pow" or not _close(g.scalar(square.input[1]), 2.0):
        return None
    keepdims = next((a.i for a in reduce.attribute if a.name == "keepdims"), 1)
    axes = g.scalar(reduce.input[1]) if len(reduce.input) > 1 else None
    if keepdims != 1 or axes != -1 or g.sole_user(square.output[0], "ReduceMean") is None:
        return None
    x = square.input[0]
    add = g.sole_user(reduce.output[0], "Add")
    eps = g.scalar(g.other_input(add, reduce.output[0]) or "") if add is not None else None
    rsqrt = g.sole_user(add.output[0], "Pow") if add is not None else None
    if eps is None or rsqrt is None or not _close(g.scalar(rsqrt.input[1]), -0.5):
        return None
    scale = g.sole_user(rsqrt.output[0], "Mul")
    if scale is None or g.other_input(scale, rsqrt.output[0]) != x:
        return None
    old = [square, reduce, add, rsqrt, scale]
    weighted = g.sole_user(scale.output[0], "Mul")
    weight = g.other_input(weighted, scale.output[0]) if weighted is not None else None
    name = f"{_PREFIX}/norm{reduce.output[0]}"
    if weighted is not None and weight is not None and g.weight(weight):
        old.append(weighted)
        new = [_norm(name, x, weight, weighted.output[0], eps)]
    else:  # no weight: a scale of ones as long as the last axis
        new = [
            helper.make_node("Shape", [x], [name + "/width"], name=name + "/width", start=-1),
            helper.make_node(
                "ConstantOfShape",
                [name + "/width"],
                [name + "/ones"],
                name=name + "/ones",
                value=numpy_helper.from_array(np.ones(1, np.float32)),
            ),
            _norm(name, x, name + "/ones", scale.output[0], eps),
        ]
    return old, new


def _norm(name: str, x: str, scale: str, output: str, eps: float) -> NodeProto:
    return helper.make_node(
        "SimplifiedLayerNormalization", [x, scale], [output], name=name, axis=-1, epsilon=eps, stash_type=1
    )


def _tanh_gelu(g: _Graph, tanh: NodeProto) -> tuple[list[NodeProto], list[NodeProto]] | None:
    """The nodes of one tanh-approximated GELU around `tanh` and the FastGelu that replaces them, or None."""
    inner = g.producer.get(tanh.input[0])
    if inner is None or inner.op_type != "Mul":
        return None
    coefficient = next((i for i in inner.input if _close(g.scalar(i), _GELU_INNER)), None)
    total = g.producer.get(g.other_input(inner, coefficient) or "") if coefficient else None
    if total is None or total.op_type != "Add":
        return None
    for x in total.input:  # total = x + 0.044715 * x^3
        cubic = g.producer.get(g.other_input(total, x) or "")
        chain = _cubic_chain(g, cubic, x) if cubic is not None else None
        if chain is not None:
            tail = _gelu_tail(g, tanh, x)
            if tail is not None:
                old = [*chain, total, inner, tanh, *tail]
                name = f"{_PREFIX}/gelu{tanh.output[0]}"
                return old, [helper.make_node("FastGelu", [x], [tail[-1].output[0]], name=name, domain=_MS)]
    return None


def _cubic_chain(g: _Graph, node: NodeProto, x: str) -> list[NodeProto] | None:
    """[x*x, (x*x)*x, 0.044715*x^3] ending at `node`, in any operand order."""
    if node.op_type != "Mul":
        return None
    constant = next((i for i in node.input if _close(g.scalar(i), 0.044715)), None)
    cube = g.producer.get(g.other_input(node, constant) or "") if constant else None
    if cube is None or cube.op_type != "Mul" or x not in cube.input:
        return None
    square = g.producer.get(g.other_input(cube, x) or "")
    if square is None or square.op_type != "Mul" or list(square.input) != [x, x]:
        return None
    return [square, cube, node]


def _gelu_tail(g: _Graph, tanh: NodeProto, x: str) -> list[NodeProto] | None:
    """Add(tanh, 1), then Mul by x and by 0.5 (either order)."""
    plus = g.sole_user(tanh.output[0], "Add")
    if plus is None or not _close(g.scalar(g.other_input(plus, tanh.output[0]) or ""), 1.0):
        return None
    first = g.sole_user(plus.output[0], "Mul")
    second = g.sole_user(first.output[0], "Mul") if first is not None else None
    if first is None or second is None:
        return None
    factors = {g.other_input(first, plus.output[0]), g.other_input(second, first.output[0])}
    half = next((f for f in factors if f is not None and _close(g.scalar(f), 0.5)), None)
    return [plus, first, second] if half is not None and factors == {x, half} else None


def _replace_all(model: ModelProto, matches: list[tuple[list[NodeProto], list[NodeProto]]]) -> None:
    graph = model.graph
    doomed = {id(node) for old, _ in matches for node in old}
    anchors = {id(old[-1]): new for old, new in matches}  # fused nodes go where the chain's output was made
    nodes = []
    for node in graph.node:
        if id(node) in anchors:
            nodes.extend(anchors[id(node)])
        if id(node) not in doomed:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    if any(node.domain == _MS for _, new in matches for node in new) and not any(
        opset.domain == _MS for opset in model.opset_import
    ):
        model.opset_import.append(helper.make_opsetid(_MS, 1))


def fuse_elementwise(model: ModelProto) -> tuple[int, int]:
    """Fuse every RMSNorm and tanh GELU chain; returns how many of each."""
    g = _Graph(model.graph)
    norms = [m for node in model.graph.node if node.op_type == "ReduceMean" and (m := _rms_norm(g, node))]
    gelus = [m for node in model.graph.node if node.op_type == "Tanh" and (m := _tanh_gelu(g, node))]
    if norms or gelus:
        _replace_all(model, norms + gelus)
        remove_unused(model.graph)
    return len(norms), len(gelus)
