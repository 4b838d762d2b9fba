"""Native stderr: the line parser, causes read from FFmpeg's lines, and the fd 2 capture in a real child process."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

from edge_agent.log.native import NativeLine, parse_native_line
from edge_agent.sources.stream_probe import cause_from_native, redact


@pytest.mark.parametrize(
    ("line", "level", "origin", "text"),
    [
        (
            "[ WARN:0@0.488] global cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available",
            logging.WARNING,
            "opencv",
            "cap.cpp:212 open VIDEOIO(FFMPEG): backend is generally available",
        ),
        ("[ERROR:1@2.001] global persistence.cpp:505 open Can't open file", logging.ERROR, "opencv", None),
        ("[ INFO:0@0.010] global registry.cpp:110 something", logging.INFO, "opencv", None),
        ("[FATAL:0@0.010] boom", logging.CRITICAL, "opencv", "boom"),
        ("[DEBUG:0@0.010] detail", logging.DEBUG, "opencv", "detail"),
        (
            "[rtsp @ 0x55c6fa3722c0] method DESCRIBE failed: 404 (Not Found)\n",
            logging.WARNING,
            "ffmpeg rtsp",
            "method DESCRIBE failed: 404 (Not Found)",
        ),
        (
            "[tcp @ 0x7f6fc8005880] Connection to tcp://127.0.0.1:1 failed: Connection refused",
            logging.WARNING,
            "ffmpeg tcp",
            "Connection to tcp://127.0.0.1:1 failed: Connection refused",
        ),
        ("[http @ 0xabc] HTTP error 401 Unauthorized", logging.WARNING, "ffmpeg http", "HTTP error 401 Unauthorized"),
        ("[h264 @ 0x1] error while decoding MB 3 4", logging.WARNING, "ffmpeg h264", "error while decoding MB 3 4"),
        (
            "2026-12-07 17:00:00.123 [W:onnxruntime:, session_state.cc:1162 Verify] Some nodes were not assigned",
            logging.WARNING,
            "onnxruntime",
            "session_state.cc:1162 Verify: Some nodes were not assigned",
        ),
        ("[E:onnxruntime:Default, env.cc:10 Init] bad", logging.ERROR, "onnxruntime", "env.cc:10 Init: bad"),
        (
            "ALSA lib pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM cards.pcm.rear",
            logging.WARNING,
            "alsa",
            "pcm.c:2666:(snd_pcm_open_noupdate) Unknown PCM cards.pcm.rear",
        ),
    ],
)
def test_native_lines_are_parsed_with_their_level_and_origin(
    line: str, level: int, origin: str, text: str | None
) -> None:
    parsed = parse_native_line(line)
    assert parsed is not None
    assert (parsed.level, parsed.origin) == (level, origin)
    if text is not None:
        assert parsed.text == text


@pytest.mark.parametrize(
    "line",
    [
        "Traceback (most recent call last):",
        '  File "x.py", line 1, in <module>',
        "[1/3] downloading",
        "plain text from a child process",
        "[x @ y] not a pointer",
        "",
    ],
)
def test_other_lines_are_not_native(line: str) -> None:
    assert parse_native_line(line) is None


def ffmpeg(text: str, origin: str = "ffmpeg tcp") -> NativeLine:
    return NativeLine(logging.WARNING, origin, text)


def test_the_cause_comes_from_the_line_naming_this_host_or_from_an_open_that_ran_alone() -> None:
    refused = ffmpeg("Connection to tcp://10.0.0.9:554?timeout=0 failed: Connection refused")
    described = ffmpeg("method DESCRIBE failed: 404 (Not Found)", "ffmpeg rtsp")
    opencv = NativeLine(logging.WARNING, "opencv", "cap.cpp:212 open VIDEOIO(FFMPEG): 500 Internal Error")
    assert cause_from_native("rtsp://10.0.0.9/cam", [refused], shared=True) == "connection refused"
    assert cause_from_native("rtsp://10.0.0.8/cam", [refused], shared=True) is None  # another camera's host
    assert cause_from_native("rtsp://10.0.0.8/cam", [described], shared=False) == "RTSP 404 Not Found"
    assert cause_from_native("rtsp://10.0.0.8/cam", [described], shared=True) is None  # could be another camera's
    assert cause_from_native("rtsp://10.0.0.8/cam", [opencv], shared=False) is None  # OpenCV's lines say no cause
    timed_out = ffmpeg("Connection to tcp://cam.local:8080 failed: Connection timed out")
    assert cause_from_native("http://cam.local:8080/video", [timed_out], shared=True) == "timed out"
    unauthorized = ffmpeg("method DESCRIBE failed: 401 Unauthorized", "ffmpeg rtsp")
    assert cause_from_native("rtsp://u:p@cam/x", [unauthorized], shared=False) == "RTSP 401 Unauthorized"


def test_passwords_are_redacted_from_urls() -> None:
    assert redact("rtsp://admin:s3cret@10.0.0.9:554/stream") == "rtsp://admin:***@10.0.0.9:554/stream"
    assert redact("http://10.0.0.9/video.mjpg") == "http://10.0.0.9/video.mjpg"


CHILD = """
import logging, os, sys
from edge_agent.log import setup_logging
setup_logging("debug", sys.argv[1], native=True)
os.write(2, b"[tcp @ 0x5555] Connection to tcp://127.0.0.1:1 failed: Connection refused\\n")
os.write(2, b"[ WARN:0@0.1] global cap.cpp:212 open VIDEOIO(FFMPEG): can't be used\\n")
os.write(2, b"[ WARN:0@0.2] global cap.cpp:212 open VIDEOIO(FFMPEG): can't be used\\n")
os.write(2, b"a line from a child process\\n")
print("python stderr", file=sys.stderr)
import warnings; warnings.warn("a python warning")
from edge_agent.log.native import watch_native
with watch_native() as seen:
    os.write(2, b"[rtsp @ 0x1] method DESCRIBE failed: 404 (Not Found)\\n")
