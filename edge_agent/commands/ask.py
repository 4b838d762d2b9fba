"""`edge-agent ask`: answer one question about image, audio and video files, streaming the answer."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from edge_agent.agent.references import ReferenceLibrary
from edge_agent.commands.common import EXIT_CONFIG, load_or_report
from edge_agent.commands.generate import add_generation_arguments, engine_options, sampling_from_args
from edge_agent.config.references import reference_image_problem
from edge_agent.model.media.audio import SAMPLE_RATE, AudioError, load_audio
from edge_agent.model.media.video import DEFAULT_NUM_FRAMES, DEFAULT_VIDEO_BUDGET, VideoError, read_video
from edge_agent.model.media.vision import BUDGETS, ImageError, load_image
from edge_agent.model.runtime.answer import Answerer, Question
from edge_agent.model.runtime.engine import EngineError, TextEngine
from edge_agent.model.runtime.feature_cache import ReferenceImage, reference_image
from edge_agent.model.runtime.generate import ContextLengthError, GenerationSettings
from edge_agent.model.runtime.media_prompt import MediaUnsupportedError
from edge_agent.model.runtime.multimodal import MediaMismatchError
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import VARIANT_SUFFIXES, ModelFiles, ModelFilesError, locate_model

EXIT_FAILED = 1
_EXPECTED = (
    ModelFilesError,
    EngineError,
    ContextLengthError,
    ImageError,
    AudioError,
    VideoError,
    MediaUnsupportedError,
    MediaMismatchError,
    ValueError,
)


def _check_encoders(files: ModelFiles, args: argparse.Namespace) -> None:
    missing = [
        f"{kind} (no onnx/{graph}{VARIANT_SUFFIXES[args.variant]}.onnx)"
        for kind, graph, wanted, present in (
            (
                "images",
                "vision_encoder",
                args.image or args.video or args.reference or args.reference_image,
                files.vision_encoder,
            ),
            ("audio", "audio_encoder", args.audio, files.audio_encoder),
        )
        if wanted and present is None
    ]
    if missing:
        raise MediaUnsupportedError(f"{args.model}: this model cannot take {' or '.join(missing)}")


class ConfigInvalidError(Exception):
    """The --config file is invalid (its problems are printed already)."""


def _references(args: argparse.Namespace) -> tuple[ReferenceImage, ...]:
    """The --reference names from the --config file, then the --reference-image NAME=FILE images."""
    named: tuple[ReferenceImage, ...] = ()
    if args.reference:
        if args.config is None:
            raise ValueError("--reference needs -c/--config (its 'references' section); or use --reference-image")
        config = load_or_report(args.config)
        if config is None:
            raise ConfigInvalidError(str(args.config))
        named = ReferenceLibrary(lambda: config.references).resolve(args.reference)
    given = []
    for item in args.reference_image:
        name, sep, file = item.partition("=")
        if not sep or not name or not file:
            raise ValueError(f"--reference-image {item!r}: expected NAME=FILE, e.g. rex=rex.jpg")
        problem = reference_image_problem(Path(file))
        if problem is not None:
            raise ImageError(f"--reference-image {name}: {problem}")
        given.append(reference_image(name, load_image(Path(file)), args.reference_budget))
    return named + tuple(given)


def run_ask(args: argparse.Namespace) -> int:
    """Read the files, load the model, answer, print."""
    try:
        references = _references(args)
        frames = tuple(load_image(path) for path in args.image)
        clips = (load_audio(args.audio, raw_rate=args.audio_rate),) if args.audio else ()
        if args.frames < 1:
            raise VideoError(f"--frames must be at least 1, not {args.frames}")
        videos = (read_video(args.video, args.frames),) if args.video else ()
        loading = time.monotonic()
        files = locate_model(args.model, args.variant)
        _check_encoders(files, args)
        encoders = ("image",) * bool(frames or videos or references) + ("audio",) * bool(clips)
        answerer = Answerer(TextEngine(files, engine_options(args), encoders=encoders), Tokenizer(args.model))
        load_s = time.monotonic() - loading
        settings = GenerationSettings(
            max_new_tokens=args.max_new_tokens,
            max_context=min(args.max_context, files.info.max_position_embeddings),
            eos_token_ids=frozenset() if args.ignore_eos else frozenset(files.generation.eos_token_ids),
            sampling=sampling_from_args(args, files.generation.sampling),
        )
        question = Question(
            args.question,
            frames,
            clips,
            args.system,
            args.budget,
            args.think,
            videos=videos,
            video_budget=args.video_budget,
            video_frames=args.frames,
            references=references,
        )
        stream = None if args.json else (lambda text: print(text, end="", flush=True))
        answer = answerer.answer(question, settings, on_text=stream)
    except ConfigInvalidError:
        return EXIT_CONFIG
    except _EXPECTED as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not args.json:
        print()
        return 0
    report = {
        "text": answer.text,
        "ids": answer.ids,
        "finish_reason": answer.finish_reason,
        "prompt_tokens": answer.prompt_tokens,
        "image_tokens": list(answer.image_tokens),
        "audio_tokens": list(answer.audio_tokens),
        "video_tokens": list(answer.video_tokens),
        "reference_tokens": list(answer.reference_tokens),
        "audio_truncated": answer.audio_truncated,
        "load_ms": round(load_s * 1000, 2),
        "timings_ms": answer.times.as_ms(),
        "decode_tokens_per_s": round(answer.decode_tokens_per_s, 2),
    }
    print(json.dumps(report))
    return 0


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `ask` verb."""
    parser = verbs.add_parser("ask", help="answer one question about image, audio and video files")
    parser.add_argument("question", help="the question, e.g. 'Is the garage door open?'")
    parser.add_argument("--model", type=Path, required=True, help="model directory (a Gemma 4 ONNX export)")
    parser.add_argument("--variant", default="q4", help=f"which graphs: {', '.join(VARIANT_SUFFIXES)} (default q4)")
    parser.add_argument(
        "--image", type=Path, action="append", default=[], help="a JPEG/PNG image; repeat for several (video frames)"
    )
    parser.add_argument("--audio", type=Path, help="a WAV, FLAC or raw (.raw/.pcm/.s16: 16-bit mono) recording")
    parser.add_argument(
        "--audio-rate", type=int, default=SAMPLE_RATE, help=f"sample rate of a raw recording (default {SAMPLE_RATE})"
    )
    parser.add_argument(
        "--budget", type=int, choices=BUDGETS, default=280, help="image soft tokens per image (default 280)"
    )
    parser.add_argument("--video", type=Path, help="a video file (anything OpenCV reads: MP4, AVI, MKV, ...)")
    parser.add_argument(
        "--frames",
        type=int,
        default=DEFAULT_NUM_FRAMES,
        help=f"frames sampled evenly from the video (default {DEFAULT_NUM_FRAMES}; all of a shorter one)",
    )
    parser.add_argument(
        "--video-budget",
        type=int,
        choices=BUDGETS,
        default=DEFAULT_VIDEO_BUDGET,
        help=f"image soft tokens per video frame (default {DEFAULT_VIDEO_BUDGET})",
    )
    parser.add_argument(
        "--reference", action="append", default=[], help="a reference image named in --config's 'references'; repeat"
    )
    parser.add_argument("-c", "--config", type=Path, help="the config file whose 'references' --reference names")
    parser.add_argument(
        "--reference-image", action="append", default=[], metavar="NAME=FILE", help="a reference image; repeat"
    )
    parser.add_argument(
        "--reference-budget", type=int, choices=BUDGETS, default=70, help="soft tokens per --reference-image (70)"
    )
    parser.add_argument("--system", help="a system instruction")
    parser.add_argument("--think", action="store_true", help="let the model think before answering")
    add_generation_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object with the answer and stage timings")
    parser.set_defaults(handler=run_ask)
