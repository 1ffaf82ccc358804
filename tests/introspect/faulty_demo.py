"""The trained demo model with planted faults, as ``python:MODULE:FACTORY`` models.

:func:`build`: four units of ``conv7`` (those with the largest outgoing head weights, so active on speech)
get a strong extra weight towards the CTC blank: wherever they fire, letters are deleted.
On synthetic speech the character error rate goes from about 0.2 to about 0.7; zeroing
the four units gives the clean model's rate back, and four other units do not.

:func:`build_confusion`: a fault that only a few frames trip, as a scan should find it. Four
``conv7`` units that fire together on vowel frames (mostly E; on 24 synthetic utterances all
four exceed their 90th percentile on 75 of 2,700 frames) are wired to the token Z: each adds
``WIRE / scale`` to Z's logit, less a bias of ``WIRE * TRIP``, so Z wins where their summed
activations, each over its 90th percentile ``scale``, pass ``TRIP``: where all four fire, or
three of them strongly. On those 24 utterances 97 % of the frames where all four fire turn
into Z, and 2 % of the others; the character error rate goes from 0.19 to 0.30, mostly E and A
read as Z.
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


CONFUSION_UNITS = (46, 152, 183, 199)
CONFUSION_SCALES = (11.70, 27.82, 6.13, 3.00)  # each unit's 90th percentile on synthetic speech
WIRE, TRIP = 32.0, 8.0


def build_confusion() -> torch.nn.Module:
    model = load_model("demo").module
    z = DEMO_TOKENS.index("Z")
    with torch.no_grad():
        for unit, scale in zip(CONFUSION_UNITS, CONFUSION_SCALES, strict=True):
            model.head.weight[z, unit, 0] += WIRE / scale
        model.head.bias[z] -= WIRE * TRIP
    model.tokens = list(DEMO_TOKENS)
    return model.eval()


def build() -> torch.nn.Module:
    model = load_model("demo").module
    with torch.no_grad():
        model.head.weight[0, planted_units(model), 0] += FAULT
    model.tokens = list(DEMO_TOKENS)
    return model.eval()
