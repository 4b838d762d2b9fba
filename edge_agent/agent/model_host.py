"""The daemon's loaded model: admission, sessions, tokenizer and grammar compiler, built once per model setting."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from edge_agent.config import HealthConfig, ModelConfig
from edge_agent.health.admission import Admission, admit, fallback_location
from edge_agent.health.probes import Memory, Probes
from edge_agent.model.runtime.answer import Answerer
from edge_agent.model.runtime.constrain import ConstraintFactory
from edge_agent.model.runtime.engine import EngineOptions, TextEngine
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import ModelFiles, locate_model
from edge_agent.model.store.geometry import sizes_at
from edge_agent.model.store.verified import VerifiedCache

log = logging.getLogger(__name__)


class ModelRefusedError(Exception):
    """Admission decided the model does not fit in memory."""


@dataclass
class LoadedModel:
    """Everything inference needs, for one model directory and variant."""

    config: ModelConfig
    files: ModelFiles
    answerer: Answerer
    tokenizer: Tokenizer
    constraints: ConstraintFactory
    admission: Admission
    load_s: float
    fallback: bool = False  # the configured fallback model is the one loaded
    admitted_fallback: bool = False  # ... because the primary did not fit at all (no point swapping back)

    @property
    def label(self) -> str:
        """What answers say produced them, e.g. 'gemma-4-e2b-it (q4)'."""
        return f"{self.files.root.name} ({self.files.variant})"

    @property
    def eos_ids(self) -> frozenset[int]:
        """Tokens that end the model's turn."""
        ids = set(self.files.generation.eos_token_ids)
        ids.add(self.tokenizer.token_id("<turn|>"))
        return frozenset(ids)

    @property
    def max_context(self) -> int:
        """The configured context, capped by what the model was trained for."""
        return min(self.config.max_context, self.files.info.max_position_embeddings)


def load_model(
    model: ModelConfig,
    health: HealthConfig,
    use_fallback: bool = False,
    memory: Callable[[], Memory | None] | None = None,
) -> LoadedModel:
    """Admission, then the sessions of the chosen model (checksums verified, or known verified and unchanged);
    ModelRefusedError when nothing fits. `use_fallback` loads the configured fallback (degradation level 4) even
    when the primary would fit. `memory` is the ladder's memory view (`Probes().memory`, cgroup-aware, by default)."""
    started = time.monotonic()
    seen = (memory or Probes().memory)()
    available_mb = None if seen is None else seen.available_mb
    source = "memory available now" if seen is None else f"memory available now ({seen.limited_by})"
    admission = admit(model, health, available_mb, sizes_at, available_source=source)
    log.info("model admission: %s: %s", admission.decision, admission.reason)
    if admission.decision == "refuse":
        raise ModelRefusedError(admission.reason)
    root, variant = model.path, str(model.variant)
    location = fallback_location(model)
    fallback = location is not None and (admission.decision == "fallback" or use_fallback)
    if fallback:
        assert location is not None
        root, variant = location
    verified = VerifiedCache.for_model(root)
    skipped = verified.hashes_skipped
    files = locate_model(root, variant, verify=True, verified=verified)
    if verified.hashes_skipped > skipped:
        log.info("model files: %d verified before and unchanged, not hashed again", verified.hashes_skipped - skipped)
    options = EngineOptions.from_config(model)
    engine = TextEngine(files, options)
    tokenizer = Tokenizer(files.root)
    constraints = ConstraintFactory(tokenizer, files.tokenizer_json, files.info.vocab_size)
    loaded = LoadedModel(
        model,
        files,
        Answerer(engine, tokenizer, round(model.prefix_cache_mb * 2**20)),
        tokenizer,
        constraints,
        admission,
        time.monotonic() - started,
        fallback=fallback,
        admitted_fallback=admission.decision == "fallback",
    )
    log.info("model loaded: %s in %.1f s (providers %s)", loaded.label, loaded.load_s, ", ".join(engine.providers))
    return loaded
