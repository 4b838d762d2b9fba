"""Load-time rewrite: the KV cache kept in float16 between steps, read back as float32 next to each product.

After `graph_split`, every `present.N` holds only the new positions and the engine keeps the past in its own
buffers. Here the new keys and values are rounded to float16 where they are made: `present.N` is that float16
tensor, and the graph's own products over the new positions read it cast back, so a position gives the same
scores whether it is read from this step or from the cache (a reused prefix gives the ids a fresh prefill does).
`past_key_values.N` inputs are float16; every node that reads one reads its own float32 cast, made just before
it. The cache takes half the memory; it is not faster (at a 4k context at E2B shape the products take as long on
the float32 copy, and the casts add to a step). It rounds every key and value to float16 (10-bit mantissa): an
error budget (bench/fidelity.py), not exact. The engine sizes its cache from the inputs' type.
"""

from __future__ import annotations

from collections.abc import Iterable

from onnx import GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto, helper

from edge_agent.model.runtime.graph_split import PRESENT_IS_NEW

_PREFIX = "edge_agent/kv_half"
_PAST, _PRESENT = "past_key_values.", "present."


def _float_names(values: Iterable[ValueInfoProto], prefix: str) -> list[str]:
    return [v.name for v in values if v.name.startswith(prefix) and v.type.tensor_type.elem_type == TensorProto.FLOAT]


def _sources(graph: GraphProto, presents: list[str]) -> dict[str, str]:
    """For each present output, the float32 tensor it is made of (an Identity's input, else the output renamed)."""
    producers = {out: node for node in graph.node for out in node.output}
    sources = {}
    for present in presents:
        node = producers[present]
        if node.op_type == "Identity":
            sources[present] = str(node.input[0])
            continue
        sources[present] = present + "/float32"
        node.output[list(node.output).index(present)] = sources[present]
        for reader in graph.node:
            for slot, name in enumerate(reader.input):
                if name == present:
                    reader.input[slot] = sources[present]
    return sources


def half_kv_cache(model: ModelProto) -> int:
    """Store the KV cache in float16 (only where `present` outputs hold the new positions alone); returns how many
    caches were changed."""
    graph = model.graph
    props = {p.key: p.value for p in model.metadata_props}
    pasts, presents = _float_names(graph.input, _PAST), _float_names(graph.output, _PRESENT)
    if props.get(PRESENT_IS_NEW) != "1" or not pasts or len(pasts) != len(presents):
        return 0
    sources = _sources(graph, presents)
    present_of = {source: present for present, source in sources.items()}
    rebuilt: list[NodeProto] = []
    for node in graph.node:
        if node.op_type == "Identity" and node.output[0] in sources:
            continue  # the present is made by the float16 cast below
        casts = []
        for slot, name in enumerate(node.input):
            if name in pasts and node.op_type != "Shape":  # a shape is the same in either type
                cast = f"{_PREFIX}/{node.name or id(node)}/{slot}"
                casts.append(helper.make_node("Cast", [name], [cast], name=cast, to=TensorProto.FLOAT))
                node.input[slot] = cast
            elif name in present_of:  # this step's keys or values, as the cache will hold them
                node.input[slot] = present_of[name] + "/rounded"
        rebuilt += [*casts, node]
        for name in node.output:
            if name in present_of:
                present = present_of[name]
                rebuilt.append(helper.make_node("Cast", [name], [present], name=present, to=TensorProto.FLOAT16))
                rounded = present + "/rounded"
                rebuilt.append(helper.make_node("Cast", [present], [rounded], name=rounded, to=TensorProto.FLOAT))
    del graph.node[:]
    graph.node.extend(rebuilt)
    for value in [*graph.input, *graph.output]:
        if value.name in pasts or value.name in presents:
            value.type.tensor_type.elem_type = TensorProto.FLOAT16
        dims = value.type.tensor_type.shape.dim
        if value.name in pasts and len(dims) == 4 and dims[2].dim_param:  # its own length (sliding layers are cut):
            dims[2].dim_param = value.name + ".length"  # one shared name makes onnxruntime plan equal buffers
    return len(pasts)
