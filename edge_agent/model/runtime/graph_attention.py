"""Load-time rewrites of eager attention: query heads grouped onto their KV head (no repeat_kv copy of the cache)
and each layer's mask cut to the keys it is given (so sliding layers can be fed only their window)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from onnx import GraphProto, ModelProto, NodeProto, helper, numpy_helper

KEYS_DEFINE_MASK = "edge_agent.keys_define_mask"  # metadata: each layer's mask follows the length of its keys
WHOLE_CACHES = "edge_agent.whole_caches"  # metadata: past inputs the graph reads more than keys from (kept whole)
_PREFIX = "edge_agent/attention"
_SCALING = frozenset({"Mul", "Div", "Tanh"})  # between the scores and the mask: scale and softcapping


@dataclass(frozen=True)
class RepeatedKV:
    """`Reshape(Expand(Unsqueeze(source, axis 2)))`: a [B, KVH, T, D] cache repeated to [B, H, T, D]."""

    source: str
    output: str


class _Index:
    """Producers, consumers and constant values of one graph."""

    def __init__(self, graph: GraphProto) -> None:
        self.producer = {out: node for node in graph.node for out in node.output}
        self.consumers: dict[str, list[NodeProto]] = defaultdict(list)
        for node in graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.initializers = {init.name: init for init in graph.initializer}

    def constant(self, name: str) -> np.ndarray | None:
        """The value of a Constant node's output or an initializer, else None."""
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None or node.op_type != "Constant":
            return None
        value = next((a for a in node.attribute if a.name == "value"), None)
        return numpy_helper.to_array(value.t) if value is not None else None

    def made_by(self, name: str, op_type: str) -> NodeProto | None:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None


def _repeated_kv(index: _Index, name: str) -> RepeatedKV | None:
    """The repeat_kv chain that produces `name`, if it is one."""
    reshape = index.made_by(name, "Reshape")
    expand = index.made_by(reshape.input[0], "Expand") if reshape is not None else None
    unsqueeze = index.made_by(expand.input[0], "Unsqueeze") if expand is not None else None
    if unsqueeze is None or len(unsqueeze.input) < 2:
        return None
    axes = index.constant(unsqueeze.input[1])
    if axes is None or axes.reshape(-1).tolist() != [2]:
        return None
    return RepeatedKV(unsqueeze.input[0], name)


def _key_transposed(index: _Index, name: str) -> RepeatedKV | None:
    """`Transpose(perm 0,1,3,2)` of a repeat_kv chain: the keys of a score MatMul."""
    transpose = index.made_by(name, "Transpose")
    if transpose is None:
        return None
    perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
    return _repeated_kv(index, transpose.input[0]) if perm == [0, 1, 3, 2] else None


def _ints(name: str, values: list[int]) -> NodeProto:
    value = numpy_helper.from_array(np.array(values, np.int64))
    return helper.make_node("Constant", [], [name], name=name, value=value)


def _grouped_matmul(prefix: str, left: str, source: str, output: str, transpose: bool) -> list[NodeProto]:
    """`left` [B, H, S, X] viewed as [B, KVH, G*S, X], times the KV `source` (transposed for scores), viewed back."""
    n = f"{prefix}/"
    nodes = [
        _ints(n + "zero", [0]),
        _ints(n + "rest", [-1]),
        helper.make_node("Shape", [source], [n + "kv_heads"], name=n + "kv_heads", start=1, end=2),
        helper.make_node("Concat", [n + "zero", n + "kv_heads", n + "rest", n + "zero"], [n + "grouped"], axis=0),
        helper.make_node("Reshape", [left, n + "grouped"], [n + "left"], name=n + "left"),
    ]
    if transpose:
        nodes.append(helper.make_node("Transpose", [source], [n + "keys"], name=n + "keys", perm=[0, 1, 3, 2]))
    nodes += [
        helper.make_node("MatMul", [n + "left", n + "keys" if transpose else source], [n + "product"], name=n + "mm"),
        helper.make_node("Shape", [left], [n + "heads"], name=n + "heads", start=0, end=3),
        helper.make_node("Concat", [n + "heads", n + "rest"], [n + "ungrouped"], name=n + "ungrouped", axis=0),
        helper.make_node("Reshape", [n + "product", n + "ungrouped"], [output], name=n + "out"),
    ]
    return nodes


def _insert_before(graph: GraphProto, anchor: NodeProto, new: list[NodeProto]) -> None:
    position = list(graph.node).index(anchor)
    for offset, node in enumerate(new):
        graph.node.insert(position + offset, node)


def _replace(graph: GraphProto, old: NodeProto, new: list[NodeProto]) -> None:
    _insert_before(graph, old, new)
    graph.node.remove(old)


