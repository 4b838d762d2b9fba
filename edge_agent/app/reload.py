"""SIGHUP: read the config file again and apply tasks, tools, references, the agent and health sections (the
degradation ladder's thresholds and fallback); reload the model only if its section changed.
Sections that need a restart (broker, cameras, ...) make the reload refuse, saying which."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from edge_agent.config import Config, ConfigError, load_config
from edge_agent.tools import Toolbox

if TYPE_CHECKING:
    from edge_agent.app.node import Node
    from edge_agent.sinks.announce import Announcer

log = logging.getLogger(__name__)
LIVE_SECTIONS = ("tasks", "tools", "agent", "model", "health", "references")
HEALTH_AT_START = ("prometheus_host", "prometheus_port", "watchdog_stall_s")  # read once, when the node starts


def sections_needing_restart(old: Config, new: Config) -> list[str]:
    """Top-level sections (or health fields) that changed but cannot be applied to a running node."""
    changed = [
        name for name in Config.model_fields if name not in LIVE_SECTIONS and getattr(old, name) != getattr(new, name)
    ]
    return changed + [
        f"health.{name}" for name in HEALTH_AT_START if getattr(old.health, name) != getattr(new.health, name)
    ]


class Reloader:
    """Applies a re-read config to the running node."""

    def __init__(
        self,
        config: Config,
        path: Path | None,
        node: Node,
        announcer: Announcer | None,
        *,
        toolbox: Callable[[Config], Toolbox],
        subscribe_tools: Callable[[], None] = lambda: None,
    ) -> None:
        self.config, self.path, self.node, self.announcer, self.toolbox = config, path, node, announcer, toolbox
        self.subscribe_tools = subscribe_tools  # the new toolbox's mqtt_read topics (retained values come again)
        self.reloads = 0

    async def serve(self, requested: asyncio.Event) -> None:
        """Reload each time `requested` is set (by SIGHUP)."""
        while True:
            await requested.wait()
            requested.clear()
            await self.reload()

    async def reload(self) -> bool:
        """Read and apply the config file; False (and the old config kept) when it is invalid or needs a restart."""
        if self.path is None:
            log.warning("reload: the daemon was not started from a config file; nothing to reload")
            return False
        try:
            new = await asyncio.to_thread(load_config, self.path)
        except ConfigError as exc:
            log.error("reload refused, the running config stays:\n%s", exc)
            return False
        restart = sections_needing_restart(self.config, new)
        if restart:
            log.error("reload refused: %s changed; restart the service to apply them", ", ".join(restart))
            return False
        old, self.config = self.config, new
        self.node.config = new
        if new.health != old.health or new.model != old.model:
            self.node.apply_health(new)  # thresholds, level-0 limits and the fallback: the ladder's view of both
        self.node.agent.reconfigure(new, self.toolbox(new))
        self.subscribe_tools()
        if self.announcer is not None:
            self.announcer.config = new
            self.announcer.announce()
        if new.model != old.model:
            self._reload_model(new, old)
        self.reloads += 1
        log.info("reload: %d task(s), %d tool(s); model %s", len(new.tasks), len(new.tools), _model_note(old, new))
        self.node.publish_state()
        return True

    def _reload_model(self, new: Config, old: Config) -> None:
        """Swap models between two inferences (back to the old settings if the new ones do not load)."""
        choices = [(new.model, new.health, False), (old.model, old.health, False)]
        self.node.agent.schedule_model_load(choices, "reloading: its settings changed")


def _model_note(old: Config, new: Config) -> str:
    return "reloading (its settings changed)" if new.model != old.model else "kept (unchanged)"
