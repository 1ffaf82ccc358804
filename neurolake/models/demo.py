"""The bundled demo model: a small Wav2Letter-style CTC network over log-mel features.

Architecture (defaults of :class:`DemoModelConfig`, about 2.0 M parameters)::

    frontend   log-mel, 16 kHz, n_fft 400, hop 160 (100 frames/s), 64 mels   [B, 64, F]
    conv1      Conv1d 64->256, kernel 5, padding 2, ReLU                      [B, 256, F]
    conv2      Conv1d 256->256, kernel 4, stride 2, padding 1, ReLU           [B, 256, T]  50 frames/s
    conv3..7   Conv1d 256->256, kernel 5, padding 2, ReLU                      [B, 256, T]
    head       Conv1d 256->29, kernel 1 -> log-softmax over the 29 tokens     [B, T, 29]

with ``F = samples // 160 + 1`` and ``T = F // 2`` (see :meth:`DemoCTCModel.num_frames`).
There is no batch or group normalisation: every operation is local in time, so
a padded batch gives exactly what each utterance gives alone once the padding is
zeroed after every layer, which :meth:`DemoCTCModel.forward` does when given the
lengths. The log-mel features are ``log(1 + mel_power / log_floor)``: silence and
zero padding both map to 0, so the convolutions' zero padding means silence.

The stride-2 layer has kernel 4 and padding 1, so output frame ``t`` is centred
on the feature frames ``2t`` and ``2t + 1`` and ``2 T <= F``: pooling a
100 frames/s layer by 2 onto the output grid never needs a frame past the end.

Tokens: blank ``"-"`` (id 0), word boundary ``" "``, apostrophe, ``A``-``Z``.

Checkpoint format (``torch.save`` of a dict, read with ``weights_only=True``)::

    {"config": {"architecture": DemoModelConfig fields,
                "training": settings and held-out results of the training run},
     "tokens": list of 29 str,
     "state_dict": DemoCTCModel.state_dict()}
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fsspec
import torch
import torchaudio
from torch import nn

from neurolake.corpora.audio import SAMPLE_RATE
from neurolake.errors import SpecError
from neurolake.models.adapter import ModelAdapter
from neurolake.models.framing import conv_stack_output_length, stft_frames, zero_beyond

__all__ = [
    "DEMO_TOKENS",
    "SAMPLE_RATE",
    "ConvBlock",
    "DemoCTCModel",
    "DemoModelConfig",
    "LogMel",
    "build_demo_model",
    "read_demo_checkpoint",
    "save_demo_checkpoint",
]

#: Output tokens: CTC blank first, then the word boundary, apostrophe and letters.
DEMO_TOKENS: tuple[str, ...] = ("-", " ", "'", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ")

_N_FFT = 400
_HOP = 160


@dataclass(frozen=True)
class DemoModelConfig:
    """Architecture of :class:`DemoCTCModel`.

    Attributes:
        n_mels: mel bands of the front end.
        channels: channels of every convolution.
        kernel_size: kernel of ``conv1`` and of the layers after the stride-2 one (odd).
        n_upper_layers: convolutions after the stride-2 ``conv2`` (``conv3`` onwards).
        dropout: dropout after every convolution block, in training only.
        log_floor: mel power that maps to ``log(2)``; sets the compression of quiet bands.
    """

    n_mels: int = 64
    channels: int = 256
    kernel_size: int = 5
    n_upper_layers: int = 5
    dropout: float = 0.1
    log_floor: float = 1e-3

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-able dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DemoModelConfig:
        """Build from :meth:`to_dict`'s output.

        Raises:
            SpecError: unknown fields or invalid values.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise SpecError(f"unknown demo model config fields {unknown}; known: {sorted(known)}")
        config = cls(**values)
        if config.kernel_size % 2 != 1 or min(config.n_mels, config.channels, config.n_upper_layers + 1) < 1:
            raise SpecError(f"invalid demo model config {config}: kernel_size must be odd and sizes positive")
        return config


