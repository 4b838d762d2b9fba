"""Build a tiny random-weight Gemma 4 with transformers' own classes and export it in the public ONNX layout.

Writes <out>/onnx/{embed_tokens,decoder_model_merged}{,_q4}.onnx (+ .onnx_data sidecars), config.json,
generation_config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja, manifest.json and
goldens.json (greedy ids by full recompute in PyTorch float64, last-position logits). Multimodal presets also
get vision_encoder / audio_encoder graphs, example inputs in <out>/examples and `multimodal` goldens (see
tiny_multimodal.py). Needs the `export` extra (torch==2.13.0, transformers); tests never run it. Usage:
    python models/build_tiny_gemma4.py --preset tiny-gemma4 --out models/tiny-gemma4
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from onnx import external_data_helper
from transformers import Gemma4ForCausalLM, Gemma4TextConfig
from transformers.cache_utils import DynamicCache

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import tiny_media_goldens
import tiny_multimodal
from tiny_metadata import write_metadata
from tiny_tokenizer import build_tokenizer

PRESETS: dict[str, dict[str, Any]] = {
    "tiny-gemma4": {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 6,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 16,
        "global_head_dim": 32,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention"] * 2,
        "sliding_window": 8,
        "hidden_size_per_layer_input": 8,
        "num_kv_shared_layers": 2,
    },
    "tiny-gemma4-b": {
        "hidden_size": 96,
        "intermediate_size": 160,
        "num_hidden_layers": 8,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 24,
        "global_head_dim": 48,
        "layer_types": ["sliding_attention"] * 3 + ["full_attention"] + ["sliding_attention"] * 3 + ["full_attention"],
        "sliding_window": 12,
        "hidden_size_per_layer_input": 4,
        "num_kv_shared_layers": 3,
    },
}
MULTIMODAL_PRESETS = {"tiny-gemma4"}  # also gets vision_encoder and audio_encoder graphs
VOCAB = 1024
PROMPTS = [
    "Is the garage door open?",
    "Turn on the kitchen light and tell me the time in the living room, please.",
]


def text_config(preset: str) -> Gemma4TextConfig:
    """The Gemma 4 text config of a preset, with the real model's fixed fields."""
    return Gemma4TextConfig(
        vocab_size=VOCAB,
        vocab_size_per_layer_input=VOCAB,
        max_position_embeddings=512,
        final_logit_softcapping=30.0,
        pad_token_id=0,
        eos_token_id=1,
        bos_token_id=2,
        tie_word_embeddings=True,
        hidden_activation="gelu_pytorch_tanh",
        **copy.deepcopy(PRESETS[preset]),
    )


def spread_weights(model: torch.nn.Module, seed: int) -> None:
    """Wider random weights than transformers' init, so greedy decoding does not repeat one token."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in sorted(model.named_parameters()):
            if param.ndim == 2 and "embed" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.15)
            elif param.ndim == 2:
                param.copy_(torch.randn(param.shape, generator=generator) / param.shape[1] ** 0.5)
            elif "norm" in name:
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))


class EmbedWrapper(torch.nn.Module):
    """input_ids -> inputs_embeds, per_layer_inputs (the raw per-layer lookup; the decoder projects it).

    Image/audio/video placeholder ids are looked up as the pad id, as Gemma4Model.forward does in PyTorch.
    """

    def __init__(self, model: Gemma4ForCausalLM, media_ids: list[int]) -> None:
        super().__init__()
        self.text = model.model
        self.register_buffer("media_ids", torch.tensor(media_ids, dtype=torch.long))
        self.pad_id = int(model.config.pad_token_id)

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        is_media = (input_ids[..., None] == self.media_ids).any(dim=-1)  # torch.isin has no ONNX symbolic
        ids = torch.where(is_media, self.pad_id, input_ids)
        embeds = self.text.embed_tokens(ids)
        return embeds, self.text.get_per_layer_inputs(ids, embeds)


class DecoderWrapper(torch.nn.Module):
    """One step of the decoder over a cache of the non-shared layers' keys and values."""

    def __init__(self, model: Gemma4ForCausalLM, cache_layers: int) -> None:
        super().__init__()
        self.model = model
        self.cache_layers = cache_layers

    def forward(self, inputs_embeds, per_layer_inputs, attention_mask, position_ids, *past):  # type: ignore[no-untyped-def]
        cache = DynamicCache()
        for layer in range(self.cache_layers):
            cache.update(past[2 * layer], past[2 * layer + 1], layer)
        out = self.model(
            inputs_embeds=inputs_embeds,
            per_layer_inputs=per_layer_inputs,
            attention_mask=attention_mask,
            position_ids=position_ids,
            past_key_values=cache,
            use_cache=True,
        )
        presents = []
        for layer in range(self.cache_layers):
            presents += [cache.layers[layer].keys, cache.layers[layer].values]
        return (out.logits, *presents)


