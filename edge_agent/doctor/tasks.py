"""The doctor's `tasks` line: the model (and its fallback) can take what every task needs (images, audio)."""

from __future__ import annotations

from edge_agent.agent.senses import task_input_problems
from edge_agent.config import Config
from edge_agent.doctor.check import Check, fail, ok, warn
from edge_agent.model.store.files import ModelFilesError, locate_model


def check_tasks(config: Config) -> Check:
    """Fails, naming each task, when the model has no encoder for what a task needs (a watch task and a text-only
    export); a model whose files are missing is the `model` line's to report."""
    problems = task_input_problems(config)
    if problems:
        return fail("tasks", "; ".join(problem for _index, problem in problems))
    kinds = sorted({task.kind for task in config.tasks})
    if not kinds:
        return ok("tasks", "none configured")
    try:
        locate_model(config.model.path, str(config.model.variant), verify=False)
    except (ModelFilesError, OSError):
        return warn("tasks", "not checked: the model's files were not found")
    return ok("tasks", f"{len(config.tasks)} task(s) ({', '.join(kinds)}): the model takes what each needs")
