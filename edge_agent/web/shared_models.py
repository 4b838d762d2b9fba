"""Request models both dialects share: a lenient base and the function-tool declaration (the same in both)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Lenient(BaseModel):
    """Ignores fields this node does not use."""

    model_config = ConfigDict(extra="ignore")


class FunctionDef(Lenient):
    """A declared function."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str = Field(default="", max_length=4096)
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ToolDef(Lenient):
    """A declared tool."""

    type: Literal["function"] = "function"
    function: FunctionDef