class LogMel(nn.Module):
    """Log-compressed mel power spectrogram: ``[B, samples] -> [B, n_mels, samples // 160 + 1]``.

    The STFT is centred with zero (not reflect) padding, so a frame near the end of
    an utterance sees zeros past the end whether or not the utterance is padded in a batch.
    """

    def __init__(self, n_mels: int, log_floor: float) -> None:
        super().__init__()
        self.log_floor = log_floor
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE,
            n_fft=_N_FFT,
            hop_length=_HOP,
            n_mels=n_mels,
            center=True,
            pad_mode="constant",
            power=2.0,
        )

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return torch.log1p(self.mel(waveforms) / self.log_floor)


class ConvBlock(nn.Module):
    """``Conv1d -> ReLU -> Dropout`` over ``[B, channels, frames]``."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int, dropout: float
    ) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, stride=stride, padding=padding)
        # Not in place: a capture hook on ``conv`` must see pre-activation values.
        self.act = nn.ReLU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.act(self.conv(x)))


class DemoCTCModel(nn.Module):
    """The demo network; see the module docstring for the layer table.

    Attributes:
        config: the architecture.
        frontend: :class:`LogMel`.
        conv1 ... convN: :class:`ConvBlock` s, ``N = 2 + config.n_upper_layers``.
        head: the final ``Conv1d`` to token logits.
    """

    def __init__(self, config: DemoModelConfig) -> None:
        super().__init__()
        self.config = config
        c, k = config.channels, config.kernel_size
        self.frontend = LogMel(config.n_mels, config.log_floor)
        self.conv1 = ConvBlock(config.n_mels, c, k, padding=k // 2, dropout=config.dropout)
        # kernel 4, padding 1: output frame t covers feature frames 2t-1 .. 2t+2, centred on 2t + 0.5.
        self.conv2 = ConvBlock(c, c, 4, stride=2, padding=1, dropout=config.dropout)
        for index in range(3, 3 + config.n_upper_layers):
            self.add_module(f"conv{index}", ConvBlock(c, c, k, padding=k // 2, dropout=config.dropout))
        self.head = nn.Conv1d(c, len(DEMO_TOKENS), 1)
        self._initialise()

    def _initialise(self) -> None:
        # Without normalisation layers, PyTorch's default init shrinks the signal
        # about six-fold in variance per ReLU layer and training stalls on the
        # all-blank plateau; He init keeps it level. A small head starts the
        # output near uniform.
        for block in self.blocks:
            nn.init.kaiming_normal_(block.conv.weight, nonlinearity="relu")
            nn.init.zeros_(block.conv.bias)
        nn.init.normal_(self.head.weight, std=1e-3)
        nn.init.zeros_(self.head.bias)

    @property
    def blocks(self) -> list[ConvBlock]:
        """``conv1`` ... ``convN`` in order."""
        return [getattr(self, f"conv{index}") for index in range(1, 3 + self.config.n_upper_layers)]

    def _convs(self) -> list[nn.Conv1d]:
        return [block.conv for block in self.blocks] + [self.head]

    def feature_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """``[B]`` feature frames (100 frames/s) of utterances of ``num_samples`` samples."""
        return stft_frames(num_samples, _HOP)

    def frame_lengths(self, num_samples: torch.Tensor) -> torch.Tensor:
        """``[B] int64`` output frames (50 frames/s) of utterances of ``num_samples`` samples."""
        return conv_stack_output_length(self.feature_lengths(num_samples), self._convs())

    def num_frames(self, num_samples: int) -> int:
        """Exact output frames of one utterance of ``num_samples`` samples (0 below 160 samples)."""
        return conv_stack_output_length(stft_frames(int(num_samples), _HOP), self._convs())

    def features(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Log-mel features: ``[B, samples]`` float32 -> ``([B, n_mels, F], [B] frames or None)``.

        With ``lengths`` (``[B]`` samples), samples past each length and feature
        frames past each utterance's frame count are zeroed.
        """
        if lengths is None:
            return self.frontend(waveforms), None
        waveforms = zero_beyond(waveforms, lengths, dim=1)
        frames = self.feature_lengths(lengths)
        return zero_beyond(self.frontend(waveforms), frames, dim=2), frames

    def classify(self, features: torch.Tensor, feature_lengths: torch.Tensor | None = None) -> torch.Tensor:
        """Features ``[B, n_mels, F]`` -> log-probabilities ``[B, T, 29]`` float32.

        With ``feature_lengths``, every block's output is zeroed past the
        utterance's valid frames, so padding acts like the convolutions' own zero padding.
        """
        x, lengths = features, feature_lengths
        for block in self.blocks:
            x = block(x)
            if lengths is not None:
                lengths = conv_stack_output_length(lengths, [block.conv])
                x = zero_beyond(x, lengths, dim=2)
        return torch.log_softmax(self.head(x), dim=1).transpose(1, 2)

    def forward(self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, samples]`` float32 16 kHz (``lengths``: ``[B]`` samples) -> ``[B, T, 29]`` log-probs."""
        return self.classify(*self.features(waveforms, lengths))


def build_demo_model(config: DemoModelConfig | None = None, *, seed: int | None = None) -> DemoCTCModel:
    """A randomly initialised :class:`DemoCTCModel` (in eval mode); ``seed`` makes the weights reproducible."""
    if seed is None:
        model = DemoCTCModel(config or DemoModelConfig())
    else:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = DemoCTCModel(config or DemoModelConfig())
    return model.eval()


def save_demo_checkpoint(url: str, model: DemoCTCModel, training: Mapping[str, Any] | None = None) -> int:
    """Write ``model`` in the checkpoint format of the module docstring to ``url``; returns the bytes written."""
    checkpoint = {
        "config": {"architecture": model.config.to_dict(), "training": dict(training or {})},
        "tokens": list(DEMO_TOKENS),
        "state_dict": {name: tensor.detach().cpu().clone() for name, tensor in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getvalue()
    with fsspec.open(url, "wb") as handle:
        handle.write(data)
    return len(data)


def read_demo_checkpoint(data: bytes, source: str) -> tuple[DemoCTCModel, list[str], dict[str, Any]]:
    """Parse checkpoint bytes into ``(model in eval mode, tokens, config)``.

    Raises:
        SpecError: not a demo checkpoint, or weights that do not fit the architecture.
    """
    try:
        checkpoint = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a corrupt or foreign file
        raise SpecError(f"{source}: not a readable demo model checkpoint ({exc})") from exc
    if (
        not isinstance(checkpoint, dict)
        or not {"config", "tokens", "state_dict"} <= set(checkpoint)
        or not isinstance(checkpoint["config"], dict)
    ):
        raise SpecError(f"{source}: a demo checkpoint is a dict with 'config' (a dict), 'tokens' and 'state_dict'")
    config = checkpoint["config"]
    model = DemoCTCModel(DemoModelConfig.from_dict(config.get("architecture", {})))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as exc:
        raise SpecError(f"{source}: weights do not fit the demo architecture ({exc})") from exc
    return model.eval(), list(checkpoint["tokens"]), config


_DEMO_RESOURCE = "data/demo_model.pt"


class DemoAdapter(ModelAdapter):
    """The demo network (:class:`~neurolake.models.demo.DemoCTCModel`), which masks
    padding itself when given the lengths."""

    module: DemoCTCModel

    def __init__(
        self,
        model: DemoCTCModel,
        *,
        spec: str = "demo",
        tokens: Sequence[str] = DEMO_TOKENS,
        weights_sha256: str | None = None,
        config: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__(
            model,
            spec=spec,
            kind="demo",
            tokens=tokens,
            weights_sha256=weights_sha256,
            config=config if config is not None else {"architecture": model.config.to_dict()},
            device=device,
        )

    def num_frames(self, num_samples: int) -> int:
        return self.module.num_frames(num_samples)

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.module(waveforms, lengths)


def load_demo(device: str | torch.device) -> DemoAdapter:
    resource = resources.files("neurolake.models").joinpath(_DEMO_RESOURCE)
    if not resource.is_file():
        raise SpecError(
            "the demo model's weights are not built yet; train them with "
            "`python -m neurolake.models.train_demo` (writes neurolake/models/data/demo_model.pt)"
        )
    data = resource.read_bytes()
    model, tokens, config = read_demo_checkpoint(data, "demo model")
    return DemoAdapter(
        model, tokens=tokens, weights_sha256=hashlib.sha256(data).hexdigest(), config=config, device=device
    )
