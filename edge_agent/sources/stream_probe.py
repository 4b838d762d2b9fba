"""Why a network stream did not open: from what FFmpeg printed meanwhile, else from a probe of our own (an HTTP
GET's status, an RTSP DESCRIBE's status, or a TCP connect)."""

from __future__ import annotations

import base64
import re
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from edge_agent.log.native import NativeLine

_DEFAULT_PORTS = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322, "rtmp": 1935, "rtmps": 443}
# FFmpeg's wording -> ours; the first pattern that matches a native line names the cause
_CAUSES = (
    (re.compile(r"\b([1-5]\d\d) \(?((?:[A-Z][A-Za-z]*[ -]?)+)\)?$"), None),  # "DESCRIBE failed: 404 (Not Found)"
    (re.compile(r"connection refused", re.I), "connection refused"),
    (re.compile(r"timed? ?out", re.I), "timed out"),
    (re.compile(r"failed to resolve|name or service not known|temporary failure in name", re.I), "host not found"),
    (re.compile(r"no route to host", re.I), "no route to host"),
    (re.compile(r"network is unreachable", re.I), "network unreachable"),
    (re.compile(r"unauthori[sz]ed", re.I), "401 Unauthorized"),
)


def redact(url: str) -> str:
    """The URL with its password replaced by `***` (it goes into logs and the retained `state`)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.netloc.rpartition('@')[2]}"
    return urlunsplit(parts._replace(netloc=netloc))


def open_failure_cause(url: str, timeout_s: float, native: Sequence[NativeLine], shared: bool) -> str | None:
    """A few words on why `url` did not open (`HTTP 404 Not Found`, `connection refused`, `timed out`, ...), or None
    when neither FFmpeg nor a probe says. A native line counts when it names this host:port, or when no other open
    ran at the same time (`shared` False)."""
    return cause_from_native(url, native, shared) or probe(url, timeout_s)


def cause_from_native(url: str, native: Sequence[NativeLine], shared: bool) -> str | None:
    """The cause FFmpeg printed for this source, if it printed one."""
    parts = urlsplit(url)
    address = f"{parts.hostname}:{parts.port or _DEFAULT_PORTS.get(parts.scheme, 0)}"
    for line in reversed(native):
        if not line.origin.startswith("ffmpeg") or (shared and address not in line.text):
            continue
        for pattern, cause in _CAUSES:
            if match := pattern.search(line.text):
                if cause is not None:
                    return cause
                return f"{parts.scheme.upper()} {match[1]} {match[2].strip()}"
    return None


def probe(url: str, timeout_s: float) -> str | None:
    """Ask the server ourselves: HTTP(S) GET status, RTSP DESCRIBE status, else whether a TCP connect succeeds."""
    parts = urlsplit(url)
    if parts.hostname is None:
        return None
    try:
        if parts.scheme in ("http", "https"):
            return _probe_http(url, timeout_s)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
        if port is None:
            return None
        with socket.create_connection((parts.hostname, port), timeout=timeout_s) as conn:
            return _probe_rtsp(conn, url, timeout_s) if parts.scheme == "rtsp" else None
    except OSError as exc:
        return _os_error_cause(exc, timeout_s)


def _probe_http(url: str, timeout_s: float) -> str | None:
    parts = urlsplit(url)
    plain = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    request = urllib.request.Request(plain, headers={"User-Agent": "edge-agent"})
    if parts.username is not None:
        token = base64.b64encode(f"{parts.username}:{parts.password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    context = ssl.create_default_context()
    try:
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:
            kind = response.headers.get("Content-Type") or "no Content-Type"
            return f"HTTP {response.status}, but not a stream OpenCV can read ({kind})"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}".strip()
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, OSError):
            return _os_error_cause(reason, timeout_s)
        return str(reason)


def _probe_rtsp(conn: socket.socket, url: str, timeout_s: float) -> str | None:
    """DESCRIBE without credentials: a 404 is the answer; a 401 only when the URL has none (else FFmpeg's own
    authenticated request may have failed for another reason)."""
    parts = urlsplit(url)
    plain = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    conn.settimeout(timeout_s)
    conn.sendall(f"DESCRIBE {plain} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n\r\n".encode())
    status = conn.recv(4096).split(b"\r\n", 1)[0].decode(errors="replace")
    match = re.match(r"RTSP/\d\.\d (\d{3}) ?(.*)", status)
    if match is None or match[1].startswith("2") or (match[1] == "401" and parts.username is not None):
        return None
    return f"RTSP {match[1]} {match[2].strip()}".strip()


def _os_error_cause(exc: OSError, timeout_s: float) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout_s:g} s"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    return exc.strerror or str(exc)
