"""Gemma 4 on onnxruntime: `runtime` (sessions, generation), `media` (inputs), `store` (model files)."""
