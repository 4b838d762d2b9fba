"""The Gemma 4 runtime: model files, onnxruntime engine, tokenizer, chat format, generation."""
