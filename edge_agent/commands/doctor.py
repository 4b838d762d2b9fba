"""`edge-agent doctor`: check a node against its config and print one verdict per line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from edge_agent.commands.common import DEFAULT_CONFIG, EXIT_CONFIG, add_config_option
from edge_agent.config import Config, ConfigError, load_config
from edge_agent.doctor import Check, fail

EXIT_FAILED = 1
_DESCRIPTION = """\
Check this node against its config: Python, onnxruntime and its providers, the model's files and
checksums, memory for the model, temperature and Raspberry Pi throttling, every configured camera
(one frame) and the microphone, the broker (a real connect with the configured TLS and credentials),
free disk for the spool and the model, and the clock (set, and synchronised by NTP).

Exit codes: 0 when no check failed (warnings allowed; with --strict, none either), 1 when a check
failed, 2 when the config is invalid.

Without a config (a node not configured yet: no -c, no $EDGE_AGENT_CONFIG, no /etc/edge-agent/config.yaml)
it still checks the machine (Python, onnxruntime, memory, temperature, cameras, audio inputs, disk, clock)
and fails the "config" line, which says where it looked. With --json, stdout is always one JSON list of
{name, verdict, detail} objects, an invalid config included (one failed "config" line)."""


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


def _where(path: Path) -> str:
    """Where the config path came from, for the "no config" line."""
    if os.environ.get("EDGE_AGENT_CONFIG") and Path(os.environ["EDGE_AGENT_CONFIG"]) == path:
        return "named by $EDGE_AGENT_CONFIG"
    if path == Path(DEFAULT_CONFIG):
        return "the default; -c FILE or $EDGE_AGENT_CONFIG name another"
    return "named by -c"


def missing_config(path: Path) -> Check:
    """The line of a node without a config: where the doctor looked, and how to get one."""
    return fail(
        "config",
        f"no config found at {path} ({_where(path)}); only the machine was checked. Write one with "
        "`edge-agent init`, or install the service with `sudo deploy/install.sh` (it writes "
        f"{DEFAULT_CONFIG} from a template), then run `edge-agent doctor` again",
    )


def _print(checks: Sequence[Check], as_json: bool) -> None:
    print(json.dumps([asdict(c) for c in checks], indent=2) if as_json else render_table(checks))


def _load(path: Path, as_json: bool) -> Config | None:
    """The config, or None after reporting every problem (on stderr, and as one JSON document with --json)."""
    try:
        return load_config(path)
    except ConfigError as exc:
        problems = [issue.render(exc.source) for issue in exc.issues]
        print(f"{path}: invalid config ({len(problems)} problem(s)):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        if as_json:
            _print([fail("config", f"{path}: invalid config: {'; '.join(problems)}")], as_json=True)
        return None


def doctor(args: argparse.Namespace) -> int:
    """Run every check and print the report."""
    path: Path = args.config
    if not path.exists() and not path.is_symlink():
        from edge_agent.doctor import run_machine_checks

        checks = [missing_config(path), *run_machine_checks()]
        _print(checks, args.json)
        return exit_code(checks, args.strict)
    config = _load(path, args.json)
    if config is None:
        return EXIT_CONFIG
    from edge_agent.doctor import run_checks

    checks = run_checks(config, camera_timeout_s=args.timeout, broker_timeout_s=args.timeout)
    _print(checks, args.json)
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
