"""Cheap gates that decide when the model runs: motion for cameras, voice activity for the microphone."""
