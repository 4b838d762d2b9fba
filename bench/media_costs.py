"""Token and time costs of images, a voice clip and video clips at E2B shape, through edge-agent's own answer path.

For each case, through Answerer.answer (preprocess, encoder, merge, prefill, first token; no prefix cache, a fresh
request each run): soft tokens, prompt tokens, preprocess / encoder / prefill ms, time to first token and the
process's peak RSS during that case (VmHWM, reset before each case through /proc/self/clear_refs; the
RSS at the case's start beside it). Cases:
- one 1280x720 camera frame at image budgets 70, 140 and 280;
- a 5 s voice clip (the demo's spoken WAV, repeated);
- a 4-frame and a 16-frame clip (frames sampled by edge-agent's read_video from deploy/demo/garage.mp4, scaled to
  1280x720 as a camera delivers them) at the default 70 soft tokens per frame.
Medians of --repeat runs after one warm-up. The model is the E2B-shaped benchmark model with its encoders:
    .venv-export/bin/python bench/build_bench_model.py --preset e2b --encoders
    .venv/bin/python bench/media_costs.py --model ~/.cache/edge-agent/bench-models/e2b --variant q4 --threads 2
Load averages are printed before and after: figures from a busy machine are upper bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2

from edge_agent.config.model import ModelConfig
from edge_agent.model.media.video import Clip, read_video
from edge_agent.model.runtime.answer import Answer, Answerer, Question
from edge_agent.model.runtime.engine import EngineOptions, TextEngine
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from multimodal import camera_frame, speech

REPO = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = Path.home() / ".cache" / "edge-agent" / "bench-models" / "e2b"
IMAGE_BUDGETS = (70, 140, 280)
CLIP_FRAMES = (4, 16)
CAMERA_SIZE = (1280, 720)
ONE_TOKEN = GenerationSettings(max_new_tokens=1, max_context=8192)


def load_average() -> str:
    """`uptime` as printed (load averages over 1, 5 and 15 minutes)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def status_mb(field: str) -> float:
    """A memory field of /proc/self/status in MB: VmHWM (peak RSS since the last reset) or VmRSS (now)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def camera_clip(frames: int) -> Clip:
    """`frames` frames of the demo video, sampled as the processor does, at camera resolution."""
    clip = read_video(REPO / "deploy" / "demo" / "garage.mp4", frames)
    scaled = tuple(cv2.resize(f, CAMERA_SIZE, interpolation=cv2.INTER_CUBIC) for f in clip.frames)
    return Clip(scaled, clip.timestamps)


def cases() -> dict[str, Question]:
    """Every measured question, by name."""
    frame = camera_frame()
    asks = {f"image_{b}": Question("Is the garage door open?", images=(frame,), image_budget=b) for b in IMAGE_BUDGETS}
    asks["voice_5s"] = Question("What did I say?", audio=(speech(5.0),))
    for count in CLIP_FRAMES:
        asks[f"clip_{count}_frames"] = Question(
            "What happened at the garage?", videos=(camera_clip(count),), video_frames=count
        )
    return asks


def measure(answerer: Answerer, question: Question, repeat: int) -> dict[str, Any]:
    """Medians over `repeat` runs after a warm-up, and the case's peak RSS."""
    rss_before = status_mb("VmRSS")
    reset = reset_peak_rss()
    answerer.answer(question, ONE_TOKEN)  # warm-up
    runs: list[Answer] = [answerer.answer(question, ONE_TOKEN) for _ in range(repeat)]
    times = {name: statistics.median(r.times.as_ms()[name] for r in runs) for name in runs[0].times.as_ms()}
    first = runs[0]
    return {
        **times,
        "image_tokens": sum(first.image_tokens),
        "audio_tokens": sum(first.audio_tokens),
        "video_tokens": sum(first.video_tokens),
        "prompt_tokens": first.prompt_tokens,
        "prefilled_tokens": first.prefilled_tokens,
        "rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(status_mb("VmHWM"), 1) if reset else None,
    }


def print_row(name: str, f: dict[str, Any]) -> None:
    """One case on one line."""
    soft = f["image_tokens"] + f["audio_tokens"] + f["video_tokens"]
    peak = f"{f['peak_rss_mb']:6.0f}" if f["peak_rss_mb"] is not None else "   n/a"
    rss = f"{peak} MB (before {f['rss_before_mb']:.0f})"
    print(
        f"{name:15s} soft {soft:5d}  prompt {f['prompt_tokens']:5d}  preprocess {f['preprocess_ms']:8.1f}  "
        f"encoder {f['encoder_ms']:9.1f}  prefill {f['prefill_ms']:9.1f}  TTFT {f['ttft_ms']:9.1f} ms  peak RSS {rss}"
    )


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--variant", default="q4")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="case names to run (default: all)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    before = load_average()
    print(f"load before: {before}")
    options = replace(EngineOptions.from_config(ModelConfig(path=args.model)), intra_op_threads=args.threads)
    files = locate_model(args.model, args.variant)
    if files.vision_encoder is None or files.audio_encoder is None:
        raise SystemExit(
            f"{args.model}: no encoders for {args.variant}; build them with build_bench_model.py --encoders"
        )
    engine = TextEngine(files, options)  # the daemon's defaults, with --threads
    answerer = Answerer(engine, Tokenizer(args.model), prefix_cache_bytes=0)
    figures: dict[str, Any] = {}
    for name, question in cases().items():
        if args.only and name not in args.only:
            continue
        figures[name] = measure(answerer, question, args.repeat)
        print_row(name, figures[name])
    after = load_average()
    print(f"load after:  {after}")
    if args.json:
        report = {"model": str(args.model), "variant": args.variant, "threads": args.threads, "repeat": args.repeat}
        report.update(load_before=before, load_after=after, cases=figures, pid=os.getpid())
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
