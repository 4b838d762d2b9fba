"""edge-agent: a private, offline, multimodal Gemma 4 node that speaks MQTT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("edge-agent-node")  # the distribution name (PyPI's "edge-agent" is another project)
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
