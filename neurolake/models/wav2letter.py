"""torchaudio's Wav2Letter with its waveform, MFCC or power-spectrum front end."""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torchaudio
from torch import nn

from neurolake.errors import SpecError
from neurolake.models.adapter import (
    SAMPLE_RATE,
    Hook,
    ModelAdapter,
    check_output_size,
    load_state,
    read_checkpoint,
    zeroing_hook,
)
from neurolake.models.framing import conv1d_output_length, conv_stack_output_length, stft_frames, zero_beyond

_WAV2LETTER_FEATURES = {"n_fft": 400, "hop_length": 160, "n_mels": 40, "log_offset": 1e-6}
_WAV2LETTER_INPUTS = ("waveform", "mfcc", "power_spectrum")


class _LogPowerSpectrum(nn.Module):
    """``[B, samples] -> [B, n_fft // 2 + 1, frames]``: ``log(|STFT|^2 + log_offset)``."""

    def __init__(self, n_fft: int, hop_length: int, log_offset: float) -> None:
        super().__init__()
        self.log_offset = log_offset
        self.spectrogram = torchaudio.transforms.Spectrogram(
            n_fft=n_fft, hop_length=hop_length, power=2.0, center=True, pad_mode="constant"
        )

    def forward(self, waveforms: torch.Tensor) -> torch.Tensor:
        return torch.log(self.spectrogram(waveforms) + self.log_offset)


class Wav2LetterAdapter(ModelAdapter):
    """torchaudio's :class:`~torchaudio.models.Wav2Letter` with its front end (module docstring).

    Every ``Conv1d`` output is zeroed past the utterance's valid frames by a forward
    hook, before the in-place ReLU that follows it.

    Attributes:
        input_type: ``"waveform"``, ``"mfcc"`` or ``"power_spectrum"``.
        features: the front end settings in effect (empty for ``"waveform"``).
        frontend: the feature module, or ``None`` for ``"waveform"``; not capturable.
    """

    def __init__(
        self,
        model: torchaudio.models.Wav2Letter,
        *,
        input_type: str,
        num_features: int,
        tokens: Sequence[str],
        spec: str,
        features: Mapping[str, Any] | None = None,
        weights_sha256: str | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if input_type not in _WAV2LETTER_INPUTS:
            raise SpecError(f"{spec}: input_type {input_type!r} is not one of {', '.join(_WAV2LETTER_INPUTS)}")
        self.input_type = input_type
        self.features: dict[str, Any] = {}
        self.frontend: nn.Module | None = None
        if input_type == "waveform":
            if num_features != 1:
                raise SpecError(f"{spec}: a waveform Wav2Letter takes num_features=1, not {num_features}")
        else:
            self.features = _wav2letter_features(input_type, num_features, features or {}, spec)
            self.frontend = _wav2letter_frontend(input_type, num_features, self.features).to(device)
        self._convs = [m for m in model.acoustic_model.modules() if isinstance(m, nn.Conv1d)]
        num_classes = self._convs[-1].out_channels
        check_output_size(tokens, num_classes, spec)
        config = {
            "num_classes": num_classes,
            "input_type": input_type,
            "num_features": num_features,
            "features": self.features,
        }
        super().__init__(
            model,
            spec=spec,
            kind="wav2letter",
            tokens=tokens,
            weights_sha256=weights_sha256,
            config=config,
            device=device,
        )

    def _input_frames(self, num_samples):
        if self.input_type == "waveform":
            return num_samples
        return stft_frames(num_samples, self.features["hop_length"])

    def num_frames(self, num_samples: int) -> int:
        return conv_stack_output_length(self._input_frames(int(num_samples)), self._convs)

    def _masking_hooks(self, lengths: torch.Tensor) -> list[tuple[nn.Module, Hook]]:
        hooks = []
        valid = self._input_frames(lengths)
        for conv in self._convs:
            valid = conv1d_output_length(valid, conv)
            hooks.append((conv, zeroing_hook(valid)))
        return hooks

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        waveforms = zero_beyond(waveforms, lengths, dim=1)
        if self.frontend is None:
            inputs = waveforms.unsqueeze(1)
        else:
            inputs = zero_beyond(self.frontend(waveforms), self._input_frames(lengths), dim=2)
        return self.module(inputs).transpose(1, 2)


def _wav2letter_features(input_type: str, num_features: int, given: Mapping[str, Any], spec: str) -> dict[str, Any]:
    unknown = sorted(set(given) - set(_WAV2LETTER_FEATURES))
    if unknown:
        raise SpecError(f"{spec}: unknown feature settings {unknown}; known: {sorted(_WAV2LETTER_FEATURES)}")
    features = {**_WAV2LETTER_FEATURES, **given}
    if input_type == "mfcc":
        if not 1 <= num_features <= features["n_mels"]:
            raise SpecError(
                f"{spec}: mfcc needs 1 <= num_features <= n_mels ({features['n_mels']}), got {num_features}"
            )
        if "log_offset" in given:
            raise SpecError(
                f"{spec}: mfcc uses MFCC(log_mels=True)'s fixed log offset of 1e-6; drop 'log_offset' from the features"
            )
        del features["log_offset"]
    else:
        if num_features < 2:
            raise SpecError(f"{spec}: power_spectrum needs num_features >= 2, got {num_features}")
        features["n_fft"] = 2 * (num_features - 1)
        del features["n_mels"]
    return features


def _wav2letter_frontend(input_type: str, num_features: int, features: Mapping[str, Any]) -> nn.Module:
    if input_type == "mfcc":
        return torchaudio.transforms.MFCC(
            sample_rate=SAMPLE_RATE,
            n_mfcc=num_features,
            log_mels=True,
            melkwargs={
                "n_fft": features["n_fft"],
                "hop_length": features["hop_length"],
                "n_mels": features["n_mels"],
                "center": True,
                "pad_mode": "constant",
            },
        )
    return _LogPowerSpectrum(features["n_fft"], features["hop_length"], features["log_offset"])


def load_wav2letter(url: str, spec: str, device: str | torch.device) -> Wav2LetterAdapter:
    checkpoint, sha = read_checkpoint(url, spec, ("config", "tokens", "state_dict"))
    config = checkpoint["config"]
    missing = [key for key in ("num_classes", "input_type", "num_features") if key not in config]
    if missing:
        raise SpecError(f"{spec}: the checkpoint's config lacks {missing}")
    input_type = config["input_type"]
    if input_type not in _WAV2LETTER_INPUTS:
        raise SpecError(f"{spec}: input_type {input_type!r} is not one of {', '.join(_WAV2LETTER_INPUTS)}")
    model = torchaudio.models.Wav2Letter(int(config["num_classes"]), input_type, int(config["num_features"]))
    load_state(model, checkpoint["state_dict"], spec)
    return Wav2LetterAdapter(
        model,
        input_type=input_type,
        num_features=int(config["num_features"]),
        tokens=checkpoint["tokens"],
        spec=spec,
        features=config.get("features"),
        weights_sha256=sha,
        device=device,
    )
