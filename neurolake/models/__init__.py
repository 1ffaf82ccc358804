"""Model adapters: one interface over every CTC speech model neurolake can introspect.

A :class:`ModelAdapter` gives the token list (blank at id 0), the sample rate,
the exact number of output frames for any input length (:meth:`~ModelAdapter.num_frames`;
the planner sizes the lake's row space with it before inference), and a forward
pass that returns log-probabilities ``[B, T, C]`` together with any captured
layers, each resampled onto the output frame grid as ``[B, T, units]``.
:func:`load_model` builds one from a model spec:

``demo``
    The bundled demo model (:mod:`neurolake.models.demo`), read from the
    package data file ``neurolake/models/data/demo_model.pt`` that
    ``python -m neurolake.models.train_demo`` writes.
``wav2letter:PATH``
    torchaudio's :class:`~torchaudio.models.Wav2Letter`. ``PATH`` (any fsspec URL)
    holds ``torch.save`` of ``{"config": {"num_classes": int, "input_type":
    "waveform" | "mfcc" | "power_spectrum", "num_features": int, "features": {...}},
    "tokens": [str, ...], "state_dict": Wav2Letter.state_dict()}``. ``features``
    is optional and sets the front end of the spectral input types; its keys and
    defaults are ``n_fft`` (400, ignored by ``power_spectrum``), ``hop_length``
    (160 samples), ``n_mels`` (40, ``mfcc`` only) and ``log_offset`` (1e-6):

    - ``waveform``: the raw samples as ``[B, 1, samples]`` (``num_features`` must be 1).
    - ``mfcc``: :class:`torchaudio.transforms.MFCC` with ``n_mfcc = num_features``,
      ``log_mels=True`` (``log(mel + 1e-6)``), DCT-II with orthonormal scaling, over a
      mel power spectrogram of ``n_mels`` HTK-scale bands from a Hann-windowed
      ``n_fft``-point STFT.
    - ``power_spectrum``: ``log(|STFT|^2 + log_offset)`` of a Hann-windowed STFT with
      ``n_fft = 2 * (num_features - 1)``, so that it has ``num_features`` bins.

    Every STFT is centred with zero padding (``pad_mode="constant"``), giving
    ``samples // hop_length + 1`` frames.
``wav2vec2:BUNDLE_OR_PATH``
    The wav2vec 2.0 / HuBERT / WavLM family. ``BUNDLE`` names an ASR bundle of
    :mod:`torchaudio.pipelines` (``WAV2VEC2_ASR_BASE_960H``, ``HUBERT_ASR_LARGE``);
    its weights download where the network allows. ``PATH`` holds ``torch.save`` of
    ``{"config": keyword arguments of torchaudio.models.wav2vec2_model (aux_num_out
    set), "tokens": [str, ...], "state_dict": ..., "normalize_waveform": bool
    (optional, default False)}``.
``hf:ID_OR_PATH``
    A Hugging Face ``transformers`` CTC model (``AutoModelForCTC``: wav2vec 2.0, HuBERT, WavLM,
    Data2Vec-audio, MMS) with its tokenizer and feature extractor, from a ``save_pretrained``
    directory or the Hub's cache (:mod:`neurolake.models.hf`); a Whisper checkpoint loads as
    :class:`~neurolake.models.hf.WhisperAdapter` (encoder frames, transcripts from ``generate``;
    ``hf:PATH?language=CODE`` fixes a multilingual model's language).
``python:MODULE:FACTORY``
    ``MODULE.FACTORY()`` returns an :class:`torch.nn.Module` mapping zero-padded
    16 kHz waveforms ``[B, samples]`` float32 to log-probabilities ``[B, T, C]``, with
    attributes ``tokens`` (blank first, ``" "`` or ``"|"`` marking word
    boundaries) and ``num_frames(num_samples) -> int``.

The adapter protocol and layer capture are in :mod:`neurolake.models.adapter`; each family has its own
module (:mod:`~neurolake.models.demo`, :mod:`~neurolake.models.wav2letter`, :mod:`~neurolake.models.wav2vec2`,
:mod:`~neurolake.models.factory`).
"""

from __future__ import annotations

import torch

from neurolake.errors import SpecError
from neurolake.models.adapter import (
    SAMPLE_RATE,
    ForwardOutput,
    LayerInfo,
    ModelAdapter,
    UnitEdit,
    state_dict_sha256,
)
from neurolake.models.demo import DemoAdapter, load_demo
from neurolake.models.factory import FactoryAdapter, load_factory
from neurolake.models.wav2letter import Wav2LetterAdapter, load_wav2letter
from neurolake.models.wav2vec2 import Wav2Vec2Adapter, load_wav2vec2

__all__ = [
    "SAMPLE_RATE",
    "DemoAdapter",
    "FactoryAdapter",
    "ForwardOutput",
    "LayerInfo",
    "ModelAdapter",
    "UnitEdit",
    "Wav2LetterAdapter",
    "Wav2Vec2Adapter",
    "load_model",
    "state_dict_sha256",
]

_SPEC_HELP = "use demo, wav2letter:PATH, wav2vec2:BUNDLE_OR_PATH, hf:ID_OR_PATH or python:MODULE:FACTORY"


def load_model(spec: str, device: str | torch.device = "cpu") -> ModelAdapter:
    """Build the adapter for a model spec (formats in the module docstring).

    Raises:
        SpecError: an unknown spec, a missing or malformed checkpoint, a bundle
            that cannot be downloaded, or a factory that breaks its contract.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError(f"empty model spec; {_SPEC_HELP}")
    spec = spec.strip()
    if spec == "demo":
        return load_demo(device)
    kind, _, target = spec.partition(":")
    if kind == "wav2letter" and target:
        return load_wav2letter(target, spec, device)
    if kind == "wav2vec2" and target:
        return load_wav2vec2(target, spec, device)
    if kind == "python" and target:
        return load_factory(target, spec, device)
    if kind == "hf" and target:
        from neurolake.models.hf import load_hf

        return load_hf(target, spec, device)
    raise SpecError(f"unknown model spec {spec!r}; {_SPEC_HELP}")
