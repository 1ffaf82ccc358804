"""neurolake: a distributed activation data lake and query engine for ASR debugging."""

__version__ = "0.1.0"
