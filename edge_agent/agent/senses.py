"""What the configured tasks need the model to take in (a watch task images, a voice task audio) and whether the
model's export has the encoder for it: a text-only export cannot serve a watch task. Used by `check-config`,
`doctor` and, at run time, by the watch tasks."""

from __future__ import annotations

from pathlib import Path

from edge_agent.config import Config, VoiceTaskConfig, WatchTaskConfig
from edge_agent.model.store.files import VARIANT_SUFFIXES, ModelFiles, ModelFilesError, locate_model

# task kind -> (the modality it needs, the graph that takes it, how it is said)
_NEEDS = {"watch": ("image", "vision_encoder", "images"), "voice": ("audio", "audio_encoder", "audio")}


def cannot_serve(task: WatchTaskConfig | VoiceTaskConfig, files: ModelFiles) -> str | None:
    """Why the model in `files` cannot answer `task` (it lacks the encoder the task needs), or None when it can."""
    modality, graph, said = _NEEDS[task.kind]
    if files.modalities[modality]:
        return None
    encoder = graph.replace("_", " ")
    missing = f"onnx/{graph}{VARIANT_SUFFIXES.get(files.variant, '')}.onnx"
    return (
        f"task {task.name!r} ({task.kind}) needs {said}, but the model {files.root} ({files.variant}) has no "
        f"{encoder} ({missing} is missing: a text-only export); use an export with it, or remove the task"
    )


def _models(config: Config) -> list[tuple[str, Path, str]]:
    model = config.model
    found = [("model", model.path, str(model.variant))]
    if model.fallback_path is not None or model.fallback_variant is not None:
        found.append(
            ("fallback model", model.fallback_path or model.path, str(model.fallback_variant or model.variant))
        )
    return found


def task_input_problems(config: Config) -> list[tuple[int, str]]:
    """(task index, problem) for every task the configured model (or its fallback) cannot serve. A model whose
    files cannot be found is not judged here (loading it reports that)."""
    problems: list[tuple[int, str]] = []
    for which, root, variant in _models(config):
        try:
            files = locate_model(root, variant, verify=False)
        except (ModelFilesError, OSError):
            continue
        for index, task in enumerate(config.tasks):
            problem = cannot_serve(task, files)
            if problem is not None:
                problems.append((index, problem if which == "model" else f"{problem} (the {which})"))
    return problems
