"""Write models/tiny-gemma4/video*: drawn clips, transformers' Gemma4VideoProcessor output, PyTorch greedy ids.

Run with the export environment (transformers 5.25, torch 2.13), from the repository root, after putting the
matching torchvision beside it (Gemma4VideoProcessor resizes with torchvision):
    .venv-export/bin/pip install --no-deps --target .venv-export/torchvision-0.28 torchvision==0.28.0
    .venv-export/bin/python models/video_goldens.py
PyPI's torchvision wheel is built for CUDA torch; with the CPU torch wheel its C ops do not load, which only its
fake-op registrations need, so they are skipped here (resize runs torch's own uint8 kernel). A frame's golden is
small: its resized size, the sha256 and sum of its uint8 levels (pixel_values * 255, each value exactly
float32(k) / 255, asserted), and the levels at 256 fixed positions. The greedy golden rebuilds the tiny fixture's
PyTorch model exactly as build_tiny_gemma4.py does (checked against its image golden) and asks about a 4-frame clip.
The tests never run this.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
import types
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# torchvision kept out of .venv-export itself: installed there, its failing C ops would break every transformers import.
TORCHVISION = Path(__file__).resolve().parent.parent / ".venv-export" / "torchvision-0.28"
if not (TORCHVISION / "torchvision").is_dir():
    sys.exit(f"needs torchvision: .venv-export/bin/pip install --no-deps --target {TORCHVISION} torchvision==0.28.0")
sys.path.insert(0, str(TORCHVISION))
sys.modules["torchvision._meta_registrations"] = types.ModuleType("torchvision._meta_registrations")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch  # noqa: E402
import transformers  # noqa: E402
from build_tiny_gemma4 import spread_weights, text_config  # noqa: E402
from tiny_multimodal import build_model, multimodal_config  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import Gemma4ForCausalLM, Gemma4VideoProcessor  # noqa: E402
from transformers.models.gemma4.processing_gemma4 import Gemma4Processor  # noqa: E402
from transformers.video_utils import VideoMetadata, default_sample_indices_fn, read_video_opencv  # noqa: E402

MODEL = Path(__file__).resolve().parent / "tiny-gemma4"
EXAMPLES = MODEL / "examples"
SAMPLED_LEVELS = 256
# name, (width, height), frames, fps, frames to sample, budget; "file" clips are written as MJPG AVI and read back
CLIPS = (
    ("street_640x360_24fps", (640, 360), 48, 24.0, 8, 70),
    ("portrait_360x640_30fps", (360, 640), 45, 30.0, 32, 70),
    ("square_256x256_10fps", (256, 256), 12, 10.0, 4, 140),
    ("small_96x64_5fps", (96, 64), 7, 5.0, 7, 70),
    ("file_160x96_1fps", (160, 96), 80, 1.0, 16, 280),
)
QUESTION_CLIP = "door_4frames"
VIDEO_RUN = re.compile(r"(?:<\|video\|>)+")  # a frame's run of soft tokens, stored as "<|video|>*n"


def draw_clip(width: int, height: int, count: int, seed: int) -> np.ndarray:
    """[count, H, W, 3] BGR frames: a gradient, a moving ball and box, a clock, noise; motion resizing must keep."""
    rng = np.random.default_rng(seed)
    background = np.empty((height, width, 3), np.uint8)
    background[:] = np.linspace((40, 90, 160), (220, 200, 120), width)[None].astype(np.uint8)
    background[height // 2 :, : width // 3] = (30, 120, 40)
    background[height // 3 : height // 3 + 4, ::2] = 255  # 1-pixel stripes
    noise = rng.integers(0, 40, (height // 6, width // 6, 3), dtype=np.uint8)  # static: the files stay small
    background[: height // 6, : width // 6] = cv2.add(background[: height // 6, : width // 6], noise)
    frames = []
    for index in range(count):
        frame = background.copy()
        x = int((index / max(count - 1, 1)) * (width - 1))
        cv2.circle(frame, (x, height // 2), max(min(width, height) // 8, 3), (0, 0, 255), -1, cv2.LINE_AA)
        cv2.rectangle(frame, (width - x - 1, height // 5), (width - x + width // 6, height // 3), (255, 200, 0), -1)
        cv2.putText(frame, f"{index:03d}", (2, height - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1)
        frames.append(frame)
    return np.stack(frames)


def save_frames(path: Path, frames: np.ndarray) -> None:
    """[N, H, W, 3] uint8 as the first frame and each frame's difference from it (mod 256): they deflate well."""
    np.savez_compressed(path, first=frames[0], deltas=frames - frames[0])
    data = np.load(path)
    assert np.array_equal(data["deltas"] + data["first"], frames)


