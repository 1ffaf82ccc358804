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


BLOCK_DRIVERS = (89, 156)  # conv6 units active on about a quarter of the frames
BLOCK_DRIVER_SCALES = (7.35, 7.07)  # their 90th percentiles on synthetic speech
DRIVE = 3.0


def build_block() -> torch.nn.Module:
    """:func:`build_confusion` with the fault reaching down a layer: two ``conv6`` units, barely
    connected to the four ``conv7`` units in the trained model (the weakest total weight into
    them among active units), now drive each of them by ``DRIVE`` times its 90th percentile
    when both are at theirs. A block found from the ``conv7`` units should reach them: on 24
    synthetic utterances unit 156 then scores 6.3 (gradient x activation on the E -> Z frames)
    against at most 2.7 for any other conv6 unit, and the character error rate is 0.36."""
    model = build_confusion()
    conv = dict(model.named_modules())["conv7.conv"]
    centre = conv.kernel_size[0] // 2
    with torch.no_grad():
        for unit, scale in zip(CONFUSION_UNITS, CONFUSION_SCALES, strict=True):
            for driver, driver_scale in zip(BLOCK_DRIVERS, BLOCK_DRIVER_SCALES, strict=True):
                conv.weight[unit, driver, centre] += DRIVE * scale / (2 * driver_scale)
    return model.eval()


def build() -> torch.nn.Module:
    model = load_model("demo").module
    with torch.no_grad():
        model.head.weight[0, planted_units(model), 0] += FAULT
    model.tokens = list(DEMO_TOKENS)
    return model.eval()
