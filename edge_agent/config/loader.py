"""Load the YAML config: ${ENV} substitution, validation, and errors that name key path and line."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge_agent.config.errors import describe_error, error_path, expects_boolean
from edge_agent.config.partial import partial_cross_check
from edge_agent.config.schema import Config, KeyPath, cross_check

log = logging.getLogger(__name__)
_BOOL_TAG = "tag:yaml.org,2002:bool"
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


@dataclass
class _SourceMap:
    """What the YAML text says beyond the data: each key's line, duplicate keys, and YAML 1.1 booleans."""

    lines: dict[KeyPath, int] = field(default_factory=dict)
    dupes: list[KeyPath] = field(default_factory=list)
    word_booleans: dict[KeyPath, tuple[str, int]] = field(default_factory=dict)  # unquoted ON/off/yes/No

    def walk(self, node: yaml.Node, path: KeyPath = ()) -> None:
        """Record the nodes under `node`."""
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                key = str(key_node.value)
                child = (*path, key)
                if key in seen:
                    self.dupes.append(child)
                seen.add(key)
                self.lines[child] = key_node.start_mark.line + 1
                self.walk(value_node, child)
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                self.lines.setdefault((*path, index), item.start_mark.line + 1)
                self.walk(item, (*path, index))
        elif node.tag == _BOOL_TAG and str(node.value).lower() not in ("true", "false"):
            self.word_booleans[path] = (str(node.value), node.start_mark.line + 1)

    def boolean_hint(self, path: KeyPath, data: Any) -> str:
        """Why a problem at `path` may come from an unquoted ON/OFF/yes/no under it (or at it), or ''; not for
        keys that take a boolean (`on_motion: off` is meant)."""
        for where, (word, line) in self.word_booleans.items():
            if expects_boolean(where, data):
                continue
            if where[: len(path)] == path or path[: len(where)] == where:
                return f' (YAML reads unquoted ON/OFF/yes/no as booleans: quote them, e.g. "{word}" on line {line})'
        return ""


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


def _compose(text: str, source: str) -> tuple[dict[str, Any], _SourceMap]:
    """The data of the YAML text and its source map; a syntax error or a non-mapping is a ConfigError."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(source, [ConfigIssue("", f"YAML syntax error: {problem}", line)]) from None
    where = _SourceMap()
    if root is not None:
        where.walk(root)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "the file must be a mapping of sections", 1)])
    return data, where


def _validation_problems(exc: ValidationError, data: Any) -> list[tuple[KeyPath, str]]:
    """One problem per key path, the messages of a union's members merged."""
    messages: dict[KeyPath, list[str]] = {}
    for error in exc.errors():
        path = error_path(error, data)
        text = describe_error(error, path, data)
        if text not in messages.setdefault(path, []):
            messages[path].append(text)
    return [(path, _join(texts)) for path, texts in messages.items()]


def _overlaps(path: KeyPath, others: list[KeyPath]) -> bool:
    """Whether `path` is one of `others`, inside one, or holds one."""
    return any(path[: len(other)] == other or other[: len(path)] == path for other in others)


def parse_config(
    text: str, source: str = "<config>", base_dir: Path | None = None, env: Mapping[str, str] | None = None
) -> Config:
    """Validate config text; raises ConfigError listing every problem (syntax aside, all in one pass: unset
    environment variables, invalid values and cross-references) with its key path and line."""
    data, where = _compose(text, source)
    problems: list[tuple[KeyPath, str]] = [(p, "duplicate key") for p in where.dupes]
    missing: list[tuple[KeyPath, str]] = []
    data = _substitute(data, (), os.environ if env is None else env, missing)
    problems += [(p, f"environment variable {name} is not set") for p, name in missing]
    context = {"base_dir": base_dir}
    config: Config | None = None
    try:
        config = Config.model_validate(data, context=context)
    except ValidationError as exc:
        unset = [p for p, _ in missing]  # an unset variable reads as '': its key's own errors say nothing more
        problems += [(p, m) for p, m in _validation_problems(exc, data) if not _overlaps(p, unset)]
    cross = cross_check(config) if config is not None else partial_cross_check(data, context)
    reported = [p for p, _ in problems]
    problems += [(p, m) for p, m in cross if config is not None or not _overlaps(p, reported)]
    if problems:
        issues = [
            ConfigIssue(format_path(p), m + where.boolean_hint(p, data), _line_of(p, where.lines)) for p, m in problems
        ]
        raise ConfigError(source, issues)
    assert config is not None
    return config


def load_config(path: Path | str, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file (relative paths inside it are taken from its directory); a valid file that
    will not do what it seems to say is logged at WARNING."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(str(file), [ConfigIssue("", f"cannot read the file: {reason}", None)]) from None
    config = parse_config(text, source=file.name, base_dir=file.resolve().parent, env=env)
    from edge_agent.config.advice import config_warnings

    for warning in config_warnings(config, file):
        log.warning("%s: %s", file.name, warning)
    return config
