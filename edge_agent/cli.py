"""The `edge-agent` command line: global options, then one verb per capability."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from edge_agent import __version__
from edge_agent.commands import ask, config, devices, doctor, generate, init, models, run, timeline
from edge_agent.log import setup_logging

# Each module adds its verbs; a verb exists only once its capability does.
VERB_MODULES = (init, run, config, devices, generate, ask, doctor, models, timeline)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every verb that exists in this version."""
    parser = argparse.ArgumentParser(prog="edge-agent", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edge-agent {__version__}")
    parser.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="override logging.level")
    parser.add_argument("--log-format", choices=["text", "json"], help="override logging.format")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for module in VERB_MODULES:
        module.register(verbs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `edge-agent` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level or "info", args.log_format or "text")
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
