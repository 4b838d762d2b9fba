"""Find a Gemma 4 ONNX export's graphs, sidecars and metadata for a variant, and check them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edge_agent.model.media.processor_config import CONFIG_FILES as PROCESSOR_CONFIG_FILES
from edge_agent.model.store.manifest import MANIFEST_NAME, Progress, file_problems, read_manifest, sha256_file
from edge_agent.model.store.manifest import ModelFilesError as ModelFilesError  # noqa: PLC0414 (re-exported)
from edge_agent.model.store.verified import VerifiedCache

VARIANT_SUFFIXES = {
    "fp32": "",
    "fp16": "_fp16",
    "q4": "_q4",
    "q4f16": "_q4f16",
    "int8": "_int8",
    "uint8": "_uint8",
    "quantized": "_quantized",
    "bnb4": "_bnb4",
}
_REQUIRED_METADATA = ("config.json", "generation_config.json", "tokenizer.json")
# Every small file read (or checked against the manifest) beside the graphs, the required ones first.
METADATA_FILES = (*_REQUIRED_METADATA, "tokenizer_config.json", "chat_template.jinja", *PROCESSOR_CONFIG_FILES)
_GRAPHS = ("embed_tokens", "decoder_model_merged", "vision_encoder", "audio_encoder")  # the first two are required


@dataclass(frozen=True)
class Graph:
    """One ONNX graph and its external-data sidecars."""

    onnx: Path
    sidecars: tuple[Path, ...]

    @property
    def paths(self) -> tuple[Path, ...]:
        """The graph file followed by its sidecars."""
        return (self.onnx, *self.sidecars)


@dataclass(frozen=True)
class ModelInfo:
    """What the engine needs from config.json (read as transformers writes it for Gemma 4)."""

    model_type: str
    vocab_size: int
    num_hidden_layers: int
    num_kv_shared_layers: int
    sliding_window: int | None
    max_position_embeddings: int
    image_token_id: int | None
    audio_token_id: int | None
    pad_token_id: int | None
    video_token_id: int | None = None
    boi_token_id: int | None = None
    eoi_token_id: int | None = None
    boa_token_id: int | None = None
    eoa_token_id: int | None = None


@dataclass(frozen=True)
class GenerationDefaults:
    """Defaults from generation_config.json."""

    eos_token_ids: tuple[int, ...]
    bos_token_id: int | None
    pad_token_id: int | None
    sampling: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelFiles:
    """A located model: the graphs of one variant plus the metadata files."""

    root: Path
    variant: str
    embed_tokens: Graph
    decoder: Graph
    vision_encoder: Graph | None
    audio_encoder: Graph | None
    info: ModelInfo
    generation: GenerationDefaults

    @property
    def modalities(self) -> dict[str, bool]:
        """Which inputs this export can take."""
        return {"text": True, "image": self.vision_encoder is not None, "audio": self.audio_encoder is not None}

    @property
    def tokenizer_json(self) -> Path:
        """The tokenizer file."""
        return self.root / "tokenizer.json"

    def graphs(self) -> list[Graph]:
        """Every graph this variant uses."""
        return [g for g in (self.embed_tokens, self.decoder, self.vision_encoder, self.audio_encoder) if g]


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`, or ModelFilesError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelFilesError(f"{path}: missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFilesError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFilesError(f"{path}: expected a JSON object")
    return data


def _int(data: dict[str, Any], key: str, source: Path, default: int | None = None) -> int:
    value = data.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ModelFilesError(f"{source}: '{key}' must be an integer (got {value!r})")
    return value


def _opt_int(data: dict[str, Any], *keys: str) -> int | None:
    for key in keys:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def read_model_config(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """config.json and its text part: `text_config` of a Gemma 4 config, or the whole of a text config."""
    data = read_json(path)
    text = data.get("text_config", data)
    if not isinstance(text, dict):
        raise ModelFilesError(f"{path}: 'text_config' must be an object")
    return data, text


def parse_model_info(path: Path) -> ModelInfo:
    """Read config.json: a Gemma 4 config with `text_config`, or a text config alone."""
    data, text = read_model_config(path)
    return ModelInfo(
        model_type=str(data.get("model_type", text.get("model_type", "unknown"))),
        vocab_size=_int(text, "vocab_size", path),
        num_hidden_layers=_int(text, "num_hidden_layers", path),
        num_kv_shared_layers=_int(text, "num_kv_shared_layers", path, 0),
        sliding_window=_opt_int(text, "sliding_window"),
        max_position_embeddings=_int(text, "max_position_embeddings", path, 131072),
        image_token_id=_opt_int(data, "image_token_id", "image_token_index"),
        audio_token_id=_opt_int(data, "audio_token_id", "audio_token_index"),
        pad_token_id=_opt_int(text, "pad_token_id") if "pad_token_id" in text else _opt_int(data, "pad_token_id"),
        video_token_id=_opt_int(data, "video_token_id", "video_token_index"),
        boi_token_id=_opt_int(data, "boi_token_id", "boi_token_index"),
        eoi_token_id=_opt_int(data, "eoi_token_id", "eoi_token_index"),
        boa_token_id=_opt_int(data, "boa_token_id", "boa_token_index"),
        eoa_token_id=_opt_int(data, "eoa_token_id", "eoa_token_index"),
    )


def parse_generation_defaults(path: Path) -> GenerationDefaults:
    """Read generation_config.json: eos ids (an int or a list) and sampling defaults."""
    data = read_json(path)
    eos = data.get("eos_token_id", [])
    eos_ids = [eos] if isinstance(eos, int) else eos
    if not isinstance(eos_ids, list) or not all(isinstance(i, int) for i in eos_ids):
        raise ModelFilesError(f"{path}: 'eos_token_id' must be an integer or a list of integers")
    sampling: dict[str, Any] = {
        k: data[k] for k in ("do_sample", "temperature", "top_k", "top_p", "min_p") if k in data
    }
    return GenerationDefaults(
        eos_token_ids=tuple(eos_ids),
        bos_token_id=_opt_int(data, "bos_token_id"),
        pad_token_id=_opt_int(data, "pad_token_id"),
        sampling=sampling,
    )


def _graph(onnx_dir: Path, name: str, suffix: str) -> Graph | None:
    path = onnx_dir / f"{name}{suffix}.onnx"
    if not path.is_file():
        return None
    if path.stat().st_size == 0:
        raise ModelFilesError(f"{path}: empty file")
    sidecars = sorted(onnx_dir.glob(f"{name}{suffix}.onnx_data*"), key=lambda p: (len(p.name), p.name))
    return Graph(path, tuple(sidecars))


def _missing_graph(path: str, name: str, variant: str, file_names: Iterable[str]) -> ModelFilesError:
    """A required graph is absent: the error names it and the variants the export does have."""
    have = {f[len(name) : -len(".onnx")].lstrip("_") or "fp32" for f in file_names if f.startswith(name)}
    hint = f"; this export has: {', '.join(sorted(have))}" if have else ""
    return ModelFilesError(f"{path}: missing for variant {variant!r}{hint}")


def _required_graph(onnx_dir: Path, name: str, variant: str) -> Graph:
    suffix = VARIANT_SUFFIXES[variant]
    graph = _graph(onnx_dir, name, suffix)
    if graph is None:
        found = [p.name for p in onnx_dir.glob(f"{name}*.onnx")]
        raise _missing_graph(str(onnx_dir / (name + suffix + ".onnx")), name, variant, found)
    return graph


def variant_paths(listing: Iterable[str], variant: str) -> list[str]:
    """The paths of an export's file listing (e.g. a hub repo's) that `variant` uses: metadata, graphs, sidecars."""
    if variant not in VARIANT_SUFFIXES:
        raise ModelFilesError(f"unknown model variant {variant!r}; known: {', '.join(VARIANT_SUFFIXES)}")
    listed = set(listing)
    for name in _REQUIRED_METADATA:
        if name not in listed:
            raise ModelFilesError(f"{name}: missing (is this a Gemma 4 ONNX export?)")
    chosen = [name for name in METADATA_FILES if name in listed]
    onnx_names = [p.removeprefix("onnx/") for p in listed if p.startswith("onnx/") and p.endswith(".onnx")]
    for name in _GRAPHS:
        graph = f"onnx/{name}{VARIANT_SUFFIXES[variant]}.onnx"
        if graph in listed:
            chosen += [graph, *sorted((p for p in listed if p.startswith(graph + "_data")), key=lambda p: (len(p), p))]
        elif name in _GRAPHS[:2]:
            raise _missing_graph(graph, name, variant, onnx_names)
    return chosen


def locate_model(
    root: str | Path,
    variant: str = "q4",
    verify: bool = True,
    *,
    progress: Progress | None = None,
    verified: VerifiedCache | None = None,
) -> ModelFiles:
    """Find the graphs of `variant` under `root`; with `verify`, check them against manifest.json (see
    `verify_manifest` for `progress` and `verified`)."""
    root = Path(root)
    if variant not in VARIANT_SUFFIXES:
        raise ModelFilesError(f"unknown model variant {variant!r}; known: {', '.join(VARIANT_SUFFIXES)}")
    if not root.is_dir():
        raise ModelFilesError(f"{root}: not a directory")
    for name in _REQUIRED_METADATA:
        if not (root / name).is_file():
            raise ModelFilesError(f"{root / name}: missing (is {root} a Gemma 4 ONNX export?)")
    suffix = VARIANT_SUFFIXES[variant]
    onnx_dir = root / "onnx"
    files = ModelFiles(
        root=root,
        variant=variant,
        embed_tokens=_required_graph(onnx_dir, _GRAPHS[0], variant),
        decoder=_required_graph(onnx_dir, _GRAPHS[1], variant),
        vision_encoder=_graph(onnx_dir, _GRAPHS[2], suffix),
        audio_encoder=_graph(onnx_dir, _GRAPHS[3], suffix),
        info=parse_model_info(root / "config.json"),
        generation=parse_generation_defaults(root / "generation_config.json"),
    )
    if verify:
        verify_manifest(files, progress, verified)
    return files


def write_manifest(root: str | Path, name: str | None = None) -> Path:
    """Write manifest.json listing every file under `root` with its size and sha256."""
    root = Path(root)
    entries = [
        {"path": str(p.relative_to(root)), "size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME and not p.name.startswith(".")
    ]
    path = root / MANIFEST_NAME
    path.write_text(json.dumps({"name": name or root.name, "files": entries}, indent=1) + "\n")
    return path


def verify_manifest(files: ModelFiles, progress: Progress | None = None, verified: VerifiedCache | None = None) -> bool:
    """Check the files this variant uses against manifest.json (the first problem raised); False without one.
    `progress(done, total)` is told the bytes checked; files `verified` knows as checked and unchanged are not read."""
    if not (files.root / MANIFEST_NAME).is_file():
        return False
    used = [str(path.relative_to(files.root)) for graph in files.graphs() for path in graph.paths]
    paths = [*used, *METADATA_FILES]
    problems = file_problems(files.root, read_manifest(files.root), paths, progress=progress, verified=verified)
    if (problem := next(problems, None)) is not None:
        raise ModelFilesError(f"{files.root / problem.path}: {problem.problem}")
    return True
