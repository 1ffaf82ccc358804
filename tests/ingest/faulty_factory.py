"""The test model with a planted fault: it fails on any utterance that starts with 0.1 s of a
constant 0.5 (a marker the tests write into chosen FLAC files), and works on everything else.

``build_raising`` raises an exception in the forward pass; ``build_crashing`` kills its process,
as an out-of-memory kill or a crash in native code would.
"""

from __future__ import annotations

import os

import torch

from tests.models.demo_factory import build

MARKER_SAMPLES = 1600
MARKER_VALUE = 0.5


def _planted(waveforms: torch.Tensor) -> bool:
    head = waveforms[:, :MARKER_SAMPLES]
    return head.shape[1] == MARKER_SAMPLES and bool((head == MARKER_VALUE).all(dim=1).any())


def _with_fault(crash: bool):
    model = build()

    def check(module, args):
        if _planted(args[0]):
            if crash:
                os._exit(3)
            raise RuntimeError("planted fault: this model cannot take the marked utterance")

    model.register_forward_pre_hook(check)
    return model


def build_raising():
    return _with_fault(crash=False)


def build_crashing():
    return _with_fault(crash=True)
