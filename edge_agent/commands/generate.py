"""`edge-agent generate`: run the text model on one prompt, streaming the answer."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from edge_agent.config.model import ModelConfig
from edge_agent.model.runtime.engine import EngineError, EngineOptions, TextEngine
from edge_agent.model.runtime.generate import ContextLengthError, GenerationSettings, generate
from edge_agent.model.runtime.sampling import SamplingParams
from edge_agent.model.runtime.tokenizer import Tokenizer
from edge_agent.model.store.files import VARIANT_SUFFIXES, ModelFilesError, locate_model
from edge_agent.prompt.chat import Message, render_prompt

EXIT_USAGE, EXIT_FAILED = 2, 1


def _prompt_ids(text: str) -> list[int]:
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--prompt-ids must be integers separated by commas, got {text!r}") from None
    if not ids:
        raise ValueError("--prompt-ids is empty")
    return ids


def engine_options(args: argparse.Namespace) -> EngineOptions:
    """The engine options a node would use for this model (its config defaults), with --threads."""
    exact = {"int8_activations": False, "quantize_head": "keep"} if args.file_numerics else {}
    model = ModelConfig(path=args.model, variant=args.variant, intra_op_threads=args.threads, **exact)
    options = EngineOptions.from_config(model)
    if args.file_numerics:  # the fused kernels round differently from the exported chains
        options = replace(options, rewrites=replace(options.rewrites, fused_ops=False))
    return options


def sampling_from_args(args: argparse.Namespace, defaults: dict[str, object]) -> SamplingParams:
    """Sampling from the command line, falling back to the model's generation_config.json."""
    if args.greedy:
        return SamplingParams(seed=args.seed)
    sampled = args.temperature is not None or bool(defaults.get("do_sample"))
    temperature = args.temperature if args.temperature is not None else float(str(defaults.get("temperature", 1.0)))
    return SamplingParams(
        temperature=temperature if sampled else 0.0,
        top_k=args.top_k if args.top_k is not None else int(str(defaults.get("top_k", 0))),
        top_p=args.top_p if args.top_p is not None else float(str(defaults.get("top_p", 1.0))),
        min_p=args.min_p if args.min_p is not None else float(str(defaults.get("min_p", 0.0))),
        repetition_penalty=args.repetition_penalty,
        seed=args.seed,
    )


def run_generate(args: argparse.Namespace) -> int:
    """Load the model, generate, print."""
    try:
        if args.prompt_ids is not None:
            _prompt_ids(args.prompt_ids)  # a bad list is reported before the model loads
        files = locate_model(args.model, args.variant)
        tokenizer = Tokenizer(args.model)
        engine = TextEngine(files, engine_options(args))
        if args.prompt_ids is not None:
            prompt_ids = _prompt_ids(args.prompt_ids)
        elif args.raw:
            prompt_ids = tokenizer.encode(args.prompt)
        else:
            turns = ([Message("system", args.system)] if args.system else []) + [Message("user", args.prompt)]
            prompt_ids = tokenizer.encode(render_prompt(turns, thinking=args.think))
        bad = [i for i in prompt_ids if not 0 <= i < files.info.vocab_size]
        if bad:
            print(
                f"error: token ids outside the vocabulary (0..{files.info.vocab_size - 1}): {bad[:5]}", file=sys.stderr
            )
            return EXIT_USAGE
        settings = GenerationSettings(
            max_new_tokens=args.max_new_tokens,
            max_context=min(args.max_context, files.info.max_position_embeddings),
            eos_token_ids=frozenset() if args.ignore_eos else frozenset(files.generation.eos_token_ids),
            sampling=sampling_from_args(args, files.generation.sampling),
        )
        stream = None if args.json else (lambda text: print(text, end="", flush=True))
        result = generate(engine, prompt_ids, settings, tokenizer.stream(), on_text=stream)
    except (ModelFilesError, EngineError, ContextLengthError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        print(
            json.dumps(
                {
                    "prompt_ids": result.prompt_ids,
                    "ids": result.ids,
                    "text": result.text,
                    "finish_reason": result.finish_reason,
                    "prefill_tokens_per_s": round(result.prefill_tokens_per_s, 2),
                    "decode_tokens_per_s": round(result.decode_tokens_per_s, 2),
                    "ttft_ms": round(result.ttft_s * 1000, 2),
                }
            )
        )
    else:
        print()
    return 0


def register(verbs: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `generate` verb."""
    parser = verbs.add_parser("generate", help="generate text from one prompt with a Gemma 4 ONNX export")
    parser.add_argument("--model", type=Path, required=True, help="model directory (a Gemma 4 ONNX export)")
    parser.add_argument("--variant", default="q4", help=f"which graphs: {', '.join(VARIANT_SUFFIXES)} (default q4)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="the prompt text (wrapped as one user turn unless --raw)")
    source.add_argument("--prompt-ids", help="token ids, comma-separated (used as they are)")
    parser.add_argument("--raw", action="store_true", help="do not wrap the prompt in the chat format")
    parser.add_argument("--system", help="a system instruction")
    parser.add_argument("--think", action="store_true", help="let the model think before answering")
    add_generation_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON object with ids, text and speed")
    parser.set_defaults(handler=run_generate)


def add_generation_arguments(parser: argparse.ArgumentParser) -> None:
    """Length, sampling and thread options shared by `generate` and `ask`."""
    parser.add_argument("--max-new-tokens", type=int, default=256, help="longest answer (default 256)")
    parser.add_argument("--max-context", type=int, default=4096, help="prompt + answer limit (default 4096)")
    parser.add_argument("--greedy", action="store_true", help="always take the most likely token")
    parser.add_argument("--temperature", type=float, help="sampling temperature (default: the model's)")
    parser.add_argument("--top-k", type=int, help="sample from the k most likely tokens")
    parser.add_argument("--top-p", type=float, help="sample from the smallest set with this probability")
    parser.add_argument("--min-p", type=float, help="drop tokens below this fraction of the best one")
    parser.add_argument("--repetition-penalty", type=float, default=1.0, help="penalise repeats (default 1.0: off)")
    parser.add_argument("--seed", type=int, help="random seed, for repeatable sampling")
    parser.add_argument("--ignore-eos", action="store_true", help="do not stop at end-of-turn tokens")
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: one per core)")
    parser.add_argument(
        "--file-numerics",
        action="store_true",
        help="compute as the model files say (INT4 kernels in fp32, head as exported), as the reference client "
        "does: for comparing ids; default: the node's faster int8 activations",
    )
