"""edge-agent as a library for robots and kiosks: load a Gemma 4 export once, ask it with text, images and audio.

from edge_agent.api import Model

with Model.load("models/gemma-4-E2B-it-ONNX") as model:
    print(model.ask("What is on the table?", images=["frame.jpg"]))
    door_open = model.ask("Is the garage door open?", images=[frame], schema={"type": "boolean"})
    for piece in model.stream("Tell me a story.", max_new_tokens=200):
        print(piece, end="", flush=True)
"""

from edge_agent.agent.watch import InvalidAnswerError
from edge_agent.api.inputs import AudioLike, ImageLike, ToolLike
from edge_agent.api.model import Model
from edge_agent.api.reply import AskOptions, ModelError, Reply
from edge_agent.messages import ToolCall, ToolSpec

__all__ = [
    "AskOptions",
    "AudioLike",
    "ImageLike",
    "InvalidAnswerError",
    "Model",
    "ModelError",
    "Reply",
    "ToolCall",
    "ToolLike",
    "ToolSpec",
]
