"""onnxruntime sessions, providers, threads, KV cache and forward passes (graph rewrites: graph_rewrite.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from edge_agent.config.model import ModelConfig
from edge_agent.model.runtime import resident
from edge_agent.model.runtime.graph_attention import KEYS_DEFINE_MASK, WHOLE_CACHES
from edge_agent.model.runtime.graph_cache import PreparedGraph, default_cache_dir, prepare_graph
from edge_agent.model.runtime.graph_rewrite import Rewrites
from edge_agent.model.runtime.graph_split import PRESENT_IS_NEW
from edge_agent.model.runtime.kv_cache import KVCache
from edge_agent.model.store.files import ModelFiles, ModelFilesError
from edge_agent.model.store.geometry import read_kv_geometry

log = logging.getLogger(__name__)

_PAST = re.compile(r"^past_key_values\.(\d+)\.(key|value)$")
_ORT_DTYPES: dict[str, Any] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
}
_DECODER_INPUTS = {"inputs_embeds", "per_layer_inputs", "attention_mask", "position_ids", "num_logits_to_keep"}
_PREFERRED_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")
_VISION_INPUTS = ("pixel_values", "pixel_position_ids")
_AUDIO_INPUTS = ("input_features", "input_features_mask")
_EXTERNAL_FOLDER = "session.model_external_initializers_file_folder_path"  # where a proto from bytes finds its weights


class EngineError(Exception):
    """The model cannot be run (bad graph, provider, or input)."""


@dataclass(frozen=True)
class EngineOptions:
    """How to build the onnxruntime sessions; the defaults keep the files' own numerics, as the reference client."""

    providers: tuple[str, ...] = ()
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    rewrites: Rewrites = field(default_factory=Rewrites)
    graph_cache: Path | None = None  # rewritten decoder graphs are cached here (else under the model); None: in memory
    prefill_chunk: int = 512  # a longer prompt is prefilled in pieces this long (bounds the attention scores' memory)
    # drop the pages of the decoder's weight files (and of a cached quantized head) that onnxruntime read while
    # packing and never reads again (x86 level 4: the INT4 scales, -232 MB at E2B shape), during the load too, and
    # the embedding table's pages every 64 rows read (they would pile up; see resident.py)
    release_file_pages: bool = True
    session_config: tuple[str, ...] = ()  # extra onnxruntime session config entries, 'KEY=VALUE' (measurements)

    @classmethod
    def from_config(cls, model: ModelConfig) -> EngineOptions:
        """The options a node's `model` section asks for."""
        return cls(
            providers=tuple(model.providers),
            intra_op_threads=model.intra_op_threads,
            inter_op_threads=model.inter_op_threads,
            rewrites=Rewrites.from_config(model),
            graph_cache=model.graph_cache_dir or default_cache_dir(),
        )


def choose_providers(wanted: Sequence[str], available: Sequence[str]) -> list[str]:
    """The providers to use: the configured ones (all must be installed), else the best installed."""
    if wanted:
        missing = [p for p in wanted if p not in available]
        if missing:
            raise EngineError(
                f"execution provider(s) {', '.join(missing)} not available in this onnxruntime; "
                f"installed: {', '.join(available)}"
            )
        return list(wanted)
    chosen = [p for p in _PREFERRED_PROVIDERS if p in available]
    return chosen or list(available)


def _dtype(node: Any, graph: Path) -> Any:
    dtype = _ORT_DTYPES.get(node.type)
    if dtype is None:
        raise EngineError(f"{graph}: input {node.name} has unsupported type {node.type}")
    return dtype


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_OUT_OF_MEMORY = ("bad_alloc", "failed to allocate", "out of memory", "cannot allocate", "memoryerror")
_PROVIDER = ("cuda", "cudnn", "tensorrt", "provider", "libcublas", "libnvinfer")


def load_error(path: Path, exc: BaseException, providers: Sequence[str]) -> Exception:
    """What onnxruntime's refusal means: out of memory and provider failures are not a corrupt file."""
    text = f"{type(exc).__name__}: {exc}".lower()
    first = _first_line(exc) if isinstance(exc, Exception) else str(exc)
    if isinstance(exc, MemoryError) or any(word in text for word in _OUT_OF_MEMORY):
        return EngineError(f"{path}: out of memory while onnxruntime loaded it ({first})")
    if any(word in text for word in _PROVIDER) and any(p != "CPUExecutionProvider" for p in providers):
        return EngineError(f"{path}: execution provider {', '.join(providers)} failed: {first}")
    return ModelFilesError(f"{path}: onnxruntime cannot load it (not a valid graph for this onnxruntime): {first}")


