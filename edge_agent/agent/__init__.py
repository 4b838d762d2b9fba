"""The agent: model jobs from motion, timers, questions and utterances; answers and tool calls as results."""
