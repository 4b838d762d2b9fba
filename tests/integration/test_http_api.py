"""The OpenAI- and Ollama-compatible API of the real daemon on the tiny model, driven by the real client packages."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import ollama
import openai
import pytest
import soundfile
from rig.broker import Mosquitto, free_port
from rig.daemon import Daemon
from rig.subscriber import Subscriber

REPO = Path(__file__).resolve().parents[2]
MODEL = REPO / "models" / "tiny-gemma4"
LIGHT = {"type": "object", "properties": {"state": {"type": "string", "enum": ["ON", "OFF"]}}, "required": ["state"]}
TOOLS: list[Any] = [
    {"type": "function", "function": {"name": "set_light", "description": "Switch the light.", "parameters": LIGHT}}
]
ANSWER = {
    "type": "object",
    "properties": {"open": {"type": "boolean"}, "count": {"type": "integer", "minimum": 0, "maximum": 9}},
    "required": ["open", "count"],
    "additionalProperties": False,
}
IMAGE_BUDGET = 70


class Node:
    """The daemon with the HTTP API on a free port."""

    def __init__(
        self, tmp: Path, broker: Mosquitto, http: str = "", env: dict[str, str] | None = None, max_new_tokens: int = 400
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = tmp / "config.yaml"
        config.write_text(
            f"""
