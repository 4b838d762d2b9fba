"""`edge-agent run`: the daemon."""

from __future__ import annotations

import argparse
import asyncio

from edge_agent.commands.common import EXIT_CONFIG, add_config_option, load_or_report
from edge_agent.log import setup_logging


def run(args: argparse.Namespace) -> int:
    """Load the config and run the daemon until SIGTERM/SIGINT."""
    config = load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    # native=True: what OpenCV, FFmpeg and onnxruntime print on stderr goes through our log as well
    setup_logging(args.log_level or config.logging.level, args.log_format or config.logging.format, native=True)
    from edge_agent import app

    try:
        return asyncio.run(app.run(config, config_path=args.config))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 130


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `run` verb."""
    parser = verbs.add_parser("run", help="run the daemon")
    add_config_option(parser)
    parser.set_defaults(handler=run)
