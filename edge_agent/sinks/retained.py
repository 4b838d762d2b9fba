"""The retained topics the node's tasks leave on the broker, and clearing those of tasks that left the config."""

from __future__ import annotations

import json
import logging

from edge_agent.config import Config
from edge_agent.config.agent import WatchTaskConfig
from edge_agent.sinks.announce import NOTE as HA_NOTE
from edge_agent.sinks.mqtt import MqttLink

log = logging.getLogger(__name__)
NOTE = "retained_topics"  # spool note: the task topic suffixes this node publishes retained, as last configured


def watch_suffixes(name: str, snapshot: bool) -> list[str]:
    """A watch task's retained topics: its answer, its availability and (when it publishes frames) its snapshot."""
    return [f"task/{name}", f"task/{name}/availability", *([f"task/{name}/snapshot"] if snapshot else [])]


def retained_suffixes(config: Config) -> list[str]:
    """The retained task and camera-frame topics (suffixes under the node's base topic) that `config` publishes."""
    tasks = [
        suffix
        for task in config.tasks
        if isinstance(task, WatchTaskConfig)
        for suffix in watch_suffixes(task.name, task.snapshot)
    ]
    return tasks + [f"camera/{camera.name}/frame" for camera in config.cameras if camera.frame_publish_s > 0]


def _from_discovery(note: str | None) -> list[str]:
    """The task and camera-frame topics behind the Home Assistant entities last announced (a node that kept no list
    of its own)."""
    try:
        announced = json.loads(note or "{}")
    except ValueError:
        return []
    if not isinstance(announced, dict):
        return []
    suffixes = []
    for key, platform in announced.items():
        text = str(key)
        if text.startswith("camera_") and text.endswith("_frame") and platform == "image":
            suffixes.append(f"camera/{text[len('camera_') : -len('_frame')]}/frame")
            continue
        name = text[len("task_") :]
        if not str(key).startswith("task_"):
            continue
        if platform == "image" and name.endswith("_snapshot"):
            suffixes.append(f"task/{name[: -len('_snapshot')]}/snapshot")
        elif platform != "image":
            suffixes += watch_suffixes(name, snapshot=False)
    return suffixes


class RetainedTasks:
    """Remembers (in the spool, across restarts) which task topics the node publishes retained; `sweep` clears the
    ones no task publishes any more, so a removed task's last answer and snapshot do not stay on the broker."""

    def __init__(self, link: MqttLink) -> None:
        self.link = link

    def previous(self) -> list[str]:
        """The suffixes remembered from the last config (this run's or an earlier one's)."""
        try:
            value = json.loads(self.link.spool.note(NOTE) or "null")
        except ValueError:
            value = None
        if isinstance(value, list):
            return [str(suffix) for suffix in value]
        return _from_discovery(self.link.spool.note(HA_NOTE))

    def sweep(self, config: Config) -> list[str]:
        """Publish an empty retained message (spooled: it is delivered after an outage too) on every remembered task
        topic that `config` no longer publishes, then remember `config`'s; the topics cleared."""
        current = retained_suffixes(config)
        gone = [suffix for suffix in dict.fromkeys(self.previous()) if suffix not in current]
        for suffix in gone:
            self.link.publish_spooled(suffix, b"", retain=True)
        if gone:
            log.info(
                "tasks: cleared the retained %s of task(s) no longer configured",
                ", ".join(self.link.topic(suffix) for suffix in gone),
            )
        self.link.spool.set_note(NOTE, json.dumps(current))
        return [self.link.topic(suffix) for suffix in gone]
