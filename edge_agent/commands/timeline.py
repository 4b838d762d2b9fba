"""`edge-agent timeline`: the node's recorded events, read from its timeline file (also while the daemon runs)."""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import time

from pydantic import ValidationError

from edge_agent.commands.common import EXIT_CONFIG, add_config_option, load_or_report
from edge_agent.timeline import TimelineQuery, database_path
from edge_agent.timeline.entries import KINDS, Entry
from edge_agent.timeline.store import read_entries

EXIT_UNREADABLE = 1
TEXT_COLUMNS = 100  # characters of an entry's text in the table


def line_of(entry: Entry) -> str:
    """One table row: time, kind, task, camera, text (and the snapshot file when there is one)."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.ts))
    text = " ".join(entry.text.split())
    text = text if len(text) <= TEXT_COLUMNS else text[: TEXT_COLUMNS - 3] + "..."
    snapshot = f"  [{entry.snapshot_file}]" if entry.snapshot_file else ""
    return f"{when}  {entry.kind:<9}  {entry.task or '-':<12}  {entry.camera or '-':<10}  {text}{snapshot}"


def show_timeline(args: argparse.Namespace) -> int:
    """Print the matching entries, newest first (a table, or JSON lines' array with --json)."""
    config = load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    try:
        query = TimelineQuery(
            since=args.since, until=args.until, kind=args.kind, task=args.task, camera=args.camera, grep=args.grep
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where, why = ".".join(str(part) for part in first["loc"]), first["msg"].removeprefix("Value error, ")
        print(f"edge-agent timeline: --{where}: {why}", file=sys.stderr)
        return EXIT_CONFIG
    if args.limit < 1:
        print("edge-agent timeline: --limit: at least 1", file=sys.stderr)
        return EXIT_CONFIG
    path = database_path(config)
    try:
        entries = read_entries(path, query, args.limit)
    except FileNotFoundError:
        print(f"edge-agent timeline: no timeline at {path} (nothing recorded yet?)", file=sys.stderr)
        return EXIT_UNREADABLE
    except sqlite3.Error as exc:
        print(f"edge-agent timeline: cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE
    if args.json:
        print(json.dumps([entry.to_json() for entry in entries], indent=2))
    else:
        for entry in entries:
            print(line_of(entry))
        print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'} ({path})", file=sys.stderr)
    return 0


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the timeline verb."""
    parser = verbs.add_parser("timeline", help="show recorded answers, motion, utterances and tool calls")
    add_config_option(parser)
    parser.add_argument("--since", help="from this time: 24h, 30m, 7d, an ISO time or epoch seconds")
    parser.add_argument("--until", help="up to this time (same forms)")
    parser.add_argument("--kind", help=f"only these kinds, comma-separated: {', '.join(KINDS)}")
    parser.add_argument("--task", help="only this task")
    parser.add_argument("--camera", help="only this camera")
    parser.add_argument("--grep", help="only entries whose text contains this")
    parser.add_argument("--limit", type=int, default=100, help="most entries shown, newest first (default: 100)")
    parser.add_argument("--json", action="store_true", help="print a JSON array of the entries")
    parser.set_defaults(handler=show_timeline)