def write_avi(path: Path, frames: np.ndarray, fps: float) -> np.ndarray:
    """Write MJPG AVI and return the frames as OpenCV decodes them back (what both sides read)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (frames.shape[2], frames.shape[1]))
    for frame in frames:
        writer.write(frame)
    writer.release()
    capture = cv2.VideoCapture(str(path))
    decoded = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        decoded.append(frame)
    capture.release()
    assert len(decoded) == len(frames), (len(decoded), len(frames))
    return np.stack(decoded)


def process(rgb: np.ndarray, metadata: VideoMetadata, budget: int, sample: bool, count: int) -> dict[str, Any]:
    """Gemma4VideoProcessor on one RGB clip, and the prompt text the processor writes for it."""
    processor = Gemma4VideoProcessor(max_soft_tokens=budget)
    kwargs: dict[str, Any] = {"num_frames": count} if sample else {"do_sample_frames": False}
    out = processor(rgb, video_metadata=metadata, return_metadata=True, return_tensors="np", **kwargs)
    tokens = types.SimpleNamespace(boi_token="<|image>", eoi_token="<image|>", video_token="<|video|>")
    text = Gemma4Processor.replace_video_token(tokens, out, 0)
    return {**{k: out[k] for k in ("pixel_values_videos", "video_position_ids")}, "text": text, "out": out}


def frame_golden(pixels: np.ndarray, positions: np.ndarray, budget: int) -> dict[str, Any]:
    """One frame's small golden, with the reference's layout checked."""
    valid = int((positions[:, 0] >= 0).sum())
    assert pixels.shape == (budget * 9, 768) and not pixels[valid:].any() and (positions[valid:] == -1).all()
    levels = np.round(pixels[:valid].astype(np.float64) * 255).astype(np.uint8)
    assert np.array_equal(levels.astype(np.float32) / np.float32(255), pixels[:valid])
    cols, rows = int(positions[valid - 1, 0]) + 1, int(positions[valid - 1, 1]) + 1
    assert rows * cols == valid
    picks = np.random.default_rng(0).integers(0, levels.size, SAMPLED_LEVELS)
    return {
        "resized_hw": [rows * 16, cols * 16],
        "num_soft_tokens": valid // 9,
        "levels_sha256": hashlib.sha256(levels.tobytes()).hexdigest(),
        "levels_sum": int(levels.astype(np.int64).sum()),
        "sampled_levels": levels.reshape(-1)[picks].tolist(),
    }


def clip_goldens() -> list[dict[str, Any]]:
    """Every clip's frames (PNG stacks or an AVI) and the processor's output for them."""
    goldens = []
    for seed, (name, (width, height), count, fps, sample, budget) in enumerate(CLIPS):
        frames = draw_clip(width, height, count, seed)
        if name.startswith("file"):
            path = EXAMPLES / f"{name}.avi"
            frames = write_avi(path, frames, fps)
            sampler = partial(default_sample_indices_fn, num_frames=sample)
            rgb, metadata = read_video_opencv(str(path), sample_indices_fn=sampler)
            result = process(rgb, metadata, budget, False, sample)
            source = {"file": path.name}
        else:
            path = EXAMPLES / f"{name}.npz"
            save_frames(path, frames)
            metadata = VideoMetadata(total_num_frames=count, fps=fps)
            result = process(np.ascontiguousarray(frames[..., ::-1]), metadata, budget, True, sample)
            source = {"frames_file": path.name}
        meta = result["out"]["video_metadata"][0]
        pixels, positions = result["pixel_values_videos"], result["video_position_ids"]
        goldens.append(
            {
                "name": name,
                **source,
                "fps": fps,
                "num_frames": sample,
                "budget": budget,
                "indices": [int(i) for i in meta.frames_indices],
                "timestamps": [float(t) for t in meta.timestamps],
                "prompt_text": VIDEO_RUN.sub(lambda run: f"<|video|>*{len(run[0]) // 9}", result["text"]),
                "frames": [frame_golden(pixels[i], positions[i], budget) for i in range(len(pixels))],
            }
        )
    return goldens


def tiny_model() -> Any:
    """The fixture's PyTorch model, rebuilt as build_tiny_gemma4.py builds it."""
    torch.manual_seed(0)
    config = text_config("tiny-gemma4")
    config._attn_implementation = "eager"
    causal = Gemma4ForCausalLM(copy.deepcopy(config)).eval()
    spread_weights(causal, seed=len("tiny-gemma4"))
    tokens = json.loads((MODEL / "config.json").read_text())
    names = {"<|image|>": "image", "<|audio|>": "audio", "<|video|>": "video", "<|image>": "boi", "<image|>": "eoi"}
    ids = {token: tokens[f"{key}_token_id"] for token, key in names.items()}
    ids |= {"<|audio>": tokens["boa_token_id"], "<audio|>": tokens["eoa_token_id"]}
    return build_model(causal, multimodal_config(config, ids), seed=7)


