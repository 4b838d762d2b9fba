"""Warnings about a valid config that will not do what it seems to say (logged by load_config)."""

from __future__ import annotations

import os
from pathlib import Path, PurePath

from edge_agent.config.agent import VoiceTaskConfig
from edge_agent.config.schema import Config

TOOL_CALL_MIN_TOKENS = 128
"""Least token budget of a generation step that may call a tool: a call cut short would be lost."""

SERVICE_CONFIG_DIR = PurePath("/etc/edge-agent")
HIDDEN_BY_PROTECT_HOME = (PurePath("/home"), PurePath("/root"), PurePath("/run/user"))


def _tool_callers(config: Config) -> list[str]:
    """Who may call a tool: voice tasks with tools, and questions on `ask` when agent.ask_tools is on."""
    if not config.tools:
        return []
    callers = [
        f"voice task '{task.name}'"
        for task in config.tasks
        if isinstance(task, VoiceTaskConfig) and task.tools != [] and task.max_steps > 0
    ]
    if config.agent.ask_tools and config.agent.ask_max_steps > 0:
        callers.append("questions on ask")
    return callers


def token_floor_warning(config: Config) -> str | None:
    """model.max_new_tokens below the tool-call floor, when something may call a tool."""
    callers = _tool_callers(config)
    if config.model.max_new_tokens >= TOOL_CALL_MIN_TOKENS or not callers:
        return None
    return (
        f"model.max_new_tokens is {config.model.max_new_tokens}, but a step that may call a tool "
        f"({', '.join(callers)}) gets at least {TOOL_CALL_MIN_TOKENS} tokens so that no call is cut short; "
        f"set it to {TOOL_CALL_MIN_TOKENS} or more to make it the real limit"
    )


def _for_the_service(config_file: Path | None) -> bool:
    """Whether this config is the systemd service's: under /etc/edge-agent, or read by the service itself."""
    if "INVOCATION_ID" in os.environ:  # set by systemd for the processes of a unit
        return True
    return config_file is not None and SERVICE_CONFIG_DIR in config_file.resolve().parents


def protect_home_warnings(config: Config, config_file: Path | None) -> list[str]:
    """Model paths the unit cannot see (ProtectHome=yes hides /home, /root and /run/user from the service)."""
    if not _for_the_service(config_file):
        return []
    paths = {"model.path": config.model.path, "model.fallback_path": config.model.fallback_path}
    return [
        f"{key} {path} is under {hidden}, which the edge-agent service cannot read (its unit sets "
        f"ProtectHome=yes): put the model in /var/lib/edge-agent/models (`edge-agent models pull ... --dir "
        f"/var/lib/edge-agent/models`)"
        for key, path in paths.items()
        if path is not None
        for hidden in HIDDEN_BY_PROTECT_HOME
        if hidden in PurePath(path).parents
    ]


def config_warnings(config: Config, config_file: Path | None = None) -> list[str]:
    """Every warning about a valid config, one line each."""
    warnings = protect_home_warnings(config, config_file)
    if floor := token_floor_warning(config):
        warnings.append(floor)
    return warnings
