"""The wav2vec 2.0 / HuBERT / WavLM family of torchaudio with an ASR head: checkpoints and pipeline bundles."""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torchaudio
from torch import nn

from neurolake.errors import SpecError
from neurolake.models.adapter import ModelAdapter, _padded, check_output_size, load_state, read_checkpoint
from neurolake.models.framing import conv_stack_output_length, zero_beyond


class Wav2Vec2Adapter(ModelAdapter):
    """torchaudio's :class:`~torchaudio.models.Wav2Vec2Model` (wav2vec 2.0, HuBERT, WavLM) with an ASR head.

    Attributes:
        normalize_waveform: each utterance is normalised to zero mean and unit
            variance over its valid samples first (the large "LV60K"-style models).
        per_utterance_features: the feature extractor normalises over time
            (``extractor_mode="group_norm"``), so it runs one utterance at a time.
    """

    def __init__(
        self,
        model: torchaudio.models.Wav2Vec2Model,
        *,
        tokens: Sequence[str],
        spec: str,
        normalize_waveform: bool = False,
        weights_sha256: str | None = None,
        config: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        if model.aux is None:
            raise SpecError(f"{spec}: the model has no ASR head (aux); use a model fine-tuned for ASR")
        check_output_size(tokens, model.aux.out_features, spec)
        self.normalize_waveform = normalize_waveform
        conv_layers = list(model.feature_extractor.conv_layers)
        self._convs = [layer.conv for layer in conv_layers]
        self.per_utterance_features = any(isinstance(layer.layer_norm, nn.GroupNorm) for layer in conv_layers)
        super().__init__(
            model,
            spec=spec,
            kind="wav2vec2",
            tokens=tokens,
            weights_sha256=weights_sha256,
            config=config,
            device=device,
        )

    def num_frames(self, num_samples: int) -> int:
        return conv_stack_output_length(int(num_samples), self._convs)

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        model = self.module
        sizes = lengths.tolist()
        if self.normalize_waveform:
            waveforms = _padded([nn.functional.layer_norm(waveforms[i, :n], (n,)) for i, n in enumerate(sizes)])
        else:
            waveforms = zero_beyond(waveforms, lengths, dim=1)
        if self.per_utterance_features:
            features = [model.feature_extractor(waveforms[i : i + 1, :n], None)[0][0] for i, n in enumerate(sizes)]
            feature_lengths = torch.tensor([f.shape[0] for f in features], device=waveforms.device)
            x = _padded(features)
        else:
            x, feature_lengths = model.feature_extractor(waveforms, lengths)
        x = model.encoder(x, feature_lengths)
        return torch.log_softmax(model.aux(x), dim=-1)


def _asr_bundles() -> list[str]:
    return sorted(
        name
        for name in dir(torchaudio.pipelines)
        if name.isupper() and hasattr(getattr(torchaudio.pipelines, name), "get_labels")
    )


def load_wav2vec2(target: str, spec: str, device: str | torch.device) -> Wav2Vec2Adapter:
    if target.isidentifier() and target.isupper():
        return _load_wav2vec2_bundle(target, spec, device)
    checkpoint, sha = read_checkpoint(target, spec, ("config", "tokens", "state_dict"))
    try:
        model = torchaudio.models.wav2vec2_model(**checkpoint["config"])
    except (TypeError, ValueError) as exc:
        raise SpecError(
            f"{spec}: the config is not a set of torchaudio.models.wav2vec2_model arguments ({exc})"
        ) from exc
    load_state(model, checkpoint["state_dict"], spec)
    return Wav2Vec2Adapter(
        model,
        tokens=checkpoint["tokens"],
        spec=spec,
        normalize_waveform=bool(checkpoint.get("normalize_waveform", False)),
        weights_sha256=sha,
        config={"model": checkpoint["config"]},
        device=device,
    )


def _load_wav2vec2_bundle(name: str, spec: str, device: str | torch.device) -> Wav2Vec2Adapter:
    bundles = _asr_bundles()
    if name not in bundles:
        raise SpecError(
            f"{spec}: {name!r} is not an ASR bundle of torchaudio.pipelines; "
            f"choose one of {', '.join(bundles)}, or give a checkpoint path"
        )
    bundle = getattr(torchaudio.pipelines, name)
    try:
        model = bundle.get_model()
    except (OSError, RuntimeError) as exc:  # URLError is an OSError; a truncated download a RuntimeError
        raise SpecError(
            f"{spec}: could not download the weights of {name} ({exc}); without network "
            "access, save a checkpoint in the wav2vec2:PATH format elsewhere and load that"
        ) from exc
    normalize = False
    if not isinstance(model, torchaudio.models.Wav2Vec2Model):
        # torchaudio wraps the models that normalise their input waveform; the adapter
        # does that itself, per utterance, so that padding does not leak into it.
        normalize = bool(getattr(model, "normalize_waveform", False))
        model = model.model
    return Wav2Vec2Adapter(
        model,
        tokens=bundle.get_labels(),
        spec=spec,
        normalize_waveform=normalize,
        config={"bundle": name},
        device=device,
    )
