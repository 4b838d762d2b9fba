"""Encoder time by kernel: the fp32 graph, the q4 graph as written, and the q4 graph with int8 activations.

The engine applies its MatMulNBits `accuracy_level` rewrite to the decoder only; the encoders run as the files
say (our q4 files leave the level unset: fp32 compute). This times each encoder graph alone through edge-agent's
own session builder (engine.open_session, the same options) on edge-agent's own preprocessing, for:
- vision_encoder at image budgets 70 and 280 (one 1280x720 camera frame; a clip is a batch of 70-token frames);
- audio_encoder on a 5 s voice clip;
with the variants fp32, q4 (level as written) and q4 at level 4 (rewritten in memory, weights read from the file).
Also the largest |difference| of each variant's features from fp32: on the random-weight benchmark model (16 layers
of random weights with clipped linears amplify any change) it only shows that each variant runs, not a trained
model's error; judge fidelity on real weights (bench/fidelity.py's way).
Run: .venv/bin/python bench/encoder_kernels.py --model ~/.cache/edge-agent/bench-models/e2b --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from edge_agent.model.media.audio import audio_features
from edge_agent.model.media.vision import preprocess_image
from edge_agent.model.runtime.engine import EngineOptions, open_session
from edge_agent.model.runtime.graph_cache import PreparedGraph
from edge_agent.model.runtime.graph_rewrite import INT8_ACTIVATIONS, Rewrites, load_proto, set_accuracy_level

sys.path.insert(0, str(Path(__file__).resolve().parent))
from media_costs import DEFAULT_MODEL, load_average
from multimodal import camera_frame, speech

Feeds = dict[str, np.ndarray]


def sessions(onnx_dir: Path, graph: str, threads: int) -> dict[str, ort.InferenceSession]:
    """fp32, q4 as written, q4 at accuracy level 4."""
    options = EngineOptions(intra_op_threads=threads)
    providers = ["CPUExecutionProvider"]
    proto = load_proto(str(onnx_dir / f"{graph}_q4.onnx"))
    changed = set_accuracy_level(proto, Rewrites(accuracy_level=INT8_ACTIVATIONS))
    level4 = PreparedGraph(proto.SerializeToString(), onnx_dir)
    return {
        "fp32": open_session(onnx_dir / f"{graph}.onnx", options, providers),
        "q4": open_session(onnx_dir / f"{graph}_q4.onnx", options, providers),
        f"q4 level 4 ({changed} nodes)": open_session(onnx_dir / f"{graph}_q4.onnx", options, providers, level4),
    }


def vision_feeds() -> dict[str, Feeds]:
    """Encoder inputs of one frame at 70 and 280 (a clip's frames run as a batch of 70-token frames: linear)."""
    frame = camera_frame()
    feeds: dict[str, Feeds] = {}
    for budget in (70, 280):
        image = preprocess_image(frame, budget)
        feeds[f"image {budget}"] = {
            "pixel_values": image.pixel_values[None].astype(np.float32),
            "pixel_position_ids": image.position_ids[None].astype(np.int64),
        }
    return feeds


def audio_feeds() -> dict[str, Feeds]:
    """Encoder inputs of a 5 s voice clip."""
    clip = audio_features(speech(5.0))
    return {"voice 5 s": {"input_features": clip.features[None], "input_features_mask": clip.mask[None]}}


def timed(session: ort.InferenceSession, feeds: Feeds, repeat: int) -> tuple[float, np.ndarray]:
    """Median ms over `repeat` runs after a warm-up, and the output."""
    (out,) = session.run(None, feeds)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), np.asarray(out, dtype=np.float32)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"load before: {load_average()}")
    for graph, cases in (("vision_encoder", vision_feeds()), ("audio_encoder", audio_feeds())):
        variants = sessions(args.model / "onnx", graph, args.threads)
        for case, feeds in cases.items():
            reference = None
            for name, session in variants.items():
                ms, out = timed(session, feeds, args.repeat)
                reference = out if reference is None else reference
                diff = float(np.abs(out - reference).max())
                scale = float(np.abs(reference).max()) or 1.0
                print(
                    f"{graph:15s} {case:16s} {name:24s} {ms:9.1f} ms   max |diff| vs fp32 {diff:.4f} "
                    f"({diff / scale:.1%} of max |fp32|)"
                )
        del variants
    print(f"load after:  {load_average()}")


if __name__ == "__main__":
    main()
