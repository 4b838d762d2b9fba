"""The `references` section: each problem names its key path (duplicates, files that do not decode, bad budgets and
descriptions), and a valid section loads with its defaults."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from edge_agent.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
PORCH = REPO / "models" / "tiny-gemma4" / "examples" / "porch.png"
WriteConfig = Callable[..., Path]


def issues_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    return [issue.render(info.value.source) for issue in info.value.issues]


@pytest.fixture
def images(tmp_path: Path) -> Path:
    shutil.copy(PORCH, tmp_path / "rex.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 200)  # a JPEG header, then nothing
    (tmp_path / "notes.txt").write_text("not an image")
    return tmp_path


def test_a_valid_section_loads_with_its_defaults(write_config: WriteConfig, model_dir: Path, images: Path) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        references:
          - {{name: rex, image: rex.png, description: "Rex, our dog"}}
          - {{name: car, image: {images / "rex.png"}, budget: 140}}
        """
    )
    rex, car = load_config(path, env={}).references
    assert (rex.name, rex.image, rex.description, rex.budget) == ("rex", images / "rex.png", "Rex, our dog", 70)
    assert (car.description, car.budget) == (None, 140)


def test_every_problem_names_its_key(write_config: WriteConfig, model_dir: Path, images: Path) -> None:
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        references:
          - {{name: rex, image: rex.png}}
          - {{name: rex, image: rex.png}}
          - {{name: bad, image: broken.jpg}}
          - {{name: text, image: notes.txt}}
          - {{name: gone, image: missing.png}}
          - {{name: big, image: rex.png, budget: 100}}
          - {{name: sneaky, image: rex.png, description: "<|image|>"}}
          - {{name: "rex dog", image: rex.png}}
        """
    )
    assert issues_of(path) == [
        "references[1].name: duplicate name 'rex' (config.yaml:4)",
        f"references[2].image: {images / 'broken.jpg'}: an unreadable image (UnidentifiedImageError) (config.yaml:5)",
        f"references[3].image: {images / 'notes.txt'}: not a JPEG or PNG image (config.yaml:6)",
        f"references[4].image: file not found: {images / 'missing.png'} (config.yaml:7)",
        "references[5].budget: must be one of 70, 140, 280, 560 or 1120 (got 100) (config.yaml:8)",
        "references[6].description: must be one line of plain text without '<' or '>' (they could spell control "
        "tokens) (config.yaml:9)",
        "references[7].name: must match ^[a-zA-Z0-9_-]+$ (got 'rex dog') (config.yaml:10)",
    ]


def test_a_truncated_png_is_refused(write_config: WriteConfig, model_dir: Path, images: Path) -> None:
    (images / "cut.png").write_bytes(PORCH.read_bytes()[:400])  # the header is there, the pixels are not
    path = write_config(f"model: {{path: {model_dir}}}\nreferences: [{{name: cut, image: cut.png}}]\n")
    assert issues_of(path) == [
        f"references[0].image: {images / 'cut.png'}: not a readable image (corrupt or truncated) (config.yaml:2)"
    ]


def test_a_watch_task_naming_an_unknown_reference_is_refused(
    write_config: WriteConfig, model_dir: Path, images: Path
) -> None:
    from edge_agent.config import WatchTaskConfig

    if "references" not in WatchTaskConfig.model_fields:
        pytest.skip("watch tasks have no 'references' field yet (config/agent.py)")
    path = write_config(
        f"""
        model: {{path: {model_dir}}}
        cameras: [{{name: door, source: /dev/video0}}]
        references: [{{name: rex, image: rex.png}}]
        tasks:
          - {{kind: watch, name: dog, camera: door, question: "Is this Rex?", references: [rex, cat]}}
        """
    )
    assert issues_of(path) == ["tasks[0].references[1]: no reference named 'cat' in 'references' (rex) (config.yaml:5)"]
