"""`edge-agent check-config` and `edge-agent config-schema`."""

from __future__ import annotations

import argparse
import json
import sys

from edge_agent.commands.common import EXIT_CONFIG, add_config_option, load_or_report
from edge_agent.config import Config


def _unservable_tasks(args: argparse.Namespace, config: Config) -> bool:
    """Print the tasks the configured model cannot serve (e.g. a watch task with a text-only export); True if any."""
    from edge_agent.agent.senses import task_input_problems

    problems = task_input_problems(config)
    if problems:
        print(f"{args.config}: the model cannot serve {len(problems)} task(s):", file=sys.stderr)
        for index, problem in problems:
            print(f"  tasks[{index}]: {problem}", file=sys.stderr)
    return bool(problems)


def check_config(args: argparse.Namespace) -> int:
    """Validate a config file: exit 0 when valid, 2 with every problem listed (including tasks the model's files
    cannot serve)."""
    config = load_or_report(args.config)
    if config is None or _unservable_tasks(args, config):
        return EXIT_CONFIG
    if args.json:
        print(config.model_dump_json(indent=2))
    else:
        from edge_agent.app import describe

        print(f"{args.config}: OK: {describe(config)}")
    return 0


def config_schema(_args: argparse.Namespace) -> int:
    """Print the JSON Schema of the config file."""
    schema = Config.model_json_schema()
    schema.update({"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "edge-agent config"})
    print(json.dumps(schema, indent=2))
    return 0


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the config verbs."""
    check = verbs.add_parser("check-config", help="validate a config file (exit 0 valid, 2 invalid)")
    add_config_option(check)
    check.add_argument("--json", action="store_true", help="print the validated config as JSON")
    check.set_defaults(handler=check_config)
    schema = verbs.add_parser("config-schema", help="print the JSON Schema of the config file (for editors)")
    schema.set_defaults(handler=config_schema)
