"""Streaming corpora through models into the lake."""

# Longest utterance an ingest takes by default, in seconds: a model's memory grows with the
# audio it is given at once (about 170 MB per minute of audio was measured on an actor).
DEFAULT_MAX_DURATION_S = 600.0
