"""The KV-cache geometry of a Gemma 4 config.json and the sizes admission needs before a model is loaded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.messages import ModelSizes
from edge_agent.model.store.files import ModelFiles, ModelFilesError, locate_model, read_model_config
from edge_agent.model.store.packing import repack_bytes

# Gemma4TextConfig's defaults (transformers 5.23) for keys a config.json may leave out.
_DEFAULT_KV_HEADS = 4
_DEFAULT_HEAD_DIM = 256
_DEFAULT_GLOBAL_HEAD_DIM = 512
_DEFAULT_SLIDING_WINDOW = 512
_DEFAULT_SLIDING_PATTERN = 6  # five sliding layers, then one full
_HALF_PRECISION_VARIANTS = frozenset({"fp16", "q4f16"})


@dataclass(frozen=True)
class CacheLayer:
    """KV-cache shape of one decoder layer that keeps its own keys and values."""

    sliding: bool
    kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class KVGeometry:
    """The layers that own a KV cache (KV-shared layers reuse earlier ones) and the sliding window."""

    layers: tuple[CacheLayer, ...]
    sliding_window: int

    def cache_bytes(self, context: int, bytes_per_value: int, trim_sliding: bool = False) -> int:
        """Keys plus values for `context` positions; with `trim_sliding`, sliding layers keep only their window."""
        total = 0
        for layer in self.layers:
            positions = min(self.sliding_window, context) if layer.sliding and trim_sliding else context
            total += 2 * layer.kv_heads * layer.head_dim * positions * bytes_per_value
        return total


def _int(text: dict[str, Any], key: str, default: int | None, source: Path) -> int:
    value = text.get(key)
    value = default if value is None else value
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ModelFilesError(f"{source}: '{key}' must be a non-negative integer (got {value!r})")
    return value


def read_kv_geometry(config_json: str | Path) -> KVGeometry:
    """The KV-cache layers of a Gemma 4 config.json, read as transformers' Gemma4TextConfig reads it."""
    config_json = Path(config_json)
    _, text = read_model_config(config_json)
    layer_count = _int(text, "num_hidden_layers", None, config_json)
    types = text.get("layer_types")
    if types is None:
        types = [
            "full_attention" if (i + 1) % _DEFAULT_SLIDING_PATTERN == 0 else "sliding_attention"
            for i in range(layer_count)
        ]
    if not isinstance(types, list) or len(types) != layer_count:
        raise ModelFilesError(f"{config_json}: 'layer_types' must list {layer_count} layer types")
    types = [*types[:-1], "full_attention"]  # transformers forces the last layer to full attention
    kv_heads = _int(text, "num_key_value_heads", _DEFAULT_KV_HEADS, config_json)
    global_kv_heads = kv_heads
    if text.get("attention_k_eq_v") and text.get("num_global_key_value_heads") is not None:
        global_kv_heads = _int(text, "num_global_key_value_heads", None, config_json)
    sliding = CacheLayer(True, kv_heads, _int(text, "head_dim", _DEFAULT_HEAD_DIM, config_json))
    full = CacheLayer(False, global_kv_heads, _int(text, "global_head_dim", _DEFAULT_GLOBAL_HEAD_DIM, config_json))
    owners = layer_count - _int(text, "num_kv_shared_layers", 0, config_json)
    return KVGeometry(
        layers=tuple(sliding if kind == "sliding_attention" else full for kind in types[: max(owners, 0)]),
        sliding_window=_int(text, "sliding_window", _DEFAULT_SLIDING_WINDOW, config_json),
    )


def kv_bytes_per_value(variant: str) -> int:
    """Bytes per cached key/value element: fp16 exports keep a half-precision cache, the others float32."""
    return 2 if variant in _HALF_PRECISION_VARIANTS else 4


def model_sizes(files: ModelFiles) -> ModelSizes:
    """Bytes of the variant's graph files, of what onnxruntime repacks beyond them on this machine, and of its KV
    cache per position, for admission."""
    geometry = read_kv_geometry(files.root / "config.json")
    # the engine sets the accuracy level on the decoder and the encoders; embed_tokens runs at the level it stores
    rewritten = [repack_bytes(graph.onnx) for graph in files.graphs() if graph != files.embed_tokens]
    embed = repack_bytes(files.embed_tokens.onnx).stored_level4
    per_value = kv_bytes_per_value(files.variant)
    sliding = KVGeometry(tuple(layer for layer in geometry.layers if layer.sliding), geometry.sliding_window)
    sizes = ModelSizes(
        root=str(files.root),
        variant=files.variant,
        files_bytes=sum(path.stat().st_size for graph in files.graphs() for path in graph.paths),
        kv_bytes_per_position=geometry.cache_bytes(1, per_value),
        sliding_kv_bytes_per_position=sliding.cache_bytes(1, per_value),
        sliding_window=geometry.sliding_window,
        level4_repack_bytes=sum(r.every_node for r in rewritten) + embed,
        stored_level4_repack_bytes=sum(r.stored_level4 for r in rewritten) + embed,
        kv_bytes_per_value=per_value,
    )
    return sizes


def sizes_at(root: str | Path, variant: str) -> ModelSizes:
    """The sizes of the model in `root` (ModelFilesError if it is not there); checksums are not read."""
    return model_sizes(locate_model(Path(root), variant, verify=False))