device: {{id: web1}}
mqtt: {{host: 127.0.0.1, port: {broker.port}, spool_path: {tmp / "spool.db"}}}
model: {{path: {MODEL}, max_new_tokens: {max_new_tokens}, image_budget: {IMAGE_BUDGET}}}
agent: {{queue_size: 1}}
health: {{interval_s: 0.5}}
http: {{enabled: true, port: {self.port}, max_body_mb: 1{http}}}
"""
        )
        self.daemon = Daemon(config, env=env)
        self.daemon.wait_for_lines("http: serving", timeout_s=60)
        self.daemon.wait_for_lines("ready:", timeout_s=60)

    def openai(self, api_key: str = "none") -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=api_key, max_retries=0, timeout=60)

    def ollama(self, **kwargs: Any) -> ollama.Client:
        return ollama.Client(host=self.url, timeout=60, **kwargs)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, mosquitto: Mosquitto) -> Iterator[Node]:
    running = Node(tmp_path_factory.mktemp("http"), mosquitto)
    yield running
    assert running.daemon.stop() == 0
    assert not [line for _, line in running.daemon.lines if "Traceback" in line or "http failed" in line]


def png(width: int = 64, height: int = 48) -> bytes:
    """A random picture."""
    pixels = np.random.default_rng(width * height).integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


def data_url(body: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(body).decode()


def raw_post(url: str, body: bytes) -> tuple[int, dict[str, Any]]:
    """A hand-made request (what no client library sends: malformed JSON)."""
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read().splitlines()[0])
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_openai_lists_the_model_and_answers_a_question_about_an_image(node: Node) -> None:
    client = node.openai()
    assert [model.id for model in client.models.list()] == ["tiny-gemma4"]
    question: Any = [{"type": "text", "text": "What is in the picture?"}]
    text_only = client.chat.completions.create(model="tiny-gemma4", messages=[{"role": "user", "content": question}])
    question.append({"type": "image_url", "image_url": {"url": data_url(png())}})
    seen = client.chat.completions.create(
        model="tiny-gemma4", messages=[{"role": "user", "content": question}], max_tokens=8
    )
    assert isinstance(seen.choices[0].message.content, str) and seen.choices[0].message.role == "assistant"
    assert seen.usage is not None and text_only.usage is not None
    assert seen.usage.completion_tokens <= 8 and seen.choices[0].finish_reason in ("stop", "length")
    assert (
        seen.usage.prompt_tokens - text_only.usage.prompt_tokens >= IMAGE_BUDGET // 2
    )  # the image's soft tokens (up to the budget)


def test_openai_takes_audio_input(node: Node) -> None:
    buffer = io.BytesIO()
    soundfile.write(buffer, 0.3 * np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000), 16000, format="WAV")
    clip = {
        "type": "input_audio",
        "input_audio": {"data": base64.b64encode(buffer.getvalue()).decode(), "format": "wav"},
    }
    client = node.openai()
    plain = client.chat.completions.create(model="tiny-gemma4", messages=[{"role": "user", "content": "Hear?"}])
    content: Any = [{"type": "text", "text": "Hear?"}, clip]
    heard = client.chat.completions.create(model="tiny-gemma4", messages=[{"role": "user", "content": content}])
    assert heard.usage is not None and plain.usage is not None
    assert heard.usage.prompt_tokens - plain.usage.prompt_tokens >= 10  # the clip's soft tokens (40 ms each)
    noise: Any = [
        {"type": "input_audio", "input_audio": {"data": base64.b64encode(b"RIFF junk").decode(), "format": "wav"}}
    ]
    with pytest.raises(openai.BadRequestError, match="not usable audio"):
        client.chat.completions.create(model="tiny-gemma4", messages=[{"role": "user", "content": noise}])


def test_openai_streams_what_it_answers_whole(node: Node) -> None:
    client = node.openai()
    ask: Any = {"model": "tiny-gemma4", "messages": [{"role": "user", "content": "Count."}], "temperature": 0}
    whole = client.chat.completions.create(**ask, max_tokens=24)
    chunks = list(
        client.chat.completions.create(**ask, max_tokens=24, stream=True, stream_options={"include_usage": True})
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1  # it came in pieces
    assert text == whole.choices[0].message.content
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]


def test_openai_tool_call_round_trip(node: Node) -> None:
    client = node.openai()
    messages: list[Any] = [{"role": "user", "content": "Turn the light on."}]
    first = client.chat.completions.create(
        model="tiny-gemma4", messages=messages, tools=TOOLS, tool_choice="required", max_tokens=64
    )
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls and all(call.function.name == "set_light" for call in calls)  # type: ignore[union-attr]
    for call in calls:
        jsonschema.validate(json.loads(call.function.arguments), LIGHT)  # type: ignore[union-attr]
    messages.append(first.choices[0].message.model_dump(exclude_none=True))
    messages += [{"role": "tool", "tool_call_id": call.id, "content": '{"ok": true}'} for call in calls]
    second = client.chat.completions.create(
        model="tiny-gemma4", messages=messages, tools=TOOLS, tool_choice="none", max_tokens=8
    )
    assert second.choices[0].message.tool_calls is None and isinstance(second.choices[0].message.content, str)
    alone = client.chat.completions.create(
        model="tiny-gemma4", messages=messages[:1], tools=TOOLS, tool_choice="none", max_tokens=1
    )
    assert second.usage is not None and alone.usage is not None
    assert second.usage.prompt_tokens > alone.usage.prompt_tokens  # the call and its result are in the prompt


def test_openai_json_schema_answers_are_valid(node: Node) -> None:
    client = node.openai()
    for seed in range(3):
        reply = client.chat.completions.create(
            model="tiny-gemma4",
            messages=[{"role": "user", "content": "Is the door open, and how many people are there?"}],
            response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER}},
            seed=seed,
        )
        jsonschema.validate(json.loads(reply.choices[0].message.content or ""), ANSWER)


def test_openai_errors_have_openais_shape(node: Node) -> None:
    client = node.openai()
    hello: Any = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-4o", messages=hello)
    assert missing.value.code == "model_not_found" and "tiny-gemma4" in missing.value.message
    picture: Any = [{"type": "image_url", "image_url": {"url": data_url(b"GIF89a but not really")}}]
    with pytest.raises(openai.BadRequestError, match="not an image"):
        client.chat.completions.create(model="tiny-gemma4", messages=[{"role": "user", "content": picture}])
    remote: Any = [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/cat.jpg"}}]
    with pytest.raises(openai.BadRequestError, match="fetch_urls"):
        client.chat.completions.create(model="tiny-gemma4", messages=[{"role": "user", "content": remote}])
    with pytest.raises(openai.APIStatusError) as large:
        client.chat.completions.create(model="tiny-gemma4", messages=[{"role": "user", "content": "x" * 2**21}])
    assert large.value.status_code == 413 and "max_body_mb" in large.value.message
    status, body = raw_post(f"{node.url}/v1/chat/completions", b'{"model": "tiny-gemma4", "messages": [')
    assert status == 400 and "not valid JSON" in body["error"]["message"]
    status, body = raw_post(f"{node.url}/v1/chat/completions", b'{"model": "tiny-gemma4", "messages": []}')
    assert status == 400 and body["error"]["param"] == "messages"


def test_ollama_lists_shows_and_answers_with_an_image(node: Node) -> None:
    client = node.ollama()
    assert [model.model for model in client.list().models] == ["tiny-gemma4:latest"]
    assert "vision" in (client.show("tiny-gemma4").capabilities or [])
    assert [model.model for model in client.ps().models] == ["tiny-gemma4:latest"]
    with urllib.request.urlopen(f"{node.url}/api/version", timeout=10) as response:
        assert json.loads(response.read())["version"]
    text = client.chat("tiny-gemma4", [{"role": "user", "content": "What is it?"}], options={"num_predict": 4})
    seen = client.chat(
        "tiny-gemma4:latest",
        [{"role": "user", "content": "What is it?", "images": [png()]}],
        options={"num_predict": 4, "temperature": 0.5, "seed": 3},
        keep_alive="5m",
    )
    assert seen.done and seen.eval_count is not None and seen.eval_count <= 4
    assert (seen.prompt_eval_count or 0) - (text.prompt_eval_count or 0) >= IMAGE_BUDGET // 2
    made = client.generate("tiny-gemma4", "Describe it.", images=[png()], options={"num_predict": 4})
    assert made.done and isinstance(made.response, str)


def test_ollama_streams_ndjson_by_default(node: Node) -> None:
    options = {"num_predict": 20, "temperature": 0}
    whole = node.ollama().chat("tiny-gemma4", [{"role": "user", "content": "Count."}], options=options)
    body = json.dumps({"model": "tiny-gemma4", "messages": [{"role": "user", "content": "Count."}], "options": options})
    request = urllib.request.Request(f"{node.url}/api/chat", body.encode())  # no "stream": Ollama streams then
    with urllib.request.urlopen(request, timeout=60) as response:
        lines = [json.loads(line) for line in response.read().splitlines()]
    assert len(lines) > 2 and [line["done"] for line in lines] == [False] * (len(lines) - 1) + [True]
    assert "".join(line["message"]["content"] for line in lines) == whole.message.content
    streamed = node.ollama().chat("tiny-gemma4", [{"role": "user", "content": "Count."}], options=options, stream=True)
    assert "".join(part.message.content or "" for part in streamed) == whole.message.content


def test_ollama_tool_call_round_trip_and_json_format(node: Node) -> None:
    client = node.ollama()
    messages: list[Any] = [{"role": "user", "content": "Turn the light on."}]
    first = client.chat("tiny-gemma4", messages, tools=TOOLS, options={"num_predict": 64})
    for call in first.message.tool_calls or []:
        assert call.function.name == "set_light"
        jsonschema.validate(dict(call.function.arguments), LIGHT)
    if first.message.tool_calls:  # `auto`: the random model may also just answer
        messages.append(first.message.model_dump(exclude_none=True))
        messages.append({"role": "tool", "content": '{"ok": true}', "tool_name": "set_light"})
        second = client.chat("tiny-gemma4", messages, tools=TOOLS, options={"num_predict": 8})
        assert (second.prompt_eval_count or 0) > (first.prompt_eval_count or 0)
    answer = client.chat("tiny-gemma4", [{"role": "user", "content": "Door?"}], format=ANSWER)
    jsonschema.validate(json.loads(answer.message.content or ""), ANSWER)
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat("llama3", [{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 404 and "tiny-gemma4" in missing.value.error
    with pytest.raises(ollama.ResponseError) as broken:
        client.chat("tiny-gemma4", [{"role": "user", "content": "hi", "images": [b"not a picture at all"]}])
    assert broken.value.status_code == 400 and "not an image" in broken.value.error


def test_a_full_queue_is_busy_in_each_dialect(node: Node) -> None:
    results: list[Any] = []

    def ask_openai() -> None:
        try:
            node.openai().chat.completions.create(
                model="tiny-gemma4", messages=[{"role": "user", "content": "Talk."}], max_tokens=400
            )
            results.append("ok")
        except openai.RateLimitError as exc:
            results.append(("openai", exc.status_code, exc.response.headers.get("Retry-After"), exc.code))

    def ask_ollama() -> None:
        try:
            node.ollama().chat("tiny-gemma4", [{"role": "user", "content": "Talk."}], options={"num_predict": 400})
            results.append("ok")
        except ollama.ResponseError as exc:
            results.append(("ollama", exc.status_code, exc.error))

    threads = [threading.Thread(target=fn) for fn in (ask_openai, ask_ollama) * 4]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    busy = [r for r in results if r != "ok"]
    assert "ok" in results and busy, results
    for refusal in busy:
        if refusal[0] == "openai":
            assert refusal[1] == 429 and int(refusal[2]) >= 1 and refusal[3] == "busy"
        else:
            assert refusal[1] == 503 and "busy" in refusal[2]


def test_a_client_that_goes_away_cancels_its_generation(node: Node, mosquitto: Mosquitto) -> None:
    health = Subscriber(mosquitto.host, mosquitto.port, ["edge_agent/web1/health"])

    def cancelled() -> int:
        payloads = health.on("edge_agent/web1/health")
        return int(json.loads(payloads[-1])["agent"]["refused"].get("cancelled", 0)) if payloads else -1

    try:
        health.wait_for(lambda _: cancelled() >= 0)
        before = cancelled()
        stream = node.openai().chat.completions.create(  # greedy: sampled, the random model may end at once
            model="tiny-gemma4",
            messages=[{"role": "user", "content": "Talk."}],
            max_tokens=400,
            stream=True,
            temperature=0,
        )
        next(iter(stream))
        stream.close()  # the client hangs up after the first chunk
        started = time.monotonic()
        health.wait_for(lambda _: cancelled() > before, timeout_s=20)
        assert time.monotonic() - started < 10
    finally:
        health.close()
    assert node.daemon.alive
