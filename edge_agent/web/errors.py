"""Errors an API request ends with: an HTTP status, a message, and what kind of error it is for each dialect."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

# kind -> (HTTP status, OpenAI error type)
KINDS: dict[str, tuple[int, str]] = {
    "bad_request": (400, "invalid_request_error"),
    "unauthorized": (401, "authentication_error"),
    "not_found": (404, "invalid_request_error"),
    "model_not_found": (404, "invalid_request_error"),
    "too_large": (413, "invalid_request_error"),
    "busy": (429, "rate_limit_exceeded"),
    "unavailable": (503, "server_error"),
    "timeout": (504, "server_error"),
    "server": (500, "server_error"),
}


class ApiError(Exception):
    """A request that cannot be answered: `kind` picks the status; `retry_after_s` for busy and unavailable."""

    def __init__(self, kind: str, message: str, *, param: str | None = None, retry_after_s: int | None = None) -> None:
        super().__init__(message)
        self.kind, self.message, self.param, self.retry_after_s = kind, message, param, retry_after_s

    @property
    def status(self) -> int:
        """The HTTP status (OpenAI's; Ollama answers `busy` with 503)."""
        return KINDS.get(self.kind, KINDS["server"])[0]

    def openai_body(self) -> dict[str, Any]:
        """OpenAI's error object."""
        kind = KINDS.get(self.kind, KINDS["server"])[1]
        code = self.kind if self.kind in ("model_not_found", "busy") else None
        return {"error": {"message": self.message, "type": kind, "param": self.param, "code": code}}

    def ollama_body(self) -> dict[str, Any]:
        """Ollama's error object."""
        return {"error": self.message}


def invalid_body(exc: ValidationError) -> ApiError:
    """A body that does not match the dialect's request shape: the first problem, with where it is."""
    first = exc.errors(include_url=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ApiError("bad_request", f"{where}: {first['msg']}{more}" if where else first["msg"], param=where or None)
