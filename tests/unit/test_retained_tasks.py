"""Which retained task topics a config publishes, what a node that kept no list of them can learn from its Home
Assistant note, and the agent's guard that keeps a removed task's cleared topics clear."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent.shared import CurrentTasks
from edge_agent.config import Config, load_config
from edge_agent.sinks.ha_discovery import components, platforms
from edge_agent.sinks.retained import _from_discovery, retained_suffixes

TASKS = """
cameras:
  - {name: yard, source: "http://127.0.0.1:9/yard.mjpg"}
microphone: {device: default}
tasks:
  - {kind: watch, name: gate, camera: yard, question: 'Closed?', snapshot: true}
  - {kind: watch, name: door_snapshot, camera: yard, question: 'Open?'}
  - {kind: voice, name: commands}
"""


@pytest.fixture
def config(write_config: Callable[..., Path], model_dir: Path) -> Config:
    return load_config(write_config(f"device: {{id: node-1}}\nmodel: {{path: {model_dir}}}\n{TASKS}"))


class Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, bool]] = []

    def publish_result(self, suffix: str, payload: dict[str, Any], *, retain: bool = False) -> Any:
        self.sent.append((suffix, payload, retain))

    def publish_spooled(self, suffix: str, body: bytes, *, retain: bool = False) -> Any:
        self.sent.append((suffix, body, retain))

    def publish_event(self, data: dict[str, Any]) -> None:
        self.sent.append(("event", data, False))


def test_watch_tasks_publish_answer_availability_and_snapshot_retained(config: Config) -> None:
    assert retained_suffixes(config) == [
        "task/gate",
        "task/gate/availability",
        "task/gate/snapshot",
        "task/door_snapshot",
        "task/door_snapshot/availability",
        "camera/yard/frame",  # frame_publish_s: 10 by default
    ]


def test_the_home_assistant_note_names_the_same_topics_even_for_a_task_named_like_a_snapshot(config: Config) -> None:
    note = json.dumps(platforms(components(config)))
    assert sorted(_from_discovery(note)) == sorted(retained_suffixes(config))
    assert _from_discovery("not json") == [] and _from_discovery("[1]") == [] and _from_discovery(None) == []


def test_a_removed_task_publishes_nothing_retained_any_more(config: Config) -> None:
    recorder = Recorder()
    current = config.model_copy(update={"tasks": [task for task in config.tasks if task.name != "gate"]})
    guarded = CurrentTasks(recorder, lambda: current)
    guarded.publish_result("task/gate", {"value": True}, retain=True)  # a job that outlived the reload
    guarded.publish_spooled("task/gate/snapshot", b"jpeg", retain=True)
    guarded.publish_result("task/gate/error", {"error": "x"})  # not retained: nothing to keep clear
    guarded.publish_result("task/door_snapshot", {"value": 1}, retain=True)
    guarded.publish_result("task/commands", {"text": "hi"})
    guarded.publish_event({"event_type": "answer"})
    assert [(suffix, retain) for suffix, _, retain in recorder.sent] == [
        ("task/gate/error", False),
        ("task/door_snapshot", True),
        ("task/commands", False),
        ("event", False),
    ]
