"""The outcome of one tool call: what the model is told and what is published and audited."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from edge_agent.messages import ToolResponse

ToolStatus = Literal["ok", "refused", "rate_limited", "pending_confirmation", "error", "cancelled"]
# cancelled: a held call dropped unconfirmed because a reload removed or changed its tool


def new_call_id() -> str:
    """A fresh call id (uuid4 hex)."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class ToolOutcome:
    """One call's outcome; `result` is what goes back to the model, whatever the status."""

    id: str
    tool: str
    arguments: dict[str, Any]
    status: ToolStatus
    result: Any = None
    error: str | None = None
    task: str = ""
    ts: float = 0.0  # wall clock (time.time()) when the outcome was decided

    @property
    def ok(self) -> bool:
        """True when the action ran and succeeded."""
        return self.status == "ok"

    def to_response(self) -> ToolResponse:
        """The response the model reads (refusals and errors as {"error": ...})."""
        return ToolResponse(self.tool, self.result)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict for MQTT."""
        return {
            "id": self.id,
            "task": self.task,
            "tool": self.tool,
            "arguments": self.arguments,
            "status": self.status,
            "result": self.result,
            "error": self.error,
            "ts": self.ts,
        }

    def audit_record(self) -> dict[str, Any]:
        """The audit record of this outcome (no result: it may be large, e.g. a read value)."""
        return {
            "task": self.task,
            "id": self.id,
            "tool": self.tool,
            "arguments": self.arguments,
            "status": self.status,
            "error": self.error,
            "ts": self.ts,
        }


@dataclass(frozen=True)
class CallInfo:
    """Who called which tool with what: the part every outcome of one call shares."""

    id: str
    task: str
    tool: str
    arguments: dict[str, Any]

    def outcome(self, status: ToolStatus, result: Any, error: str | None = None) -> ToolOutcome:
        """An outcome of this call."""
        return ToolOutcome(self.id, self.tool, self.arguments, status, result, error, self.task)

    def refusal(self, status: ToolStatus, error: str) -> ToolOutcome:
        """An outcome where the action did not run (or failed): the model reads {"error": ...}."""
        return self.outcome(status, {"error": error}, error)
