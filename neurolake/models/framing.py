"""Frame counts of 1-D convolutions and spectrogram front ends, and masking by length.

Model adapters must know a model's exact number of output frames for any input
length before running it (the planner sizes the lake's row space with it), and
the valid length of every intermediate layer of a padded batch (to zero the
padding). Both follow from the same integer arithmetic, written once here for
Python ints and for ``int64`` tensors alike: ``//`` floors in both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TypeVar

import torch
from torch import nn

__all__ = ["clamp_length", "conv1d_output_length", "conv_stack_output_length", "stft_frames", "zero_beyond"]

Length = TypeVar("Length", int, torch.Tensor)


def clamp_length(length: Length) -> Length:
    """Negative lengths (an input shorter than a kernel) become 0."""
    if isinstance(length, torch.Tensor):
        return length.clamp(min=0)
    return max(0, length)


def conv1d_output_length(length: Length, conv: nn.Conv1d) -> Length:
    """Frames a :class:`torch.nn.Conv1d` produces from ``length`` input frames.

    ``floor((L + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1``, as
    documented for :class:`torch.nn.Conv1d`, and 0 where that is not positive or the
    input is empty (PyTorch raises instead).

    Raises:
        ValueError: the convolution uses string padding (``"same"``/``"valid"``) or a
            padding mode other than zeros, whose lengths this module does not model.
    """
    if isinstance(conv.padding, str):
        raise ValueError(f"Conv1d with padding={conv.padding!r} is not supported; use integer padding")
    if conv.padding_mode != "zeros":
        raise ValueError(f"Conv1d with padding_mode={conv.padding_mode!r} is not supported")
    (kernel,), (stride,), (padding,), (dilation,) = conv.kernel_size, conv.stride, conv.padding, conv.dilation
    frames = clamp_length((length + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1)
    # An empty input stays empty: padding alone must not create frames (torch refuses it).
    if isinstance(length, torch.Tensor):
        return torch.where(length > 0, frames, torch.zeros_like(frames))
    return frames if length > 0 else 0


def conv_stack_output_length(length: Length, convs: Iterable[nn.Conv1d]) -> Length:
    """Frames after applying ``convs`` one after another (a sequential stack)."""
    for conv in convs:
        length = conv1d_output_length(length, conv)
    return length


def stft_frames(num_samples: Length, hop_length: int) -> Length:
    """Frames of a centred STFT (``center=True``) over ``num_samples`` samples.

    A centred STFT pads ``n_fft // 2`` samples on both sides, which gives
    ``num_samples // hop_length + 1`` frames whatever ``n_fft`` is; an empty
    input gives 0 frames here (torch refuses it).
    """
    if isinstance(num_samples, torch.Tensor):
        return torch.where(num_samples > 0, num_samples // hop_length + 1, torch.zeros_like(num_samples))
    return num_samples // hop_length + 1 if num_samples > 0 else 0


def zero_beyond(x: torch.Tensor, lengths: torch.Tensor, dim: int) -> torch.Tensor:
    """``x`` (batch first) with positions ``>= lengths[b]`` along ``dim`` set to 0.

    Returns a new tensor; ``x`` is left alone, so this is safe inside a forward hook
    whose output a later in-place activation modifies.
    """
    positions = torch.arange(x.shape[dim], device=x.device)
    keep = positions[None, :] < lengths.to(x.device)[:, None]
    shape = [x.shape[0]] + [1] * (x.dim() - 1)
    shape[dim] = x.shape[dim]
    return torch.where(keep.view(shape), x, torch.zeros((), dtype=x.dtype, device=x.device))
