"""The model section: which Gemma 4 export to run, how, and with which load-time rewrites and caches."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge_agent.config.base import AnyPath, DirPath, Section

ModelVariant = Literal["q4", "q4f16", "fp16", "fp32", "int8", "uint8", "quantized", "bnb4"]
ImageBudget = Literal[70, 140, 280, 560, 1120]


class ModelConfig(Section):
    """The Gemma 4 ONNX export to run."""

    path: DirPath = Field(description="Directory of a Gemma 4 ONNX export (onnx/, config.json, tokenizer.json, ...).")
    variant: ModelVariant = Field(
        default="q4",
        description="Which graphs to load: q4 -> onnx/*_q4.onnx, fp16 -> *_fp16, q4f16, fp32 -> no suffix.",
    )
    providers: list[str] = Field(
        default_factory=list,
        description="onnxruntime execution providers in order of preference; empty = the best "
        "installed one (CUDA on a Jetson with the GPU wheel, else CPU).",
    )
    intra_op_threads: int | None = Field(
        default=None, ge=1, le=256, description="Threads inside one operator; default: one per core."
    )
    inter_op_threads: int | None = Field(
        default=None, ge=1, le=256, description="Threads across independent operators; default: 1."
    )
    max_context: int = Field(
        default=4096, ge=64, le=131072, description="Longest prompt + answer in tokens (sizes the KV cache)."
    )
    max_new_tokens: int = Field(
        default=256,
        ge=1,
        le=8192,
        description="Longest answer in tokens; a generation step that may call a tool gets at least 128, so that no "
        "call is cut short.",
    )
    image_budget: ImageBudget = Field(
        default=280, description="Image soft tokens per frame: 70, 140, 280, 560 or 1120."
    )
    thinking: bool = Field(default=False, description="Let the model think before it answers (slower).")
    fallback_path: DirPath | None = Field(
        default=None,
        description="A smaller export (e.g. E2B for an E4B) used when this one does not fit in memory, and at "
        "degradation level 4; default: none, or model.path itself when only 'fallback_variant' is set.",
    )
    fallback_variant: ModelVariant | None = Field(
        default=None, description="Variant of the fallback model; default: model.variant."
    )
    memory_limit_mb: int | None = Field(
        default=None,
        ge=64,
        description="Most memory (MB) the model may take: admission compares its estimate with the lower of this "
        "and the memory available, and falls back or refuses beyond it; default: the memory available.",
    )

    int8_activations: bool = Field(
        default=True,
        description="INT4 kernels (MatMulNBits) compute with int8 activations (accuracy level 4) where the decoder "
        "file leaves the level unset: about 2x faster decode on CPU for a small added error, but onnxruntime repacks "
        "the weights larger (x86: +40% of the INT4 weights' memory); false: the file's own levels (unset = fp32).",
    )
    accuracy_level: Literal[0, 1, 2, 3, 4] | None = Field(
        default=None,
        description="Force this MatMulNBits accuracy level on every INT4 kernel of the decoder, overriding the file "
        "and int8_activations (0: fp32, 4: int8 activations); default: unset.",
    )
    quantize_head: Literal["auto", "keep", "int8", "int4"] = Field(
        default="auto",
        description="A float lm_head (the largest read per token at a 262k vocabulary) becomes 'int8' or 'int4' "
        "MatMulNBits (block 32, symmetric); 'auto': int8 when the rest of the decoder is INT4 (a q4 export that "
        "left the head in float), else as exported; 'keep': always as exported.",
    )
    kv_cache: Literal["float32", "float16"] = Field(
        default="float32",
        description="How the KV cache is kept between steps: 'float16' takes half its memory (E2B: 6 instead of 12 KB "
        "per position beyond the sliding window) for rounding every key and value (KL 1e-6 to 3e-5 on the fixtures, "
        "far below what INT4 weights cost; not faster); 'float32': as exported.",
    )
    prefix_cache_mb: float = Field(
        default=64.0,
        ge=0,
        description="Memory for the KV caches of recently prefilled text prefixes (system turns, tool declarations), "
        "reused by the next request that starts with one; 0 turns prefix reuse across requests off.",
    )
    graph_cache_dir: AnyPath | None = Field(
        default=None,
        description="Where the rewritten decoder graph is cached: the small graph and any weights a rewrite makes "
        "(a quantized head), never a copy of the export's weights; default: $CACHE_DIRECTORY/graphs under systemd, "
        "else $XDG_CACHE_HOME/edge-agent/graphs (~/.cache), else <model.path>/.cache/graphs when writable.",
    )

    @model_validator(mode="after")
    def _fallback_differs(self) -> ModelConfig:
        if self.fallback_path == self.path and self.fallback_variant in (None, self.variant):
            raise ValueError("'fallback_path' is the model itself; give another directory or a 'fallback_variant'")
        if self.fallback_path is None and self.fallback_variant == self.variant:
            raise ValueError("'fallback_variant' is the model's own variant")
        return self