def kv_shapes(model: Gemma4ForCausalLM, cache_layers: int) -> list[tuple[int, int]]:
    """(kv heads, head dim) of each cached layer."""
    shapes = []
    for layer in model.model.layers[:cache_layers]:
        attention = layer.self_attn
        shapes.append((attention.k_proj.out_features // attention.head_dim, attention.head_dim))
    return shapes


def export(model: Gemma4ForCausalLM, config: Gemma4TextConfig, onnx_dir: Path, media_ids: list[int]) -> None:
    """Export embed_tokens.onnx and decoder_model_merged.onnx (fp32, weights in .onnx_data sidecars)."""
    cache_layers = config.num_hidden_layers - config.num_kv_shared_layers
    ids = torch.tensor([[2, 10, 11]], dtype=torch.long)
    embed = EmbedWrapper(model, media_ids)
    torch.onnx.export(
        embed,
        (ids,),
        str(onnx_dir / "embed_tokens.onnx"),
        input_names=["input_ids"],
        output_names=["inputs_embeds", "per_layer_inputs"],
        opset_version=18,
        dynamo=False,
        dynamic_axes={
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
            "per_layer_inputs": {0: "batch_size", 1: "sequence_length"},
        },
    )
    embeds, per_layer = embed(ids)
    past_len = 2
    past, names, axes = [], [], {}
    for layer, (heads, dim) in enumerate(kv_shapes(model, cache_layers)):
        for kind in ("key", "value"):
            past.append(torch.randn(1, heads, past_len, dim))
            names.append(f"past_key_values.{layer}.{kind}")
            axes[names[-1]] = {0: "batch_size", 2: "past_sequence_length"}
            axes[f"present.{layer}.{kind}"] = {0: "batch_size", 2: "total_sequence_length"}
    mask = torch.ones(1, past_len + 3, dtype=torch.long)
    positions = torch.arange(past_len, past_len + 3).unsqueeze(0)
    axes.update(
        {
            "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
            "per_layer_inputs": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size", 1: "sequence_length"},
        }
    )
    outputs = ["logits"] + [n.replace("past_key_values.", "present.") for n in names]
    torch.onnx.export(
        DecoderWrapper(model, cache_layers),
        (embeds, per_layer, mask, positions, *past),
        str(onnx_dir / "decoder_model_merged.onnx"),
        input_names=["inputs_embeds", "per_layer_inputs", "attention_mask", "position_ids", *names],
        output_names=outputs,
        dynamic_axes=axes,
        opset_version=18,
        dynamo=False,
    )
    for graph in ("embed_tokens", "decoder_model_merged"):
        externalize(onnx_dir / f"{graph}.onnx")


GRAPHS = ("embed_tokens", "decoder_model_merged", "vision_encoder", "audio_encoder")


def externalize(path: Path) -> None:
    """Move the weights into `<graph>.onnx_data`, as the public exports keep them.

    A graph over 2 GB comes from torch.onnx with one external file per tensor; only the files this graph
    references are deleted (after saving), so the files of another graph in the same folder survive.
    """
    model = onnx.load(str(path), load_external_data=False)
    sources = {
        entry.value
        for tensor in external_data_helper._get_all_tensors(model)
        if tensor.data_location == onnx.TensorProto.EXTERNAL
        for entry in tensor.external_data
        if entry.key == "location"
    }
    external_data_helper.load_external_data_for_model(model, str(path.parent))
    location = path.name + "_data"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=0,
    )
    for source in sources - {location}:
        (path.parent / source).unlink(missing_ok=True)


def quantize_q4(onnx_dir: Path, graphs: tuple[str, ...] = GRAPHS) -> None:
    """The `_q4` graphs of `graphs` present in `onnx_dir`: MatMul weights as 4-bit MatMulNBits (block 32, symmetric)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)

    for graph in (g for g in graphs if (onnx_dir / f"{g}.onnx").exists()):
        model = onnx.load(str(onnx_dir / f"{graph}.onnx"))
        quantizer = MatMulNBitsQuantizer(model, block_size=32, is_symmetric=True)
        quantizer.process()
        target = onnx_dir / f"{graph}_q4.onnx"
        onnx.save_model(
            quantizer.model.model,
            str(target),
            save_as_external_data=True,
            all_tensors_to_one_file=True,
            location=target.name + "_data",
            size_threshold=0,
        )


@torch.no_grad()
def greedy_full_recompute(model: Gemma4ForCausalLM, prompt: list[int], steps: int) -> tuple[list[int], float]:
    """Greedy ids, running the whole sequence at every step (no cache); also the smallest top-1/top-2 gap."""
    ids, gap = list(prompt), float("inf")
    for _ in range(steps):
        logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
        top = torch.topk(logits, 2).values
        gap = min(gap, float(top[0] - top[1]))
        ids.append(int(torch.argmax(logits)))
    return ids[len(prompt) :], gap


def build(preset: str, out: Path, chat_template: Path) -> None:
    """Build, export and write goldens for one preset."""
    torch.manual_seed(0)
    config = text_config(preset)
    config._attn_implementation = "eager"
    model = Gemma4ForCausalLM(copy.deepcopy(config)).eval()
    spread_weights(model, seed=len(preset))
    if out.exists():
        shutil.rmtree(out)
    (out / "onnx").mkdir(parents=True)
    tokenizer, tokens = build_tokenizer(VOCAB)
    tokenizer.save(str(out / "tokenizer.json"))
    write_metadata(out, config, tokens, PRESETS[preset]["global_head_dim"], chat_template)
    media_ids = [tokens[t] for t in ("<|image|>", "<|audio|>", "<|video|>")]
    export(model, config, out / "onnx", media_ids)
    multimodal, examples = None, {}
    if preset in MULTIMODAL_PRESETS:
        multimodal, examples = tiny_multimodal.add_encoders(model, config, tokens, out)
    quantize_q4(out / "onnx")
    reference = copy.deepcopy(model).double()  # goldens in float64: the exact answer the fp32 graphs approximate
    goldens = []
    short = [2, *tokenizer.encode("Is it open?", add_special_tokens=False).ids]
    prompts = [short] + [[2, *tokenizer.encode(p, add_special_tokens=False).ids] for p in PROMPTS]
    for prompt in prompts:
        ids, gap = greedy_full_recompute(reference, prompt, 32)
        logits = reference(input_ids=torch.tensor([prompt]), use_cache=False).logits[0, -1]
        goldens.append(
            {
                "prompt_ids": prompt,
                "greedy_ids": ids,
                "min_top2_gap": round(gap, 6),
                "last_logits": [round(float(x), 7) for x in logits.detach()],
            }
        )
    document: dict[str, Any] = {"window": config.sliding_window, "cases": goldens}
    if multimodal is not None:
        document["multimodal"] = tiny_media_goldens.multimodal_goldens(multimodal, tokenizer, tokens, examples)
    (out / "goldens.json").write_text(json.dumps(document) + "\n")
    from edge_agent.model.store.files import write_manifest

    write_manifest(out, name=preset)


def main() -> None:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--chat-template",
        type=Path,
        default=Path(__file__).resolve().parent / "tiny_chat_template.jinja",
        help="the model's chat_template.jinja (default: the short one for the tiny model)",
    )
    args = parser.parse_args()
    build(args.preset, args.out, args.chat_template)
    np.set_printoptions(precision=3)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