def open_session(
    path: Path, options: EngineOptions, providers: Sequence[str], prepared: PreparedGraph | None = None
) -> ort.InferenceSession:
    """A session for one graph (or its rewritten `prepared` proto); a graph onnxruntime refuses is a ModelFilesError."""
    session_options = ort.SessionOptions()
    session_options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if options.intra_op_threads:
        session_options.intra_op_num_threads = options.intra_op_threads
    if options.inter_op_threads:
        session_options.inter_op_num_threads = options.inter_op_threads
    for entry in options.session_config:
        key, _, value = entry.partition("=")
        session_options.add_session_config_entry(key, value)
    model: str | bytes = str(path)
    if prepared is not None:  # the proto from memory, its weights from the original files (never copied on disk)
        model = prepared.model
        session_options.add_session_config_entry(_EXTERNAL_FOLDER, str(prepared.folder))
        if prepared.tensors:
            values = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a)) for a in prepared.tensors.values()]
            session_options.add_external_initializers(list(prepared.tensors), values)
    try:
        return ort.InferenceSession(model, session_options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        raise load_error(path, exc, providers) from None


class Encoder:
    """One encoder graph (vision or audio): two named inputs in, a [N, hidden] feature matrix out."""

    def __init__(self, path: Path, inputs: tuple[str, str], session: ort.InferenceSession) -> None:
        self.path, self._session, self._returning = path, session, resident.arena_returning_run()
        have = [node.name for node in self._session.get_inputs()]
        if sorted(have) != sorted(inputs):
            raise EngineError(f"{path}: expected inputs {list(inputs)}, got {have}")
        self._types = {node.name: _dtype(node, path) for node in self._session.get_inputs()}
        self._output = self._session.get_outputs()[0].name

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """The features of these inputs, flattened to [N, hidden] float32."""
        typed = {name: value.astype(self._types[name], copy=False) for name, value in feeds.items()}
        try:
            (features,) = self._session.run([self._output], typed, self._returning)
        except Exception as exc:  # onnxruntime's own error types: shapes or values the graph refuses
            raise EngineError(f"{self.path}: {_first_line(exc)}") from None
        features = np.asarray(features, dtype=np.float32)
        return features.reshape(-1, features.shape[-1])


class TextEngine:
    """Runs `embed_tokens` and `decoder_model_merged` of a Gemma 4 export, and its encoders when present."""

    positions_run = 0  # positions fed through the decoder so far (prefill and decode), for accounting

    def __init__(
        self, files: ModelFiles, options: EngineOptions | None = None, encoders: Sequence[str] = ("image", "audio")
    ) -> None:
        options = options or EngineOptions()
        self.files = files
        self.prefill_chunk = options.prefill_chunk
        self.providers = choose_providers(options.providers, ort.get_available_providers())
        self._embed = open_session(files.embed_tokens.onnx, options, self.providers)
        self._returning = resident.arena_returning_run()  # prefill runs give their activations' memory back
        self._embed_pages = resident.TablePages(files.embed_tokens.sidecars if options.release_file_pages else [])
        cache_dirs = (options.graph_cache, files.root / ".cache" / "graphs") if options.graph_cache else ()
        prepared = prepare_graph(files.decoder, options.rewrites, cache_dirs)
        weights = [*files.decoder.sidecars, *(resident.mapped_files(prepared.tensors.values()) if prepared else [])]
        with resident.released_around_loading(weights, options.release_file_pages):
            self._decoder = open_session(files.decoder.onnx, options, self.providers, prepared)
        self._decoder_inputs = {node.name: node for node in self._decoder.get_inputs()}
        self._embed_dtype = _dtype(self._decoder_inputs["inputs_embeds"], files.decoder.onnx)
        self._check_io()
        self._windows = self._sliding_windows()
        self._present_is_new = self._decoder.get_modelmeta().custom_metadata_map.get(PRESENT_IS_NEW) == "1"
        self.vision: Encoder | None = None
        self.audio: Encoder | None = None
        kernels = options.rewrites.kernels_only()  # the encoders' INT4 kernels at the decoder's accuracy level
        for kind, graph, inputs in (
            ("image", files.vision_encoder, _VISION_INPUTS),
            ("audio", files.audio_encoder, _AUDIO_INPUTS),
        ):
            if graph is not None and kind in encoders:
                session = open_session(graph.onnx, options, self.providers, prepare_graph(graph, kernels, cache_dirs))
                setattr(self, "vision" if kind == "image" else "audio", Encoder(graph.onnx, inputs, session))

    def _check_io(self) -> None:
        graph = self.files.decoder.onnx
        unknown = [n for n in self._decoder_inputs if n not in _DECODER_INPUTS and not _PAST.match(n)]
        if unknown:
            raise EngineError(f"{graph}: unexpected decoder inputs {unknown}")
        for name in ("inputs_embeds", "per_layer_inputs", "attention_mask", "position_ids"):
            if name not in self._decoder_inputs:
                raise EngineError(f"{graph}: decoder input {name!r} missing (not a Gemma 4 decoder?)")
        outputs = {node.name for node in self._decoder.get_outputs()}
        for name in self.past_names:
            present = name.replace("past_key_values.", "present.")
            if present not in outputs:
                raise EngineError(f"{graph}: output {present!r} missing for input {name!r}")
        embed_in = [node.name for node in self._embed.get_inputs()]
        if embed_in != ["input_ids"]:
            raise EngineError(f"{self.files.embed_tokens.onnx}: expected one input 'input_ids', got {embed_in}")

    def _sliding_windows(self) -> dict[str, int]:
        """Past inputs of sliding layers, when the graph cuts each mask to its keys (so they may hold a window)."""
        meta = self._decoder.get_modelmeta().custom_metadata_map
        if meta.get(KEYS_DEFINE_MASK) != "1":
            return {}
        geometry = read_kv_geometry(self.files.root / "config.json")
        whole = set(meta.get(WHOLE_CACHES, "").split(","))
        windows = {}
        for name in self.past_names:
            if name in whole or name.replace(".key", ".value") in whole or name.replace(".value", ".key") in whole:
                continue
            layer = int(_PAST.match(name).group(1))  # type: ignore[union-attr]
            if layer < len(geometry.layers) and geometry.layers[layer].sliding:
                windows[name] = geometry.sliding_window
        return windows

    @property
    def past_names(self) -> list[str]:
        """Decoder inputs that carry the KV cache, in layer order."""
        names = [n for n in self._decoder_inputs if _PAST.match(n)]
        return sorted(names, key=lambda n: (int(_PAST.match(n).group(1)), n))  # type: ignore[union-attr]

    def empty_cache(self) -> KVCache:
        """A zero-length cache shaped from each past input's metadata (batch 1)."""
        tensors = {}
        for name in self.past_names:
            node = self._decoder_inputs[name]
            dims = [d if isinstance(d, int) else None for d in node.shape]
            if len(dims) != 4 or dims[1] is None or dims[3] is None:
                raise EngineError(f"{self.files.decoder.onnx}: cannot size {name} from shape {node.shape}")
            tensors[name] = np.zeros((1, dims[1], 0, dims[3]), dtype=_dtype(node, self.files.decoder.onnx))
        return KVCache(tensors, 0, self._windows)

    def embed(self, input_ids: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """`inputs_embeds` [1,S,H] and `per_layer_inputs` [1,S,L,P] for a token sequence."""
        ids = np.asarray([list(input_ids)], dtype=np.int64)
        embeds, per_layer = self._embed.run(["inputs_embeds", "per_layer_inputs"], {"input_ids": ids})
        self._embed_pages.read(ids.size)
        return np.asarray(embeds), np.asarray(per_layer)

    def decode(
        self, inputs_embeds: np.ndarray, per_layer_inputs: np.ndarray, cache: KVCache
    ) -> tuple[np.ndarray, KVCache]:
        """Run the decoder over new positions (a long prompt in chunks); returns the last position's logits and the
        grown cache."""
        steps = inputs_embeds.shape[1]
        if steps == 0:
            raise EngineError("no positions to decode")
        chunk = self.prefill_chunk if self.prefill_chunk > 0 else steps
        for start in range(0, steps, chunk):
            logits, cache = self._run(
                inputs_embeds[:, start : start + chunk], per_layer_inputs[:, start : start + chunk], cache
            )
        # trimmed on decode steps only: a prompt's cache stays whole, so any of its prefixes can be kept
        return logits, cache.trimmed() if steps == 1 else cache

    def _run(
        self, inputs_embeds: np.ndarray, per_layer_inputs: np.ndarray, cache: KVCache
    ) -> tuple[np.ndarray, KVCache]:
        """One decoder session run over new positions."""
        steps = inputs_embeds.shape[1]
        total = cache.length + steps
        feeds: dict[str, np.ndarray] = {
            "inputs_embeds": inputs_embeds.astype(self._embed_dtype, copy=False),
            "per_layer_inputs": per_layer_inputs.astype(self._embed_dtype, copy=False),
            "attention_mask": np.ones((1, total), dtype=_dtype(self._decoder_inputs["attention_mask"], Path())),
            "position_ids": np.arange(cache.length, total, dtype=np.int64)[None, :],
            **cache.tensors,
        }
        if "num_logits_to_keep" in self._decoder_inputs:
            feeds["num_logits_to_keep"] = np.array(1, dtype=np.int64)
        names = ["logits", *(n.replace("past_key_values.", "present.") for n in self.past_names)]
        self.positions_run += steps
        logits, *present = self._decoder.run(names, feeds, self._returning if steps > 1 else None)
        tensors = {name: np.asarray(value) for name, value in zip(self.past_names, present, strict=True)}
        grown = cache.appended(tensors) if self._present_is_new else KVCache(tensors, total, cache.windows)
        return np.asarray(logits)[0, -1].astype(np.float32), grown

    def forward(self, input_ids: Sequence[int], cache: KVCache | None = None) -> tuple[np.ndarray, KVCache]:
        """Embed `input_ids` and decode them after `cache` (a fresh cache when None)."""
        embeds, per_layer = self.embed(input_ids)
        return self.decode(embeds, per_layer, cache or self.empty_cache())
