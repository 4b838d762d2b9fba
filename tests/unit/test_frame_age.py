"""Frame age limits (cameras[].max_frame_age_s), the blank-question check and which tasks a model's files can
serve; the daemon-level behaviour is in tests/faults/test_stale_and_blind.py."""

from __future__ import annotations

import shutil
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from edge_agent.agent.freshness import frame_age_s, stale_frame
from edge_agent.agent.senses import task_input_problems
from edge_agent.config import CameraConfig, load_config
from edge_agent.messages import Frame
from edge_agent.sinks.ask import AskPayload, request_problem

MODEL = Path(__file__).resolve().parents[2] / "models" / "tiny-gemma4"


def frame(camera: str, age_s: float) -> Frame:
    now = time.monotonic()
    return Frame(camera, np.zeros((4, 4, 3), np.uint8), 1, time.time() - age_s, now - age_s)


def test_the_default_limit_is_10_s_or_two_frame_intervals() -> None:
    assert CameraConfig(name="c", source=0).frame_age_limit_s == 10.0
    assert CameraConfig(name="c", source=0, fps=0.1).frame_age_limit_s == 20.0
    assert CameraConfig(name="c", source=0, max_frame_age_s=3).frame_age_limit_s == 3.0


def test_a_limit_shorter_than_a_frame_interval_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"'max_frame_age_s' \(1 s\) must be longer than .* \(1/fps = 2 s\)"):
        CameraConfig(name="c", source=0, fps=0.5, max_frame_age_s=1)


def test_a_frame_older_than_the_limit_is_stale_naming_camera_and_age(
    write_config: Callable[[str], Path], model_dir: Path
) -> None:
    config = load_config(
        write_config(f"model: {{path: {model_dir}}}\ncameras:\n  - {{name: porch, source: 0, max_frame_age_s: 5}}\n")
    )
    fresh, old = frame("porch", 1.0), frame("porch", 7.5)
    assert 0.9 < frame_age_s(fresh) < 2 and stale_frame(config, fresh, frame_age_s(fresh)) is None
    why = stale_frame(config, old, frame_age_s(old))
    assert why is not None and why.startswith("camera porch: its newest frame is 7.5 s old")
    assert "max_frame_age_s (5 s)" in why


def test_a_blank_question_is_an_invalid_request() -> None:
    with pytest.raises(ValidationError) as caught:
        AskPayload.model_validate_json(b'{"question": " \\n\\t "}')
    assert request_problem(caught.value) == "invalid request: question: must not be empty or only whitespace"
    assert AskPayload.model_validate_json(b'{"question": " hi "}').question == " hi "


def test_tasks_a_text_only_export_cannot_serve(write_config: Callable[[str], Path], tmp_path: Path) -> None:
    blind = tmp_path / "blind"
    shutil.copytree(MODEL, blind, ignore=shutil.ignore_patterns("vision_encoder*", "audio_encoder*"))
    tasks = """\
        cameras: [{name: porch, source: 0}]
        microphone: {device: default}
        tasks:
          - {kind: watch, name: door, camera: porch, question: "Open?", interval_s: 5}
          - {kind: voice, name: voice}
        """
    tasks = textwrap.dedent(tasks)
    problems = task_input_problems(load_config(write_config(f"model: {{path: {blind}}}\n{tasks}")))
    assert [index for index, _ in problems] == [0, 1]
    assert "task 'door' (watch) needs images" in problems[0][1] and "no vision encoder" in problems[0][1]
    assert "task 'voice' (voice) needs audio" in problems[1][1] and "no audio encoder" in problems[1][1]
    assert task_input_problems(load_config(write_config(f"model: {{path: {MODEL}}}\n{tasks}", "ok.yaml"))) == []
    with_fallback = f"model: {{path: {MODEL}, fallback_path: {blind}}}\n{tasks}"
    problems = task_input_problems(load_config(write_config(with_fallback, "fallback.yaml")))
    assert len(problems) == 2 and all(problem.endswith("(the fallback model)") for _, problem in problems)


def test_a_model_that_is_not_there_is_not_judged_here(write_config: Callable[[str], Path], model_dir: Path) -> None:
    task = '{kind: watch, name: d, camera: p, question: "?", interval_s: 5}'
    text = f"model: {{path: {model_dir}}}\ncameras: [{{name: p, source: 0}}]\ntasks: [{task}]\n"
    assert task_input_problems(load_config(write_config(text))) == []  # an empty directory: the loader's to report
