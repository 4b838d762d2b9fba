"""The model at run time: onnxruntime sessions, the decode loop, sampling, constraints and the multimodal merge."""
