"""A stand-in for a GPU's forward pass: wav2vec 2.0 base's outputs at almost no compute.

``python:standin_model:build`` (with this directory on ``PYTHONPATH``) gives what the
pipeline receives from wav2vec 2.0 base (50 frames/s at 16 kHz, 12 blocks of 768 units, 29
CTC tokens, blank first, ``|`` between words) from table look-ups instead of a network, so
that an ingest of it measures the CPU side of a sweep: capture, labels, compression, writes
and commits, as they would run beside a GPU whose forward costs the CPUs nothing.

Each frame's values are rows of random tables picked by a hash of the frame's samples:
dense, hardly compressible float16 like a transformer's outputs, different for every frame.
On a CPU the look-ups and the capture's copies run on the CPUs too (beside a GPU they would
not), so the rate measured is a lower bound of what the CPUs sustain.
"""

from __future__ import annotations

import torch
from torch import nn

TOKENS = ["-", "|", "'"] + [chr(ord("A") + i) for i in range(26)]
HOP = 320  # samples per frame: 50 frames/s at 16 kHz
ROWS = 1024  # rows per table


class _Block(nn.Module):
    """One block's output: a table row per frame."""

    def __init__(self, units: int, seed: int) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("table", torch.randn(ROWS, units, generator=generator))
        self.shift = 97 * seed

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.table[(index + self.shift) % ROWS]


class StandIn(nn.Module):
    """wav2vec 2.0 base's output geometry; the factory contract of ``python:`` specs."""

    tokens = TOKENS

    def __init__(self, layers: int = 12, units: int = 768) -> None:
        super().__init__()
        self.layers = nn.ModuleList(_Block(units, seed=i) for i in range(layers))
        generator = torch.Generator().manual_seed(layers)
        logits = torch.randn(ROWS, len(TOKENS), generator=generator) * 4
        # Blank on about two frames in three, as a trained CTC model's output: transcripts
        # of about the reference's length, so that labelling costs what it would.
        logits[:, 0] += 10.0
        self.register_buffer("logits", logits)

    def num_frames(self, num_samples: int) -> int:
        return num_samples // HOP

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        batch, samples = waveforms.shape
        frames = samples // HOP
        per_frame = waveforms[:, : frames * HOP].reshape(batch, frames, HOP)
        index = (per_frame[..., ::8].abs().sum(-1) * 9973).long() % ROWS
        for block in self.layers:
            block(index)
        return torch.log_softmax(self.logits[index], dim=-1)


def build() -> StandIn:
    return StandIn()
