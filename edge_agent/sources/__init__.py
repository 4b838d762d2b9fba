"""Inputs: cameras and the microphone, each behind a small Protocol with a file-backed implementation."""
