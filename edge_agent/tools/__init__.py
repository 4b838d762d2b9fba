"""The tools the model may call: declared in the config, validated, rate-limited, confirmed and audited."""

from edge_agent.tools.host import LastValues, ToolHost
from edge_agent.tools.outcome import ToolOutcome, ToolStatus
from edge_agent.tools.registry import Toolbox
from edge_agent.tools.templates import TemplateError

__all__ = ["LastValues", "TemplateError", "ToolHost", "ToolOutcome", "ToolStatus", "Toolbox"]
