"""The demo architecture with small random weights, as a ``python:MODULE:FACTORY`` model.

Pipeline tests use it where the trained demo weights are not needed: it has the
demo's tokens (letters), so labels work, and builds in milliseconds.
"""

from __future__ import annotations

from neurolake.models.demo import DEMO_TOKENS, DemoModelConfig, build_demo_model


def build():
    model = build_demo_model(DemoModelConfig(n_mels=32, channels=24, n_upper_layers=1, dropout=0.0), seed=0)
    model.tokens = list(DEMO_TOKENS)
    return model.eval()
