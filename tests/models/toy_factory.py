"""A small user model for the ``python:MODULE:FACTORY`` model spec tests.

It has the layouts an adapter must handle: a ``[B, units, T]`` convolution four
times finer in time than the output, a ``[B, T, units]`` recurrent layer that
returns a tuple, and a linear head.
"""

from __future__ import annotations

import torch
from torch import nn

TOKENS = ["-", "|", "A", "B", "C"]


class ToyCTC(nn.Module):
    """``[B, samples] -> [B, samples // 320, 5]`` log-probabilities at 50 frames/s."""

    tokens = TOKENS

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Conv1d(1, 6, kernel_size=80, stride=80)  # 200 frames/s
        self.act = nn.Tanh()
        self.downsample = nn.Conv1d(6, 8, kernel_size=4, stride=4)  # 50 frames/s
        self.rnn = nn.GRU(8, 8, batch_first=True)
        self.out = nn.Linear(8, len(TOKENS))

    def num_frames(self, num_samples: int) -> int:
        return (num_samples // 80) // 4

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        x = self.downsample(self.act(self.encoder(waveforms[:, None, :])))
        x, _ = self.rnn(x.transpose(1, 2))
        return torch.log_softmax(self.out(x), dim=-1)


def build() -> ToyCTC:
    """The factory the tests name: ``python:tests.models.toy_factory:build``."""
    torch.manual_seed(0)
    return ToyCTC()


def build_wrong_frames() -> nn.Module:
    """A model whose ``num_frames`` is off by one, to test that the adapter notices."""
    model = build()
    model.num_frames = lambda num_samples: (num_samples // 80) // 4 + 1
    return model


def build_not_a_module() -> str:
    return "not a module"
