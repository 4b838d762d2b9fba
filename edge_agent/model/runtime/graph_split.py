"""Load-time rewrite: attention over [past ; new] without joining them, so the decoder never copies the KV cache.

The exported graph makes each `present.N` as Concat(past, new) and attends over it: every decode step copies the
whole cache (at a 4k context, megabytes per layer). Rewritten, the scores are [q·past, q·new], the values are
p[:past]·past + p[past:]·new, and `present.N` holds only the new positions; the engine appends them to buffers
that grow in place (kv_cache.py). Applied after the grouped-attention rewrite, whose node shapes it expects."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from onnx import GraphProto, ModelProto, NodeProto, helper, numpy_helper

from edge_agent.model.runtime.graph_attention import remove_unused

PRESENT_IS_NEW = "edge_agent.present_is_new"  # metadata: `present.N` outputs hold only the new positions
_PREFIX = "edge_agent/split"


def _attr(node: NodeProto, name: str) -> object:
    found = next((a for a in node.attribute if a.name == name), None)
    return helper.get_attribute_value(found) if found is not None else None


def _int64(name: str, values: list[int]) -> NodeProto:
    value = numpy_helper.from_array(np.array(values, np.int64))
    return helper.make_node("Constant", [], [name], name=name, value=value)


def _slice(data: str, start: str, end: str, axis: str, output: str) -> NodeProto:
    return helper.make_node("Slice", [data, start, end, axis], [output], name=output)


class _Split:
    """Rewrites the readers of one `present` Concat(past, new)."""

    def __init__(self, graph: GraphProto, concat: NodeProto, consumers: dict[str, list[NodeProto]]) -> None:
        self.graph, self.concat, self.consumers = graph, concat, consumers
        self.past, self.new = concat.input
        self.prefix = f"{_PREFIX}/{concat.output[0]}"
        self.nodes: list[tuple[NodeProto, list[NodeProto]]] = []  # (reader replaced, its replacement)

    def plan(self) -> bool:
        """Plan a replacement for every reader; False when one of them is of an unknown kind."""
        producer = {out: node for node in self.graph.node for out in node.output}
        for index, reader in enumerate(self.consumers[self.concat.output[0]]):
            name = f"{self.prefix}/{index}"
            if reader.op_type == "Shape":
                new = self._shape(reader, name)
            elif reader.op_type == "Transpose" and _attr(reader, "perm") == [0, 1, 3, 2]:
                new = self._scores(reader, name)
            elif reader.op_type == "MatMul" and reader.input[1] == self.concat.output[0]:
                new = self._values(reader, name, producer)
            else:
                new = None
            if new is None:
                return False
            self.nodes.append(new)
        return True

    def _shape(self, reader: NodeProto, name: str) -> tuple[NodeProto, list[NodeProto]] | None:
        span = (_attr(reader, "start"), _attr(reader, "end"))
        if span == (1, 2):  # KV heads: the same in past and new
            return reader, [helper.make_node("Shape", [self.new], list(reader.output), name=name, start=1, end=2)]
        if span == (2, 3):  # positions: past + new
            return reader, [
                helper.make_node("Shape", [self.past], [name + "/past"], name=name + "/past", start=2, end=3),
                helper.make_node("Shape", [self.new], [name + "/new"], name=name + "/new", start=2, end=3),
                helper.make_node("Add", [name + "/past", name + "/new"], list(reader.output), name=name),
            ]
        return None

    def _scores(self, reader: NodeProto, name: str) -> tuple[NodeProto, list[NodeProto]] | None:
        users = self.consumers.get(reader.output[0], [])
        if len(users) != 1 or users[0].op_type != "MatMul" or users[0].input[1] != reader.output[0]:
            return None
        matmul, query = users[0], users[0].input[0]
        self.nodes.append((reader, []))  # the transpose of the joined keys goes
        return matmul, [
            helper.make_node("Transpose", [self.past], [name + "/pt"], name=name + "/pt", perm=[0, 1, 3, 2]),
            helper.make_node("Transpose", [self.new], [name + "/nt"], name=name + "/nt", perm=[0, 1, 3, 2]),
            helper.make_node("MatMul", [query, name + "/pt"], [name + "/ps"], name=name + "/ps"),
            helper.make_node("MatMul", [query, name + "/nt"], [name + "/ns"], name=name + "/ns"),
            helper.make_node("Concat", [name + "/ps", name + "/ns"], list(matmul.output), name=name, axis=-1),
        ]

    def _values(
        self, reader: NodeProto, name: str, producer: dict[str, NodeProto]
    ) -> tuple[NodeProto, list[NodeProto]] | None:
        probabilities = reader.input[0]
        if probabilities not in producer:
            return None
        return reader, [
            helper.make_node("Shape", [self.past], [name + "/tp"], name=name + "/tp", start=2, end=3),
            _int64(name + "/zero", [0]),
            _int64(name + "/end", [np.iinfo(np.int64).max]),
            _int64(name + "/axis", [-1]),
            helper.make_node(
                "Slice",
                [probabilities, name + "/zero", name + "/tp", name + "/axis"],
                [name + "/pp"],
                name=name + "/pp",
            ),
            helper.make_node(
                "Slice", [probabilities, name + "/tp", name + "/end", name + "/axis"], [name + "/pn"], name=name + "/pn"
            ),
            helper.make_node("MatMul", [name + "/pp", self.past], [name + "/vp"], name=name + "/vp"),
            helper.make_node("MatMul", [name + "/pn", self.new], [name + "/vn"], name=name + "/vn"),
            helper.make_node("Add", [name + "/vp", name + "/vn"], list(reader.output), name=name),
        ]


def split_kv_appends(model: ModelProto) -> int:
    """Rewrite every `present` Concat(past, new) whose readers are all known; returns how many."""
    graph = model.graph
    outputs = {out.name for out in graph.output}
    consumers: dict[str, list[NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)
    joins = [
        node
        for node in graph.node
        if node.op_type == "Concat" and node.output[0] in outputs and len(node.input) == 2
        if node.output[0].startswith("present.") and _attr(node, "axis") in (-2, 2)
    ]
    splits = [split for split in (_Split(graph, node, consumers) for node in joins) if split.plan()]
    if len(splits) != len(joins):  # all or nothing: the engine treats every present output alike
        return 0
    replaced = {id(old): new for split in splits for old, new in split.nodes}
    for split in splits:  # `present.N` becomes the new positions alone
        replaced[id(split.concat)] = [helper.make_node("Identity", [split.new], list(split.concat.output))]
    rebuilt = []
    for node in graph.node:
        rebuilt.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(rebuilt)
    _identity_for_single_concats(graph)
    remove_unused(graph)
    props = {p.key: p.value for p in model.metadata_props}
    helper.set_model_props(model, {**props, PRESENT_IS_NEW: "1"})
    return len(splits)


def _identity_for_single_concats(graph: GraphProto) -> None:
    """A one-input Concat copies its input; an Identity is removed by onnxruntime's optimizer."""
    for node in graph.node:
        if node.op_type == "Concat" and len(node.input) == 1:
            node.op_type = "Identity"
            del node.attribute[:]
