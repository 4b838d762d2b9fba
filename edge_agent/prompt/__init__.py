"""Gemma 4's prompt format as data and pure functions: chat turns, tool syntax and the tool-call grammar."""
