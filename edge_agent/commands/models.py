"""`edge-agent models list|pull|verify|remove|manifest`: the model files on this node."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from edge_agent.model.store import catalog
from edge_agent.model.store.files import VARIANT_SUFFIXES, ModelFilesError, write_manifest
from edge_agent.model.store.hub import HUB_PREFIX, is_hub_source, looks_like_repo_id, parse_repo_id, pull_from_hub
from edge_agent.model.store.manifest import list_models, read_manifest, remove_model, verify_all
from edge_agent.model.store.mirror import open_source, pull
from edge_agent.model.store.progress import VERIFYING, TerminalProgress
from edge_agent.model.store.pull import PullError, PullResult

EXIT_FAILED = 1
DEFAULT_DIR = Path("/var/lib/edge-agent/models")


def models_dir(args: argparse.Namespace) -> Path:
    """--dir, else $EDGE_AGENT_MODELS_DIR, else /var/lib/edge-agent/models (the unit's StateDirectory)."""
    return Path(args.dir or os.environ.get("EDGE_AGENT_MODELS_DIR") or DEFAULT_DIR)


def run_list(args: argparse.Namespace) -> int:
    """List the models under the models directory (or, with --available, the short names `pull` knows)."""
    if args.available:
        print(json.dumps(catalog.as_json()) if args.json else "\n".join(catalog.describe_available()))
        return 0
    found = list_models(models_dir(args))
    if args.json:
        rows = [
            {"name": m.name, "path": str(m.path), "size_bytes": m.size_bytes, "manifest": m.has_manifest} for m in found
        ]
        print(json.dumps(rows))
        return 0
    if not found:
        print(f"no models in {models_dir(args)}")
    for model in found:
        note = "" if model.has_manifest else "  (no manifest: cannot be verified)"
        label = "  (kept from before the last pull)" if model.previous else ""
        print(f"{model.name:<32} {model.size_bytes / 2**20:10.1f} MB {model.files:4d} files{note}{label}")
    return 0


def resolve_source(text: str) -> tuple[str, str | None]:
    """A short name (e2b, e4b) -> its hf:// source and default variant; OWNER/NAME that is no local directory ->
    hf://OWNER/NAME; anything else as given."""
    if (known := catalog.find(text)) is not None:
        return known.source, known.variant
    if looks_like_repo_id(text) and not Path(text).exists():
        return HUB_PREFIX + text, None
    return text, None


def _pull(args: argparse.Namespace, progress: TerminalProgress) -> PullResult:
    """From the hub (a short name, hf://OWNER/NAME), a mirror or a directory."""
    source, default_variant = resolve_source(args.source)
    variant = args.variant or default_variant or "q4"
    if is_hub_source(source):
        if variant == "all":
            raise PullError("--variant all is for mirrors and directories; a hub pull takes one variant")
        return pull_from_hub(
            parse_repo_id(source),
            models_dir(args),
            variant=variant,
            revision=args.revision,
            name=args.name,
            progress=progress,
        )
    if args.revision:
        raise PullError("--revision is for hub sources (a mirror's manifest lists its files)")
    chosen = None if variant == "all" else variant
    return pull(open_source(source, progress), models_dir(args), args.name, progress, chosen)


def run_pull(args: argparse.Namespace) -> int:
    """Download, verify, switch."""
    progress = TerminalProgress()
    try:
        result = _pull(args, progress)
    except (ModelFilesError, OSError) as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if result.up_to_date:  # Ansible's `changed_when` looks for these words
        print(f"up to date: {result.path} already holds these files, each verified")
        return 0
    resumed = f", {result.resumed_bytes / 2**20:.1f} MB resumed" if result.resumed_bytes else ""
    unchanged = f", {result.kept_files} unchanged file(s) kept" if result.kept_files else ""
    kept = f"; the model it replaced is kept as {result.previous}" if result.previous else ""
    commit = f" at commit {result.revision}" if result.revision else ""
    downloaded = f"{result.downloaded_bytes / 2**20:.1f} MB downloaded{resumed}{unchanged}"
    print(f"pulled {result.path}{commit} ({downloaded}), verified{kept}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """Check every file against the manifest."""
    target = Path(args.model)
    path = target if target.is_dir() else models_dir(args) / args.model
    progress = TerminalProgress()
    current = [""]

    def on_file(name: str) -> None:
        current[0] = name

    def on_bytes(done: int, total: int) -> None:
        if VERIFYING not in progress.stages:
            progress.stage(VERIFYING, total)
        progress.advance(VERIFYING, current[0], done)  # one running count: the line names the file being read

    try:
        problems = verify_all(path, on_file=on_file, progress=on_bytes)
    except ModelFilesError as exc:
        progress.close()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    progress.close()
    for problem in problems:
        print(f"{path / problem.path}: {problem.problem}")
    print(f"{path}: {'ok' if not problems else f'{len(problems)} file(s) do not match the manifest'}")
    return EXIT_FAILED if problems else 0


def run_remove(args: argparse.Namespace) -> int:
    """Delete a model directory (never the one the config uses)."""
    in_use = None
    if args.config is not None:
        from edge_agent.commands.common import load_or_report

        config = load_or_report(args.config)
        if config is None:
            return EXIT_FAILED
        in_use = config.model.path
    try:
        removed = remove_model(models_dir(args), args.name, in_use)
    except ModelFilesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"removed {removed}")
    return 0


def run_manifest(args: argparse.Namespace) -> int:
    """Write manifest.json for a directory (to serve it from a mirror or a USB stick)."""
    path = write_manifest(Path(args.directory), args.name)
    manifest = read_manifest(Path(args.directory))
    print(f"wrote {path}: {len(manifest.files)} files, {manifest.total_bytes / 2**20:.1f} MB")
    return 0


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `models` verb and its sub-commands."""
    parser = verbs.add_parser("models", help="list, pull, verify and remove model files")
    actions = parser.add_subparsers(dest="action", required=True)

    def action(name: str, help_text: str, handler: object) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help_text)
        sub.add_argument("--dir", help=f"models directory (default $EDGE_AGENT_MODELS_DIR or {DEFAULT_DIR})")
        sub.set_defaults(handler=handler)
        return sub

    list_parser = action("list", "the models on this node (--available: the short names `pull` knows)", run_list)
    list_parser.add_argument("--json", action="store_true")
    list_parser.add_argument(
        "--available", action="store_true", help="the public models `pull` knows by a short name, with sizes"
    )
    pull_parser = action("pull", "download a model (resumes), verify it, switch to it", run_pull)
    names = ", ".join(model.short_name for model in catalog.CATALOG)
    pull_parser.add_argument(
        "source",
        help=f"a short name ({names}: see `models list --available`); hf://OWNER/NAME or OWNER/NAME: a Hugging Face "
        "hub model repo ($HF_ENDPOINT for a hub mirror, $HF_TOKEN for a private repo; needs the extra "
        "edge-agent-node[hub]); or an http(s):// mirror URL or a directory holding manifest.json",
    )
    pull_parser.add_argument(
        "--name", help="directory name under the models directory (default: the manifest's, or the hub repo's NAME)"
    )
    pull_parser.add_argument(
        "--variant",
        choices=[*VARIANT_SUFFIXES, "all"],
        help="pull just the graphs of this variant (default q4); 'all': every file a mirror's manifest lists",
    )
    pull_parser.add_argument("--revision", help="hub only: a branch, tag or commit (default: the main branch)")
    action("verify", "check every file's size and sha256", run_verify).add_argument("model", help="name or path")
    remove_parser = action("remove", "delete a model directory", run_remove)
    remove_parser.add_argument("name", help="e.g. gemma-4-e2b or gemma-4-e2b.previous")
    remove_parser.add_argument("-c", "--config", type=Path, help="refuse to remove this config's model.path")
    manifest_parser = actions.add_parser("manifest", help="write manifest.json for a model directory")
    manifest_parser.add_argument("directory")
    manifest_parser.add_argument("--name", help="name recorded in the manifest (default: the directory's)")
    manifest_parser.set_defaults(handler=run_manifest)
