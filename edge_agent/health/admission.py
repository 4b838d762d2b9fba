"""Model admission: estimate the memory a model needs before loading it, then load it, fall back or refuse."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from edge_agent.config.model import ModelConfig
from edge_agent.config.node import HealthConfig
from edge_agent.messages import ModelSizes

MIB = 2**20
INT8_ACTIVATIONS = 4  # the MatMulNBits accuracy level (int8 activations) at which onnxruntime keeps a repacked copy
Decision = Literal["load", "fallback", "refuse"]


def _mb(value_bytes: float) -> str:
    value = value_bytes / MIB
    return f"{value:.0f}" if value >= 10 else f"{value:.2f}"


@dataclass(frozen=True)
class MemoryEstimate:
    """What loading one model variant is expected to take, in bytes."""

    path: str
    variant: str
    context: int
    files_bytes: int
    kv_cache_bytes: int
    margin_bytes: int
    repack_bytes: int = 0  # what onnxruntime keeps beyond the files for INT4 weights at the levels they will run

    @property
    def total_bytes(self) -> int:
        """Files + INT4 repack + KV cache + margin."""
        return self.files_bytes + self.repack_bytes + self.kv_cache_bytes + self.margin_bytes

    @property
    def total_mb(self) -> float:
        """The total in MiB."""
        return self.total_bytes / MIB

    def describe(self) -> str:
        """'needs ~2140 MB (files 1610 MB + KV cache 230 MB + margin 300 MB)', with '+ INT4 repack N MB' after the
        files where onnxruntime keeps one."""
        repack = f" + INT4 repack {_mb(self.repack_bytes)} MB" if self.repack_bytes else ""
        return (
            f"needs ~{_mb(self.total_bytes)} MB (files {_mb(self.files_bytes)} MB{repack} + KV cache "
            f"{_mb(self.kv_cache_bytes)} MB + margin {_mb(self.margin_bytes)} MB)"
        )

    def label(self) -> str:
        """'gemma-4-E4B-it-ONNX (q4)'."""
        return f"{Path(self.path).name} ({self.variant})"

    def to_json(self) -> dict[str, Any]:
        """The estimate in MiB, rounded to 0.1, for logs and MQTT."""
        return {
            "path": self.path,
            "variant": self.variant,
            "context": self.context,
            "files_mb": round(self.files_bytes / MIB, 1),
            "repack_mb": round(self.repack_bytes / MIB, 1),
            "kv_cache_mb": round(self.kv_cache_bytes / MIB, 1),
            "margin_mb": round(self.margin_bytes / MIB, 1),
            "total_mb": round(self.total_mb, 1),
        }


def repack_bytes(sizes: ModelSizes, int8_activations: bool, accuracy_level: int | None) -> int:
    """What onnxruntime keeps beyond the files for the INT4 weights at the accuracy levels the engine gives the
    decoder (`model.int8_activations`, `model.accuracy_level`): on x86 level 4 adds a float32 copy of the scales
    and block sums (0.4x the MatMulNBits bytes at block 32); `sizes` has the figures for this machine."""
    every, stored = sizes.level4_repack_bytes, sizes.stored_level4_repack_bytes
    if accuracy_level is not None:
        return every if accuracy_level == INT8_ACTIVATIONS else stored
    return every if int8_activations else stored


def estimate_memory(
    sizes: ModelSizes,
    context: int,
    margin_pct: float,
    margin_mb: float,
    trim_sliding: bool = False,
    *,
    repack: int = 0,
) -> MemoryEstimate:
    """Graph files and sidecars of the variant + `repack` bytes of repacked INT4 weights (`repack_bytes`) + KV
    cache for `context` tokens + a margin."""
    # TextEngine keeps every position in sliding layers too (the graph applies the window through the mask),
    # so sliding layers count the whole context unless `trim_sliding` says the engine keeps only the window.
    kv_bytes = sizes.kv_cache_bytes(context, trim_sliding)
    # An estimate, not a measurement: the margin stands for onnxruntime's arena, activations, the previous and
    # the next KV cache alive together during a decoder run, and the tokenizer; it is not derived from the graphs.
    margin = round((sizes.files_bytes + kv_bytes) * margin_pct / 100 + margin_mb * MIB)
    return MemoryEstimate(sizes.root, sizes.variant, context, sizes.files_bytes, kv_bytes, margin, repack)


@dataclass(frozen=True)
class Admission:
    """The decision before loading a model: its estimate, the fallback's, the memory budget and why."""

    decision: Decision
    reason: str
    primary: MemoryEstimate
    fallback: MemoryEstimate | None
    budget_mb: float | None
    memory_available_mb: float | None
    memory_limit_mb: float | None

    @property
    def chosen(self) -> MemoryEstimate | None:
        """The model to load, or None when refused."""
        return {"load": self.primary, "fallback": self.fallback, "refuse": None}[self.decision]

    def to_json(self) -> dict[str, Any]:
        """Decision, reason, budget and both estimates, for logs and MQTT."""
        return {
            "decision": self.decision,
            "reason": self.reason,
            "budget_mb": None if self.budget_mb is None else round(self.budget_mb, 1),
            "memory_available_mb": None if self.memory_available_mb is None else round(self.memory_available_mb, 1),
            "memory_limit_mb": self.memory_limit_mb,
            "primary": self.primary.to_json(),
            "fallback": self.fallback.to_json() if self.fallback else None,
        }


