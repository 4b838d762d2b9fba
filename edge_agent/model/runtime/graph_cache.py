"""Rewritten decoder graphs for onnxruntime, cached on disk by source-file identity and rewrite options."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from onnx import ModelProto

from edge_agent.model.runtime.graph_attention import group_query_heads, slice_masks_to_keys
from edge_agent.model.runtime.graph_fusion import fuse_elementwise
from edge_agent.model.runtime.graph_head import head_bits, quantize_head
from edge_agent.model.runtime.graph_kv_half import half_kv_cache
from edge_agent.model.runtime.graph_rewrite import (
    Rewrites,
    add_logits_to_keep,
    bytes_per_token,
    describe_bytes,
    load_proto,
    set_accuracy_level,
)
from edge_agent.model.runtime.graph_split import split_kv_appends
from edge_agent.model.store.files import Graph
from edge_agent.model.store.manifest import ModelFilesError, sha256_file

log = logging.getLogger(__name__)

FORMAT = 3  # bump when a rewrite changes what it writes for the same options
_META = "meta.json"
_GRAPH = "graph.onnx"


@dataclass(frozen=True)
class PreparedGraph:
    """A rewritten graph: proto bytes, the folder its external data lives in, and tensors it gets by name."""

    model: bytes
    folder: Path
    tensors: dict[str, np.ndarray] = field(default_factory=dict)


def default_cache_dir() -> Path:
    """$CACHE_DIRECTORY/graphs under systemd, else $XDG_CACHE_HOME/edge-agent/graphs (~/.cache by default)."""
    systemd = os.environ.get("CACHE_DIRECTORY", "").split(":")[0]
    if systemd:
        return Path(systemd) / "graphs"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "edge-agent" / "graphs"


def cache_key(graph: Graph, rewrites: Rewrites) -> dict[str, Any]:
    """What a cache entry depends on: the graph and sidecar files (path, size, mtime) and the options."""
    files = [[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in graph.paths]
    return {"format": FORMAT, "files": files, "rewrites": rewrites.as_dict()}


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _usable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(directory, os.W_OK | os.X_OK)


def apply_rewrites(model: ModelProto, folder: Path, rewrites: Rewrites) -> tuple[bool, dict[str, np.ndarray]]:
    """Rewrite `model` in place; returns whether anything changed and the tensors new nodes read."""
    changed = False
    if rewrites.logits_to_keep:
        changed |= add_logits_to_keep(model)
    if rewrites.grouped_attention:
        grouped, masks = group_query_heads(model), slice_masks_to_keys(model)
        log.debug("decoder: %d attention products grouped by KV head, %d masks follow their keys", grouped, masks)
        splits = split_kv_appends(model) if grouped else 0
        log.debug("decoder: %d KV caches appended in place (attention over past and new apart)", splits)
        halved = half_kv_cache(model) if rewrites.kv_float16 else 0
        log.debug("decoder: %d KV caches kept in float16", halved)
        changed |= grouped + masks > 0
    if rewrites.fused_ops:
        norms, gelus = fuse_elementwise(model)
        log.debug("decoder: %d RMSNorms and %d tanh GELUs fused", norms, gelus)
        changed |= norms + gelus > 0
    bits = head_bits(model, rewrites.head)
    tensors = quantize_head(model, folder, bits, rewrites.new_node_level) if bits else {}
    levels = set_accuracy_level(model, rewrites)
    if levels:
        log.debug("decoder: accuracy_level set on %d MatMulNBits nodes", levels)
    return changed or bool(tensors) or levels > 0, tensors


def _read_entry(entry: Path, key: dict[str, Any]) -> tuple[bool, PreparedGraph | None]:
    """(found, graph) of a verified entry (graph None: no rewrite needed); a stale or corrupt one is removed."""
    if not (entry / _META).is_file():
        return False, None
    try:
        meta = json.loads((entry / _META).read_text())
        if meta["key"] != key:
            raise ValueError("stale entry")
        if not meta["unchanged"] and not {_GRAPH, *meta["tensors"]} <= set(meta["sha256"]):
            raise ValueError("files without a checksum")
        for name, digest in meta["sha256"].items():
            if sha256_file(entry / name) != digest:
                raise ValueError(f"{name}: sha256 does not match")
        log.debug("decoder %s", describe_bytes(meta["bytes_per_token"]))
        if meta["unchanged"]:
            return True, None
        tensors = {tensor: np.load(entry / name, mmap_mode="r") for name, tensor in meta["tensors"].items()}
        return True, PreparedGraph((entry / _GRAPH).read_bytes(), Path(key["folder"]), tensors)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning("graph cache %s: %s; rebuilding it", entry, exc)
        shutil.rmtree(entry, ignore_errors=True)
        return False, None


def _write_entry(entry: Path, key: dict[str, Any], prepared: PreparedGraph | None, totals: dict[str, int]) -> None:
    """Write the entry under a temporary name and rename it into place; drop older entries of the same graph."""
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=entry.parent))
    try:
        meta: dict[str, Any] = {"key": key, "unchanged": prepared is None, "sha256": {}, "tensors": {}}
        meta["bytes_per_token"] = totals
        if prepared is not None:
            (tmp / _GRAPH).write_bytes(prepared.model)
            for index, (name, array) in enumerate(prepared.tensors.items()):
                np.save(tmp / f"t{index}.npy", array)
                meta["tensors"][f"t{index}.npy"] = name
            meta["sha256"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        (tmp / _META).write_text(json.dumps(meta, indent=1))
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError as exc:
        log.warning("graph cache %s: cannot write it (%s)", entry, exc)
        shutil.rmtree(tmp, ignore_errors=True)
        return
    prefix = entry.name.rsplit("-", 1)[0] + "-"
    for old in entry.parent.glob(prefix + "*"):
        if old != entry:
            shutil.rmtree(old, ignore_errors=True)


def _rewrite(graph: Graph, rewrites: Rewrites) -> tuple[PreparedGraph | None, dict[str, int]]:
    try:
        model = load_proto(str(graph.onnx))
    except Exception as exc:  # protobuf's DecodeError, OSError: a file that is no ONNX graph
        raise ModelFilesError(f"{graph.onnx}: not a readable ONNX graph ({exc})") from None
    changed, tensors = apply_rewrites(model, graph.onnx.parent, rewrites)
    totals = bytes_per_token(model.graph)
    log.debug("decoder %s", describe_bytes(totals))
    return (PreparedGraph(model.SerializeToString(), graph.onnx.parent, tensors) if changed else None), totals


def prepare_graph(graph: Graph, rewrites: Rewrites, cache_dirs: Sequence[Path] = ()) -> PreparedGraph | None:
    """The rewritten graph (from the first writable cache dir when cached), or None when it needs no rewrite."""
    directory = next((d for d in cache_dirs if _usable(d)), None)
    if directory is None:
        if cache_dirs:
            log.warning("graph cache: none of %s is writable; rewriting in memory", ", ".join(map(str, cache_dirs)))
        return _rewrite(graph, rewrites)[0]
    key = {**cache_key(graph, rewrites), "folder": str(graph.onnx.parent.resolve())}
    entry = directory / f"{graph.onnx.stem}-{_digest(key['files'][0][0])[:12]}-{_digest(key)[:16]}"
    found, prepared = _read_entry(entry, key)
    if found:
        log.debug("decoder: graph rewrites from cache %s", entry)
        return prepared
    prepared, totals = _rewrite(graph, rewrites)
    _write_entry(entry, key, prepared, totals)
    return prepared
