"""A small Gemma-style tokenizer: BPE with byte fallback, '▁' for spaces, and Gemma 4's control tokens."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

# Gemma's first ids, then the Gemma 4 control tokens the chat template uses.
SPECIAL_TOKENS = [
    "<pad>",
    "<eos>",
    "<bos>",
    "<unk>",
    "<mask>",
    "<|turn>",
    "<turn|>",
    "<|tool>",
    "<tool|>",
    "<|tool_call>",
    "<tool_call|>",
    "<|tool_response>",
    "<tool_response|>",
    '<|"|>',
    "<|think|>",
    "<|channel>",
    "<channel|>",
    "<|image>",
    "<|image|>",
    "<image|>",
    "<|audio>",
    "<|audio|>",
    "<audio|>",
    "<|video|>",
]
CORPUS = (
    """
You are a helpful assistant running on a small computer at home. Is the garage door open? The garage door is
closed. Turn on the kitchen light. Turn off the living room light. What time is it? It is half past seven in the
evening. Is there a person at the front door? There is a package on the porch. The temperature in the bedroom is
twenty one degrees. Please open the blinds in the morning and close them at night. The camera sees a car in the
driveway, a cat on the fence and a bicycle near the wall. Answer with yes or no. The answer is yes. The answer is
no. Call the tool to set the light state to on. The user asked a question about the image and the audio.
model user system thought tool call response description parameters properties required type string number
integer boolean object array enum value name state brightness room light door open closed person car time
"""
    * 3
)


def build_tokenizer(vocab_size: int, corpus: str = CORPUS) -> tuple[Tokenizer, dict[str, int]]:
    """Train on `corpus`; ids: specials first, then the 256 byte tokens, then the learnt pieces."""
    trainer_model = Tokenizer(models.BPE(unk_token="<unk>"))
    trainer_model.normalizer = normalizers.Replace(" ", "▁")
    trainer_model.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    learnt = vocab_size - len(SPECIAL_TOKENS) - 256
    trainer = trainers.BpeTrainer(vocab_size=learnt, show_progress=False, special_tokens=[])
    trainer_model.train_from_iterator(corpus.split("\n"), trainer)
    trained = trainer_model.model
    pieces = sorted(trainer_model.get_vocab().items(), key=lambda item: item[1])
    vocab: dict[str, int] = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for piece, _ in pieces:
        if piece not in vocab and len(vocab) < vocab_size:
            vocab[piece] = len(vocab)
    unused = 0
    while len(vocab) < vocab_size:  # Gemma's vocabulary also carries <unusedN> placeholders
        vocab[f"<unused{unused}>"] = len(vocab)
        unused += 1
    merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in _merges(trained)]
    merges = [m for m in merges if m[0] in vocab and m[1] in vocab and m[0] + m[1] in vocab]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    tokenizer.pre_tokenizer = pre_tokenizers.Split("▁", behavior="merged_with_next")
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()])
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return tokenizer, {token: vocab[token] for token in SPECIAL_TOKENS}


def _merges(model: models.Model) -> list[object]:
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        files = model.save(tmp)
        merges_file = next(Path(f) for f in files if f.endswith("merges.txt"))
        lines = merges_file.read_text(encoding="utf-8").splitlines()
    return [json.loads(json.dumps(line)) for line in lines if line and not line.startswith("#version")]