print("watched", [line.text for line in seen.lines], file=sys.stderr)
os.write(2, b"[tls @ 0x2] written ")  # FFmpeg writes a line in parts; a sync marker may come in between
with watch_native():
    pass
os.write(2, b"in two parts\\n")
raise RuntimeError("uncaught")
"""


def run_child(fmt: str) -> list[str]:
    result = subprocess.run([sys.executable, "-c", CHILD, fmt], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    return result.stderr.splitlines()


def test_native_stderr_is_logged_and_python_stderr_passes_through() -> None:
    lines = run_child("text")
    assert not any(line.startswith(("[tcp @", "[ WARN", "[rtsp @")) for line in lines), lines
    native = [line for line in lines if " edge_agent.native: " in line]
    assert any(
        line.endswith("ffmpeg tcp: Connection to tcp://127.0.0.1:1 failed: Connection refused") for line in native
    )
    repeated = [line for line in native if "can't be used" in line]
    assert ["WARNING" in line for line in repeated] == [True, False]  # the same line again: DEBUG
    assert "a line from a child process" in lines and "python stderr" in lines  # unchanged
    assert "watched ['method DESCRIBE failed: 404 (Not Found)']" in lines
    assert any(line.endswith(" edge_agent.native: ffmpeg tls: written in two parts") for line in lines), lines
    assert any("py.warnings" in line and "a python warning" in line for line in lines)
    assert "RuntimeError: uncaught" in lines and "Traceback (most recent call last):" in lines


def test_with_json_logs_every_line_is_json() -> None:
    lines = run_child("json")
    records = [json.loads(line) for line in lines]  # fails on the first line that is not JSON
    by_text = {record["msg"]: record for record in records}
    assert by_text["ffmpeg rtsp: method DESCRIBE failed: 404 (Not Found)"]["logger"] == "edge_agent.native"
    assert by_text["a line from a child process"]["level"] == "warning"
    assert by_text["python stderr"]["logger"] == "edge_agent.stderr"
    assert any(record["logger"] == "py.warnings" for record in records)
    crash = by_text["uncaught exception"]
    assert crash["level"] == "critical" and "RuntimeError: uncaught" in crash["exc"]