def _budget(
    memory_available_mb: float | None, memory_limit_mb: float | None, available_source: str
) -> tuple[float | None, str]:
    if memory_limit_mb is not None and (memory_available_mb is None or memory_limit_mb <= memory_available_mb):
        return memory_limit_mb, f"memory_limit_mb {memory_limit_mb:g}"
    return memory_available_mb, available_source


def decide(
    primary: MemoryEstimate,
    fallback: MemoryEstimate | None,
    memory_available_mb: float | None,
    memory_limit_mb: float | None = None,
    available_source: str = "memory available now",
) -> Admission:
    """Load the primary if it fits the lower of available memory and the limit, else the fallback, else refuse."""
    budget, source = _budget(memory_available_mb, memory_limit_mb, available_source)

    def admission(decision: Decision, reason: str) -> Admission:
        return Admission(decision, reason, primary, fallback, budget, memory_available_mb, memory_limit_mb)

    if budget is None:
        return admission("load", f"{primary.label()} {primary.describe()}; available memory unknown, loading it")
    available = f"{_mb(budget * MIB)} MB available ({source})"
    if primary.total_mb <= budget:
        return admission("load", f"{primary.label()} {primary.describe()}; {available}")
    if fallback is not None and fallback.total_mb <= budget:
        return admission(
            "fallback",
            f"{primary.label()} {primary.describe()}, more than the {available}; "
            f"falling back to {fallback.label()}, which {fallback.describe()}",
        )
    also = f"; fallback {fallback.label()} {fallback.describe()}" if fallback else ""
    return admission("refuse", f"not loading {primary.label()}: {primary.describe()}{also}; {available}")


def fallback_location(model: ModelConfig) -> tuple[Path, str] | None:
    """Directory and variant of the configured fallback model, or None."""
    if model.fallback_path is None and model.fallback_variant is None:
        return None
    return model.fallback_path or model.path, model.fallback_variant or model.variant


def admit(
    model: ModelConfig,
    health: HealthConfig,
    memory_available_mb: float | None,
    sizes_at: Callable[[Path, str], ModelSizes],
    trim_sliding: bool = False,
    *,
    available_source: str = "memory available now",
) -> Admission:
    """Estimate the configured model and its fallback from their sizes (read by `sizes_at`) and decide;
    `memory_available_mb` comes from `Probes.memory()`, the view the degradation ladder reads too."""

    def estimate(root: Path, variant: str) -> MemoryEstimate:
        sizes = sizes_at(root, variant)
        sizes = sizes.with_float16_cache() if model.kv_cache == "float16" else sizes
        repack = repack_bytes(sizes, model.int8_activations, model.accuracy_level)
        return estimate_memory(
            sizes,
            model.max_context,
            health.admission_margin_pct,
            health.admission_margin_mb,
            trim_sliding,
            repack=repack,
        )

    location = fallback_location(model)
    primary = estimate(model.path, model.variant)
    fallback = estimate(*location) if location else None
    return decide(primary, fallback, memory_available_mb, model.memory_limit_mb, available_source)


def swap_back_mb(admission: Admission) -> float:
    """Memory the primary model needs beyond the fallback (by their estimates): what the ladder must see free,
    beyond its own thresholds, before it swaps the primary back in (0 without a fallback)."""
    if admission.fallback is None:
        return 0.0
    return max(0.0, admission.primary.total_mb - admission.fallback.total_mb)
