"""`edge-agent timeline` against a timeline file: filters, JSON, and one line for what is wrong."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.cli import main
from edge_agent.config.timeline import TimelineConfig
from edge_agent.timeline import Entry, TimelineStore

MODEL = Path(__file__).resolve().parents[2] / "models" / "tiny-gemma4-b"


@pytest.fixture
def config_file(write_config: Callable[[str], Path], tmp_path: Path) -> Path:
    return write_config(f"model: {{path: {MODEL}}}\ntimeline: {{path: {tmp_path / 'tl'}}}\n")


def test_the_cli_prints_matching_entries_newest_first(
    config_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    now = time.time()
    store = TimelineStore(tmp_path / "tl", TimelineConfig())
    store.add(
        [
            Entry(now - 3 * 86400, "answer", "closed", "garage", "drive"),
            Entry(now - 300, "answer", "open", "garage", "drive"),
            Entry(now - 200, "motion", "motion started (area 0.3)", None, "yard"),
        ]
    )
    store.close()
    assert main(["timeline", "-c", str(config_file), "--since", "24h", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [(e["kind"], e["text"]) for e in shown] == [("motion", "motion started (area 0.3)"), ("answer", "open")]
    assert main(["timeline", "-c", str(config_file), "--task", "garage"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert len(rows) == 2 and "open" in rows[0] and "closed" in rows[1] and "garage" in rows[0]


def test_the_cli_says_in_one_line_what_is_wrong(config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["timeline", "-c", str(config_file)]) == 1
    assert "no timeline at" in capsys.readouterr().err
    assert main(["timeline", "-c", str(config_file), "--since", "last week"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot read 'last week'" in err
