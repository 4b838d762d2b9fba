"""Pieces shared by several verbs: the --config option and loading it with readable errors."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from edge_agent.config import Config, ConfigError, load_config
from edge_agent.log import json_logging

DEFAULT_CONFIG = "/etc/edge-agent/config.yaml"
EXIT_CONFIG = 2


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """-c/--config with the environment variable and system default."""
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(os.environ.get("EDGE_AGENT_CONFIG", DEFAULT_CONFIG)),
        help=f"config file (default: $EDGE_AGENT_CONFIG or {DEFAULT_CONFIG})",
    )


def load_or_report(path: Path) -> Config | None:
    """The validated config, or None after printing every problem to stderr."""
    try:
        return load_config(path)
    except ConfigError as exc:
        if json_logging():  # --log-format json: every line on stderr is a JSON record
            log = logging.getLogger("edge_agent.config")
            log.error("%s: invalid config (%d problem(s))", path, len(exc.issues))
            for issue in exc.issues:
                log.error("%s: %s", path, issue.render(exc.source))
            return None
        print(f"{path}: invalid config ({len(exc.issues)} problem(s)):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue.render(exc.source)}", file=sys.stderr)
        return None
