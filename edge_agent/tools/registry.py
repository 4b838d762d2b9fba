"""The Toolbox: declared tools only, arguments validated first, rate limits, confirmation and an audit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from jsonschema import Draft202012Validator

from edge_agent.config import MqttReadAction, ToolConfig
from edge_agent.messages import ToolCall, ToolSpec
from edge_agent.tools.actions import ActionFailedError, PublishRunner, Runner, make_runner
from edge_agent.tools.host import MAX_DEPTH, LastValues, ToolHost, json_depth
from edge_agent.tools.limits import PendingCall, PendingCalls, RateLimiter
from edge_agent.tools.outcome import CallInfo, ToolOutcome, new_call_id
from edge_agent.tools.templates import TemplateError

log = logging.getLogger(__name__)
PENDING_MESSAGE = "the action waits for the user's confirmation; it has not run yet"


def argument_errors(validator: Draft202012Validator, arguments: Mapping[str, Any]) -> str | None:
    """Every schema violation as `path: message` (path like `$.level`), or None when the arguments are valid."""
    errors = sorted(validator.iter_errors(dict(arguments)), key=lambda error: list(map(str, error.absolute_path)))
    if not errors:
        return None
    return "; ".join(f"{error.json_path}: {error.message}" for error in errors[:5])


class Toolbox:
    """The tools the model may call, built from the config; the app supplies the ToolHost."""

    def __init__(
        self,
        tools: Sequence[ToolConfig],
        host: ToolHost,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = datetime.now,
        confirm_ttl_s: float = 60.0,
        max_pending: int = 32,
    ) -> None:
        self.host = host
        self._now = now
        self._tools: dict[str, ToolConfig] = {}
        self._runners: dict[str, Runner] = {}
        self._validators: dict[str, Draft202012Validator] = {}
        self._limits: dict[str, RateLimiter] = {}
        for tool in tools:
            if tool.name in self._tools:
                raise ValueError(f"tool '{tool.name}' is declared twice")
            self._tools[tool.name] = tool
            self._runners[tool.name] = make_runner(tool, now)
            self._validators[tool.name] = Draft202012Validator(
                tool.parameters, format_checker=Draft202012Validator.FORMAT_CHECKER
            )
            if tool.rate_limit_per_min is not None:
                self._limits[tool.name] = RateLimiter(tool.rate_limit_per_min, clock)
        reads = [tool.action.topic for tool in tools if isinstance(tool.action, MqttReadAction)]
        writes = [runner.topic.as_filter() for runner in self._runners.values() if isinstance(runner, PublishRunner)]
        self._filters = tuple(dict.fromkeys([*writes, *reads]))
        self.last_values = LastValues(reads, clock)
        self.pending = PendingCalls(clock, ttl_s=confirm_ttl_s, capacity=max_pending)

    @property
    def names(self) -> list[str]:
        """Names of the declared tools."""
        return list(self._tools)

    def specs(self, names: Sequence[str] | None = None) -> list[ToolSpec]:
        """Declarations for the prompt: every tool, or those of `names` that are declared."""
        chosen = self.names if names is None else [name for name in dict.fromkeys(names) if name in self._tools]
        return [ToolSpec(name, self._tools[name].description, self._tools[name].parameters) for name in chosen]

    async def call(self, call: ToolCall, *, task: str, allowed: Sequence[str] | None = None) -> ToolOutcome:
        """Check, then run (or hold for confirmation) one call the model made; audited whatever happens."""
        arguments = dict(call.arguments)
        if json_depth(arguments) > MAX_DEPTH:  # before any recursive check, template, encoder or audit sees them
            info = CallInfo(new_call_id(), task, call.name, {})
            why = f"invalid arguments: nested deeper than {MAX_DEPTH} levels (not recorded)"
            return self._audited(info.refusal("refused", why))
        info = CallInfo(new_call_id(), task, call.name, arguments)
        refused = self._check(info, allowed)
        if refused is not None:
            return self._audited(refused)
        limiter = self._limits.get(info.tool)
        if limiter is not None and not limiter.try_acquire():
            wait = limiter.retry_after_s()
            why = f"rate limited: at most {limiter.per_min} calls a minute to '{info.tool}'; retry in {wait:.0f} s"
            return self._audited(info.refusal("rate_limited", why))
        if self._tools[info.tool].confirm:
            self.pending.add(info)
            result = {"status": "pending_confirmation", "id": info.id, "message": PENDING_MESSAGE}
            return self._audited(info.outcome("pending_confirmation", result))
        return await self._run(info)

    async def confirm(self, call_id: str) -> ToolOutcome | None:
        """Run a call held for confirmation; None (nothing run, nothing audited: the caller counts it) when the id
        is unknown, expired or already confirmed."""
        info = self.pending.take(call_id)
        if info is None:
            return None
        return await self._run(info)

    def adopt(self, old: Toolbox) -> list[PendingCall]:
        """Take over what a reload must not forget from the toolbox this one replaces: the rate windows of tools that
        are still limited, the values seen on topics still read, and the held calls of tools whose definition is
        unchanged. A held call of a removed or changed tool is dropped: audited as `cancelled` saying why, and
        logged (one line for all of them); the dropped calls are returned."""
        for name, limiter in self._limits.items():
            if name in old._limits:
                limiter.adopt(old._limits[name])
        self.last_values.adopt(old.last_values)
        dropped: list[tuple[PendingCall, str]] = []
        for pending in old.pending.drain():
            tool = pending.call.tool
            if tool in self._tools and self._tools[tool] == old._tools.get(tool):
                self.pending.keep(pending)
                continue
            why = "its tool was removed" if tool not in self._tools else "its tool's definition changed"
            dropped.append((pending, why))
            self._audited(pending.call.refusal("cancelled", f"dropped unconfirmed by a config reload: {why}"))
        if dropped:
            log.warning(
                "tools: the reload dropped %d call(s) awaiting confirmation: %s",
                len(dropped),
                "; ".join(f"{p.call.tool} (call {p.call.id}): {why}" for p, why in dropped),
            )
        return [pending for pending, _ in dropped]

    def topic_filters(self) -> list[str]:
        """MQTT topic filters of every tool's topic (`mqtt_publish` placeholders as '+'; `mqtt_read` topics)."""
        return list(self._filters)

    def _check(self, info: CallInfo, allowed: Sequence[str] | None) -> ToolOutcome | None:
        """A `refused` outcome when the tool is undeclared, not allowed or called with invalid arguments."""
        if info.tool not in self._tools:
            return info.refusal("refused", f"no tool named '{info.tool}'")
        if allowed is not None and info.tool not in allowed:
            return info.refusal("refused", f"tool '{info.tool}' is not allowed for task '{info.task}'")
        problems = argument_errors(self._validators[info.tool], info.arguments)
        if problems is not None:
            return info.refusal("refused", f"invalid arguments: {problems}")
        runner = self._runners[info.tool]
        if isinstance(runner, PublishRunner):  # checked now, so that a bad call is never held for confirmation
            try:
                runner.render(info.arguments)
            except TemplateError as exc:
                return info.refusal("refused", f"invalid arguments: {exc}")
        return None

    async def _run(self, info: CallInfo) -> ToolOutcome:
        try:
            result = await self._runners[info.tool].run(self.host, self.last_values, info.arguments)
        except (ActionFailedError, TemplateError) as exc:
            return self._audited(info.refusal("error", str(exc)))
        except Exception as exc:
            log.warning("tools: %s (call %s) failed: %s", info.tool, info.id, exc)
            return self._audited(info.refusal("error", f"{type(exc).__name__}: {exc}"))
        return self._audited(info.outcome("ok", result))

    def _audited(self, outcome: ToolOutcome) -> ToolOutcome:
        stamped = replace(outcome, ts=self._now().timestamp())
        try:
            self.host.audit(stamped.audit_record())
        except Exception:
            log.exception("tools: auditing call %s failed", stamped.id)
        return stamped
