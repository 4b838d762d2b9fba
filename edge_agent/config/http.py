"""The `http` section: the OpenAI- and Ollama-compatible API and the status page, off unless enabled."""

from __future__ import annotations

import ipaddress
import re

from pydantic import Field, SecretStr, field_validator, model_validator

from edge_agent.config.base import Section

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def is_loopback(host: str) -> bool:
    """True for a host name or address that only this machine can reach."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class HttpConfig(Section):
    """The HTTP server: OpenAI- and Ollama-compatible endpoints and the status page."""

    enabled: bool = Field(default=False, description="Serve the HTTP API and the status page.")
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        description="Address to bind; anything but a loopback address needs a 'token' (0.0.0.0: every interface).",
    )
    port: int = Field(
        default=11434, gt=0, le=65535, description="TCP port; 11434 is Ollama's, where its clients look first."
    )
    token: SecretStr | None = Field(
        default=None,
        description="Bearer token every request must carry (use ${HTTP_TOKEN}); required off loopback.",
    )
    max_body_mb: float = Field(
        default=20.0, gt=0, le=512, description="Largest request body in MiB (base64 images included)."
    )
    fetch_urls: list[str] = Field(
        default_factory=list,
        description="URL prefixes (http:// or https://) images may be fetched from; empty: the node fetches nothing.",
    )
    model_name: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="The model name clients list and pick; defaults to the model directory's name, lower case.",
    )
    timeout_s: float = Field(
        default=120.0, gt=0, le=3600, description="Longest a request may wait for the model and run, in seconds."
    )

    @field_validator("fetch_urls")
    @classmethod
    def _http_prefixes(cls, prefixes: list[str]) -> list[str]:
        for prefix in prefixes:
            if not re.match(r"^https?://[^/\s]+/", prefix):
                raise ValueError(f"{prefix!r}: a prefix is http(s)://HOST/ followed by an optional path")
        return prefixes

    @field_validator("model_name")
    @classmethod
    def _plain_name(cls, name: str | None) -> str | None:
        if name is not None and not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9._:-]*$", name):
            raise ValueError("letters, digits and . _ : - only, starting with a letter or digit")
        return name

    @model_validator(mode="after")
    def _token_off_loopback(self) -> HttpConfig:
        if self.enabled and not is_loopback(self.host) and self.token is None:
            raise ValueError(f"'token' is required when 'host' ({self.host}) is not a loopback address")
        if self.token is not None and len(self.token.get_secret_value()) < 16:
            raise ValueError("'token' must be at least 16 characters")
        return self
