"""Image and audio figures: preprocessing, encoder and time to first token, beside transformers' own processors.

Preprocessing is timed for edge-agent (numpy + OpenCV) and, in the same process on the same input, for
transformers' Gemma4ImageProcessorPil / Gemma4AudioFeatureExtractor (ratio = theirs / ours). Encoder time and
time to first token come from edge-agent's engine on --model (the tiny fixture by default: its encoders are
tiny, so those figures show the pipeline's own overhead, not a real model's compute).
Run with the export extra installed (it has transformers):
    .venv-export/bin/python bench/multimodal.py [--model models/tiny-gemma4] [--variant q4] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_agent.model.media.audio import audio_features, load_audio
from edge_agent.model.media.vision import preprocess_image
from edge_agent.model.runtime.answer import Answerer, Question
from edge_agent.model.runtime.engine import EngineOptions, TextEngine
from edge_agent.model.runtime.generate import GenerationSettings
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import locate_model

REPO = Path(__file__).resolve().parent.parent
BUDGETS = (70, 280)


def best_ms(run: Callable[[], object], repeat: int = 5) -> float:
    """Median of `repeat` runs after one warm-up, in ms."""
    run()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def camera_frame() -> np.ndarray:
    """A 1280x720 BGR frame from the demo video (what a camera hands the daemon)."""
    capture = cv2.VideoCapture(str(REPO / "deploy" / "demo" / "garage.mp4"))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise SystemExit("cannot read deploy/demo/garage.mp4")
    return cv2.resize(frame, (1280, 720), interpolation=cv2.INTER_AREA)


def speech(seconds: float) -> np.ndarray:
    """`seconds` of 16 kHz speech: the demo's spoken WAV, repeated."""
    clip = load_audio(REPO / "deploy" / "demo" / "voice.wav")
    return np.resize(clip, int(seconds * 16000)).astype(np.float32)


def preprocessing(frame: np.ndarray, audio: np.ndarray) -> dict[str, Any]:
    """Ours vs transformers' processors, same input, same process."""
    from PIL import Image
    from transformers.models.gemma4.feature_extraction_gemma4 import Gemma4AudioFeatureExtractor
    from transformers.models.gemma4.image_processing_pil_gemma4 import Gemma4ImageProcessorPil

    figures: dict[str, Any] = {}
    rgb = Image.fromarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    for budget in BUDGETS:
        processor = Gemma4ImageProcessorPil(max_soft_tokens=budget)
        ours = best_ms(lambda b=budget: preprocess_image(frame, b))
        theirs = best_ms(lambda p=processor: p([rgb], return_tensors="np"))
        figures[f"image_preprocess_{budget}"] = {"ours_ms": ours, "transformers_ms": theirs, "ratio": theirs / ours}
    extractor = Gemma4AudioFeatureExtractor()
    ours = best_ms(lambda: audio_features(audio))
    theirs = best_ms(lambda: extractor([audio], return_tensors="np"))
    figures["audio_features_5s"] = {"ours_ms": ours, "transformers_ms": theirs, "ratio": theirs / ours}
    return figures


def model_figures(
    model: Path, variant: str, frame: np.ndarray, audio: np.ndarray, threads: int | None
) -> dict[str, Any]:
    """Encoder time and time to first token through the whole answer path."""
    engine = TextEngine(locate_model(model, variant), EngineOptions(intra_op_threads=threads))
    answerer = Answerer(engine, Tokenizer(model))
    one_token = GenerationSettings(max_new_tokens=1, max_context=8192)
    figures: dict[str, Any] = {}
    asks = {f"image_{b}": Question("Is the garage door open?", images=(frame,), image_budget=b) for b in BUDGETS}
    asks["audio_5s"] = Question("What did I say?", audio=(audio,))
    for name, question in asks.items():
        answerer.answer(question, one_token)  # warm-up
        runs = [answerer.answer(question, one_token) for _ in range(3)]
        best = min(runs, key=lambda a: a.times.ttft_s)
        figures[name] = {**best.times.as_ms(), "soft_tokens": sum(best.image_tokens) + sum(best.audio_tokens)}
    return figures


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=REPO / "models" / "tiny-gemma4")
    parser.add_argument("--variant", default="q4")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    frame, audio = camera_frame(), speech(5.0)
    pre = preprocessing(frame, audio)
    for name, f in pre.items():
        print(
            f"{name:22s} ours {f['ours_ms']:8.2f} ms   transformers {f['transformers_ms']:8.2f} ms   "
            f"ratio {f['ratio']:5.2f}x"
        )
    run = model_figures(args.model, args.variant, frame, audio, args.threads)
    for name, f in run.items():
        print(
            f"{name:22s} {f['soft_tokens']:4d} soft tokens   preprocess {f['preprocess_ms']:7.2f}   encoder "
            f"{f['encoder_ms']:7.2f}   prefill {f['prefill_ms']:7.2f}   ttft {f['ttft_ms']:7.2f} ms"
        )
    if args.json:
        print(json.dumps({"model": str(args.model), "variant": args.variant, "preprocessing": pre, "answer": run}))


if __name__ == "__main__":
    main()
