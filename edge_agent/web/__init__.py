"""The HTTP server: OpenAI- and Ollama-compatible APIs on the node's model queue (wiring: it uses the agent)."""
