"""Load the YAML config: ${ENV} substitution, validation, and errors that name key path and line."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge_agent.config.errors import describe_error, error_path
from edge_agent.config.schema import Config, KeyPath, cross_check

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config file."""

    path: str
    message: str
    line: int | None

    def render(self, source: str) -> str:
        """`key.path: message (file:line)`."""
        where = f"{source}:{self.line}" if self.line else source
        return f"{self.path or '(top level)'}: {self.message} ({where})"


class ConfigError(Exception):
    """A config file that cannot be used; carries every problem found."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = sorted(issues, key=lambda issue: issue.line or 0)
        super().__init__("\n".join(issue.render(source) for issue in self.issues))


def format_path(path: KeyPath) -> str:
    """('cameras', 0, 'fps') -> 'cameras[0].fps'."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _line_map(node: yaml.Node, path: KeyPath, lines: dict[KeyPath, int], dupes: list[KeyPath]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = (*path, key)
            if key in seen:
                dupes.append(child)
            seen.add(key)
            lines[child] = key_node.start_mark.line + 1
            _line_map(value_node, child, lines, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines.setdefault((*path, index), item.start_mark.line + 1)
            _line_map(item, (*path, index), lines, dupes)


def _line_of(path: KeyPath, lines: Mapping[KeyPath, int]) -> int | None:
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def _substitute(value: Any, path: KeyPath, env: Mapping[str, str], missing: list[tuple[KeyPath, str]]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, (*path, str(k)), env, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, (*path, i), env, missing) for i, v in enumerate(value)]
    if not isinstance(value, str) or "$" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        missing.append((path, name))
        return ""

    return _ENV_REF.sub(replace, value)


def _join(texts: list[str]) -> str:
    """Merge the messages of a union's members: 'must be a string or must be an integer' -> one."""
    if len(texts) > 1 and all(t.startswith("must be ") for t in texts):
        kinds = [t.removeprefix("must be ").split(" (got ")[0] for t in texts]
        got = texts[0].partition(" (got ")[2]
        return "must be " + " or ".join(kinds) + (f" (got {got}" if got else "")
    return "; ".join(texts)


def parse_config(
    text: str, source: str = "<config>", base_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Validate config text; raises ConfigError listing every problem with its key path and line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(source, [ConfigIssue("", f"YAML syntax error: {problem}", line)]) from None
    lines: dict[KeyPath, int] = {}
    dupes: list[KeyPath] = []
    if root is not None:
        _line_map(root, (), lines, dupes)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "the file must be a mapping of sections", 1)])
    issues = [ConfigIssue(format_path(p), "duplicate key", lines.get(p)) for p in dupes]
    missing: list[tuple[KeyPath, str]] = []
    data = _substitute(data, (), os.environ if env is None else env, missing)
    issues += [
        ConfigIssue(format_path(p), f"environment variable {name} is not set", _line_of(p, lines))
        for p, name in missing
    ]
    if issues:
        raise ConfigError(source, issues)
    try:
        config = Config.model_validate(data, context={"base_dir": base_dir})
    except ValidationError as exc:
        messages: dict[KeyPath, list[str]] = {}
        for error in exc.errors():
            path = error_path(error, data)
            text = describe_error(error, path)
            if text not in messages.setdefault(path, []):
                messages[path].append(text)
        for path, texts in messages.items():
            issues.append(ConfigIssue(format_path(path), _join(texts), _line_of(path, lines)))
        raise ConfigError(source, issues) from None
    problems = cross_check(config)
    if problems:
        raise ConfigError(source, [ConfigIssue(format_path(p), msg, _line_of(p, lines)) for p, msg in problems])
    return config


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; relative paths inside it are taken from its directory."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(str(file), [ConfigIssue("", f"cannot read the file: {reason}", None)]) from None
    return parse_config(text, source=file.name, base_dir=file.resolve().parent, env=env)
