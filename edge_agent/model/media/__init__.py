"""Images and audio into model inputs, equal to transformers' Gemma 4 processors; pure numpy, no sessions."""
