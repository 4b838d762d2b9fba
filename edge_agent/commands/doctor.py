"""`edge-agent doctor`: check a node against its config and print one verdict per line."""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict

from edge_agent.commands.common import EXIT_CONFIG, add_config_option, load_or_report
from edge_agent.doctor import Check

EXIT_FAILED = 1
_DESCRIPTION = """\
Check this node against its config: Python, onnxruntime and its providers, the model's files and
checksums, memory for the model, temperature and Raspberry Pi throttling, every configured camera
(one frame) and the microphone, the broker (a real connect with the configured TLS and credentials),
free disk for the spool and the model, and the clock (set, and synchronised by NTP).

Exit codes: 0 when no check failed (warnings allowed; with --strict, none either), 1 when a check
failed, 2 when the config is invalid."""


def render_table(checks: Sequence[Check]) -> str:
    """The checks as aligned columns (name, verdict, detail) with a summary line."""
    width = max([len("CHECK"), *(len(c.name) for c in checks)])
    lines = [f"{'CHECK':<{width}}  VERDICT  DETAIL"]
    lines += [f"{c.name:<{width}}  {c.verdict.upper():<7}  {c.detail}" for c in checks]
    counts = Counter(c.verdict for c in checks)
    lines.append(f"{counts['fail']} failed, {counts['warn']} warning(s), {counts['ok']} ok")
    return "\n".join(lines)


def exit_code(checks: Sequence[Check], strict: bool = False) -> int:
    """1 when a check failed (or, with `strict`, warned), else 0."""
    bad = {"fail", "warn"} if strict else {"fail"}
    return EXIT_FAILED if any(c.verdict in bad for c in checks) else 0


def doctor(args: argparse.Namespace) -> int:
    """Run every check and print the report."""
    config = load_or_report(args.config)
    if config is None:
        return EXIT_CONFIG
    from edge_agent.doctor import run_checks

    checks = run_checks(config, camera_timeout_s=args.timeout, broker_timeout_s=args.timeout)
    print(json.dumps([asdict(c) for c in checks], indent=2) if args.json else render_table(checks))
    return exit_code(checks, args.strict)


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `doctor` verb."""
    parser = verbs.add_parser(
        "doctor",
        help="check this node against its config (exit 0 fine, 1 a check failed, 2 invalid config)",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print a list of {name, verdict, detail} objects")
    parser.add_argument("--strict", action="store_true", help="exit 1 on warnings too")
    parser.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for a camera's frame or the broker (default 5)"
    )
    parser.set_defaults(handler=doctor)