def group_query_heads(model: ModelProto) -> int:
    """Rewrite every attention MatMul that reads a repeat_kv copy to read the cache itself; returns how many."""
    graph, done = model.graph, 0
    index = _Index(graph)
    for node in list(graph.node):
        if node.op_type != "MatMul":
            continue
        keys = _key_transposed(index, node.input[1])
        values = None if keys is not None else _repeated_kv(index, node.input[1])
        chain = keys or values
        if chain is None:
            continue
        prefix = f"{_PREFIX}/grouped{done}"
        _replace(graph, node, _grouped_matmul(prefix, node.input[0], chain.source, node.output[0], keys is not None))
        done += 1
    if done:
        remove_unused(graph)
    return done


def _mask_add(index: _Index, scores: str) -> tuple[NodeProto, int] | None:
    """The Add that puts the mask on `scores` (through scaling and softcapping), and the mask's input slot."""
    name, seen = scores, {scores}
    while True:
        users = index.consumers.get(name, [])
        if len(users) != 1:
            return None
        node = users[0]
        if node.op_type == "Add":
            slot = 1 if node.input[0] in seen else 0
            return node, slot
        if node.op_type not in _SCALING:
            return None
        name = node.output[0]
        seen.add(name)


def _score_keys(index: _Index, node: NodeProto) -> str | None:
    """The [B, KVH, T, D] keys a score MatMul reads (grouped or repeated), else None."""
    chain = _key_transposed(index, node.input[1])
    if chain is not None:
        return chain.source
    transpose = index.made_by(node.input[1], "Transpose")
    if transpose is not None and transpose.name.startswith(_PREFIX):
        return str(transpose.input[0])
    return None


def _score_nodes(graph: GraphProto, index: _Index) -> Iterator[tuple[NodeProto, str]]:
    for node in graph.node:
        if node.op_type == "MatMul":
            keys = _score_keys(index, node)
            if keys is not None:
                yield node, keys


def slice_masks_to_keys(model: ModelProto) -> int:
    """Cut each attention mask to the last T columns, T the length of the keys the layer reads (a no-op for
    full caches; lets a sliding layer's cache hold only its window). Returns how many masks were cut."""
    graph, done = model.graph, 0
    index = _Index(graph)
    cuts: dict[tuple[str, str], str] = {}
    for node, keys in list(_score_nodes(graph, index)):
        scores = node.output[0]
        users = index.consumers.get(scores, [])
        if len(users) == 1 and users[0].op_type == "Reshape" and users[0].name.startswith(_PREFIX):
            scores = users[0].output[0]  # viewed back to [B, H, S, T]
        found = _mask_add(index, scores)
        if found is None:
            continue
        add, slot = found
        mask = add.input[slot]
        if (mask, keys) not in cuts:
            n = f"{_PREFIX}/mask{len(cuts)}/"
            _insert_before(
                graph,
                add,
                [
                    helper.make_node("Shape", [keys], [n + "length"], name=n + "length", start=2, end=3),
                    helper.make_node("Neg", [n + "length"], [n + "start"], name=n + "start"),
                    _ints(n + "end", [np.iinfo(np.int64).max]),
                    _ints(n + "axis", [3]),
                    helper.make_node("Slice", [mask, n + "start", n + "end", n + "axis"], [n + "mask"], name=n + "cut"),
                ],
            )
            cuts[(mask, keys)] = n + "mask"
        add.input[slot] = cuts[(mask, keys)]
        done += 1
    if done:
        props = {p.key: p.value for p in model.metadata_props}
        helper.set_model_props(
            model, {**props, KEYS_DEFINE_MASK: "1", WHOLE_CACHES: ",".join(_length_sources(graph, index))}
        )
    return done


def _length_sources(graph: GraphProto, index: _Index) -> list[str]:
    """Past inputs read by anything but the Concat that makes their `present` output (e.g. a Shape that gives
    the masks the past length): cutting one would change what the graph computes, so they keep every position."""
    outputs = {o.name for o in graph.output}
    return sorted(
        name
        for name, users in index.consumers.items()
        if name.startswith("past_key_values.")
        and any(user.op_type != "Concat" or user.output[0] not in outputs for user in users)
    )


def remove_unused(graph: GraphProto) -> int:
    """Drop nodes whose outputs nothing reads (not graph outputs either); returns how many."""
    removed = 0
    while True:
        needed = {o.name for o in graph.output} | {name for node in graph.node for name in node.input}
        dead = [node for node in graph.node if not any(out in needed for out in node.output)]
        if not dead:
            return removed
        for node in dead:
            graph.node.remove(node)
        removed += len(dead)
