"""The `edge-agent` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from edge_agent import __version__
from edge_agent.config import Config, ConfigError, load_config
from edge_agent.log import setup_logging

DEFAULT_CONFIG = "/etc/edge-agent/config.yaml"
EXIT_CONFIG = 2


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        type=Path,
        default=Path(os.environ.get("EDGE_AGENT_CONFIG", DEFAULT_CONFIG)),
        help=f"config file (default: $EDGE_AGENT_CONFIG or {DEFAULT_CONFIG})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb that exists in this version."""
    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override logging.level")
    parser.add_argument("--log-format", choices=["text", "json"], help="override logging.format")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    run = verbs.add_parser("run", help="run the daemon")
    _config_arg(run)
    check = verbs.add_parser("check-config", help="validate a config file (exit 0 valid, 2 invalid)")
    _config_arg(check)
    check.add_argument("--json", action="store_true", help="print the validated config as JSON")
    verbs.add_parser("config-schema", help="print the JSON Schema of the config file (for editors)")
    return parser


def _load(path: Path) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print(f"{path}: invalid config ({len(exc.issues)} problem(s)):", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue.render(exc.source)}", file=sys.stderr)
        return None


def _check_config(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    if args.json:
        print(config.model_dump_json(indent=2))
    else:
        from edge_agent.app import describe

        print(f"{args.config}: OK: {describe(config)}")
    return 0


def _config_schema() -> int:
    schema = Config.model_json_schema()
    schema.update({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "edge-agent config"})
    print(json.dumps(schema, indent=2))
    return 0


def _run(args: argparse.Namespace) -> int:
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    setup_logging(args.log_level or config.logging.level, args.log_format or config.logging.format)
    from edge_agent import app

    try:
        return asyncio.run(app.run(config))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edge-agent` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or "info", args.log_format or "text")
    if args.verb == "check-config":
        return _check_config(args)
    if args.verb == "config-schema":
        return _config_schema()
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
