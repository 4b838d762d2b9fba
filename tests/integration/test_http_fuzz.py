"""The HTTP API off loopback: a bearer token is required, and random or malformed bodies get the dialect's error
while the daemon stays up."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ollama
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rig.broker import Mosquitto
from test_http_api import Node

TOKEN = "a-long-enough-token-for-tests"
ENDPOINTS = ["/v1/chat/completions", "/api/chat", "/api/generate", "/api/show", "/v1/models", "/api/nothing"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "tool", "system", "robot"]), "content": JSON_VALUES},
    optional={
        "images": st.lists(st.text(max_size=30), max_size=2),
        "tool_calls": JSON_VALUES,
        "tool_call_id": JSON_VALUES,
    },
)
REQUESTS = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["tiny-gemma4", "tiny-gemma4:latest", "other", ""]),
        "messages": st.lists(MESSAGE, max_size=3),
    },
    optional={
        "stream": st.booleans(),
        "tools": JSON_VALUES,
        "format": JSON_VALUES,
        "response_format": JSON_VALUES,
        "options": st.dictionaries(
            st.sampled_from(["temperature", "top_p", "num_predict", "seed", "stop"]), JSON_VALUES
        ),
        "max_tokens": JSON_VALUES,
        "temperature": JSON_VALUES,
        "prompt": JSON_VALUES,
    },
)
BODIES = st.one_of(
    st.binary(max_size=200),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    REQUESTS.map(lambda body: json.dumps(body).encode()),
    st.integers(0, 3000).map(lambda depth: b"[" * depth + b"]" * depth),  # deep nesting
)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mosquitto: Mosquitto) -> Iterator[Node]:
    env = {**os.environ, "HTTP_TOKEN": TOKEN}
    running = Node(tmp_path_factory.mktemp("http"), mosquitto, ", host: 0.0.0.0, token: '${HTTP_TOKEN}'", env, 4)
    yield running
    assert running.daemon.stop() == 0
    assert not [line for _, line in running.daemon.lines if "Traceback" in line]


def post(url: str, body: bytes, token: str | None = TOKEN) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, body, headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read().splitlines()[-1] or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_off_loopback_a_token_is_required(node: Node, tmp_path: Path) -> None:
    assert node.openai(TOKEN).models.list().data[0].id == "tiny-gemma4"
    with pytest.raises(openai.AuthenticationError):
        node.openai("wrong-token-of-some-length").models.list()
    assert node.ollama(headers={"Authorization": f"Bearer {TOKEN}"}).list().models
    with pytest.raises(ollama.ResponseError) as refused:
        node.ollama().list()
    assert refused.value.status_code == 401 and "bearer token" in refused.value.error
    status, body = post(f"{node.url}/v1/chat/completions", b"{}", token=None)
    assert status == 401 and body["error"]["type"] == "authentication_error"
    with pytest.raises(urllib.error.HTTPError) as page:
        urllib.request.urlopen(f"{node.url}/status", timeout=10)
    assert page.value.code == 401 and page.value.headers["WWW-Authenticate"].startswith("Basic")  # the browser asks
    basic = base64.b64encode(f"admin:{TOKEN}".encode()).decode()
    request = urllib.request.Request(f"{node.url}/status/data.json", headers={"Authorization": f"Basic {basic}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["node"] == "web1"
    config = tmp_path / "open.yaml"
    config.write_text(f"model: {{path: {tmp_path}}}\nhttp: {{enabled: true, host: 0.0.0.0}}\n")
    check = subprocess.run(
        [sys.executable, "-m", "edge_agent", "check-config", "-c", str(config)], capture_output=True, text=True
    )
    assert check.returncode == 2 and "'token' is required" in check.stdout + check.stderr


def test_fuzzed_bodies_get_the_dialects_error_and_the_node_stays_up(node: Node) -> None:
    statuses: dict[int, int] = {}

    @settings(max_examples=300, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(path=st.sampled_from(ENDPOINTS), body=BODIES)
    def one(path: str, body: bytes) -> None:
        status, reply = post(node.url + path, body)
        statuses[status] = statuses.get(status, 0) + 1
        assert status in (200, 400, 404, 405, 413), (status, reply)
        if status != 200:
            error = reply["error"]
            assert isinstance(error["message"] if path.startswith("/v1/") else error, str), reply

    one()
    assert node.daemon.alive and statuses.get(400, 0) > 50, statuses
    assert node.openai(TOKEN).chat.completions.create(
        model="tiny-gemma4", messages=[{"role": "user", "content": "ok?"}]
    )
