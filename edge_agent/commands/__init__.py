"""The verbs of the `edge-agent` command, one module each with a `register(verbs)` function."""
