"""The trained demo model with a planted fault, as a ``python:MODULE:FACTORY`` model.

Four units of ``conv7`` (those with the largest outgoing head weights, so active on speech)
get a strong extra weight towards the CTC blank: wherever they fire, letters are deleted.
On synthetic speech the character error rate goes from about 0.2 to about 0.7; zeroing
the four units gives the clean model's rate back, and four other units do not.
"""

from __future__ import annotations

import torch

from neurolake.models import load_model
from neurolake.models.demo import DEMO_TOKENS

LAYER = "conv7"
FAULT = 3.0


def planted_units(model: torch.nn.Module) -> list[int]:
    norms = model.head.weight.detach()[:, :, 0].norm(dim=0)
    return sorted(torch.argsort(norms, descending=True)[:4].tolist())


def build() -> torch.nn.Module:
    model = load_model("demo").module
    with torch.no_grad():
        model.head.weight[0, planted_units(model), 0] += FAULT
    model.tokens = list(DEMO_TOKENS)
    return model.eval()