@torch.no_grad()
def greedy(model: Any, ids: list[int], steps: int, **kwargs: torch.Tensor) -> tuple[list[int], float]:
    """Greedy ids by full recompute, and the smallest top-1/top-2 logit gap on the way."""
    generated, gap = [], float("inf")
    for _ in range(steps):
        logits = model(input_ids=torch.tensor([ids + generated]), use_cache=False, **kwargs).logits[0, -1]
        top = torch.topk(logits, 2).values
        gap = min(gap, float(top[0] - top[1]))
        generated.append(int(torch.argmax(logits)))
    return generated, gap


def question_golden(model: Any) -> dict[str, Any]:
    """PyTorch's greedy ids for a question about a 4-frame clip (the prompt written as the processor writes it)."""
    frames = draw_clip(120, 90, 4, 99)
    save_frames(EXAMPLES / f"{QUESTION_CLIP}.npz", frames)
    metadata = VideoMetadata(total_num_frames=4, fps=2.0)
    result = process(np.ascontiguousarray(frames[..., ::-1]), metadata, 70, True, 4)
    tokenizer = Tokenizer.from_file(str(MODEL / "tokenizer.json"))
    content = "\n\n" + result["text"] + "\n\nWhat happened at the door?"
    text = f"<|turn>user\n{content}<turn|>\n<|turn>model\n<|channel>thought\n<channel|>"
    ids = [2, *tokenizer.encode(text, add_special_tokens=False).ids]  # 2: <bos>, as the image goldens
    pixels = torch.from_numpy(result["pixel_values_videos"]).float()
    positions = torch.from_numpy(result["video_position_ids"]).long()
    frames_per_video = torch.tensor([len(pixels)])
    generated, gap = greedy(
        model, ids, 24, pixel_values_videos=pixels, video_position_ids=positions, num_frames_per_video=frames_per_video
    )
    return {
        "frames_file": f"{QUESTION_CLIP}.npz",
        "fps": 2.0,
        "budget": 70,
        "question": "What happened at the door?",
        "prompt_ids": ids,
        "greedy_ids": generated,
        "min_top2_gap": round(gap, 6),
    }


def main() -> None:
    """Write the clips and goldens; check the rebuilt model against the fixture's image golden first."""
    model = tiny_model()
    image_case = next(c for c in json.loads((MODEL / "goldens.json").read_text())["multimodal"] if c["name"] == "image")
    from tiny_media_goldens import image_inputs

    pixels = image_inputs([MODEL / p for p in image_case["images"]], image_case["image_budget"])
    ids, _ = greedy(
        model,
        image_case["prompt_ids"],
        len(image_case["greedy_ids"]),
        pixel_values=torch.from_numpy(pixels["pixel_values"]).float(),
        image_position_ids=torch.from_numpy(pixels["image_position_ids"]).long(),
    )
    assert ids == image_case["greedy_ids"], "the rebuilt model is not the fixture's"
    document = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "clips": clip_goldens(),
        "question": question_golden(model),
    }
    (MODEL / "video_goldens.json").write_text(json.dumps(document) + "\n", encoding="utf-8")
    print(f"wrote {len(document['clips'])} clip goldens and a question golden to {MODEL}")


if __name__ == "__main__":
    main()
