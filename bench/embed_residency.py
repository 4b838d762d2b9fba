"""How an export's embed graph stores its tables, and whether a table becomes resident whole when only rows are read.

For every large initializer of `embed_tokens{S}.onnx` (the token table and the per-layer table, 262,144 x 35 x 256
entries in E2B): its shape, stored bytes and the ops that read it (Gather over a float table, GatherBlockQuantized
over a quantized one, or a DequantizeLinear that would make a float copy of the whole table). Then, in this process,
the resident bytes of the embed graph's weight files after the session loads and after embedding --tokens spread
over the vocabulary: rows only means a few MB; a whole table means the file's size (or an anonymous float copy).
Run: .venv/bin/python bench/embed_residency.py MODEL_DIR [--variant q4] [--tokens 256]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))

import roofline
from rss import MB, resident_by_mapping

from edge_agent.model.store.files import locate_model

LARGE = 1 << 20  # initializers from this many stored bytes are tables worth reporting


def tables(graph_path: Path) -> list[dict[str, Any]]:
    """The graph's large initializers: name, dims, stored bytes, and the op types that read each."""
    graph = onnx.load(str(graph_path), load_external_data=False).graph
    readers: dict[str, list[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    found = []
    for tensor in graph.initializer:
        size = roofline.tensor_bytes(tensor)
        if size >= LARGE:
            found.append(
                {"name": tensor.name, "dims": list(tensor.dims), "bytes": size, "read_by": readers.get(tensor.name, [])}
            )
    return found


def residency(graph_path: Path, files: list[Path], vocab: int, tokens: int) -> dict[str, Any]:
    """Resident MB of the weight files and anonymous memory: before loading, after loading, after embedding."""
    names = {p.name for p in files}

    def snapshot() -> dict[str, float]:
        now = resident_by_mapping(top=50)
        mapped = sum(size for name, size in now.get("files_mb", {}).items() if name in names)
        return {"files_mb": mapped, "anonymous_mb": now.get("anonymous_mb", 0.0)}

    before = snapshot()
    session = ort.InferenceSession(str(graph_path), providers=["CPUExecutionProvider"])
    loaded = snapshot()
    ids = np.linspace(0, vocab - 1, tokens).astype(np.int64)[None, :]
    session.run(None, {"input_ids": ids})
    embedded = snapshot()
    return {"before": before, "after_load": loaded, "after_embedding": embedded}


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--variant", default="q4")
    parser.add_argument(
        "--tokens", type=int, default=256, help="distinct token ids to embed, spread over the vocabulary"
    )
    args = parser.parse_args()
    files = locate_model(args.model.expanduser(), args.variant, verify=False)
    graph = files.embed_tokens
    for table in tables(graph.onnx):
        print(
            f"  {table['name']}: {table['dims']}, {table['bytes'] / MB:.1f} MB, read by {', '.join(table['read_by'])}"
        )
    stored = sum(p.stat().st_size for p in graph.sidecars) / MB
    figures = residency(graph.onnx, list(graph.sidecars), files.info.vocab_size, args.tokens)
    print(f"  weight files {stored:.1f} MB; resident MB (files / anonymous):")
    for stage, values in figures.items():
        print(f"    {stage:16s} {values['files_mb']:8.1f} / {values['anonymous_mb']:8.1f}")


if __name__ == "__main__":
    main()
