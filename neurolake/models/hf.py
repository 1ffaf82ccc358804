"""Hugging Face ``transformers`` CTC models: ``hf:ID_OR_PATH``.

Any ``AutoModelForCTC`` checkpoint (wav2vec 2.0, HuBERT, WavLM, Data2Vec-audio, MMS) with its
tokenizer and feature extractor, from a local ``save_pretrained`` directory or the Hub's cache
(where the network allows, downloads too). What the adapter adds to the model:

- **Tokens, blank first.** The CTC blank is the tokenizer's pad token; its column moves to the
  front and the others keep their order. The word delimiter (``|``) marks word boundaries.
- **Exact frame counts** from the feature encoder's convolution arithmetic
  (``_get_feat_extract_output_lengths``, each layer ``floor((L - kernel) / stride) + 1``).
- **Input as the feature extractor prepares it**: each utterance normalised to zero mean and
  unit variance over its own samples when ``do_normalize`` is set.
- **Padded batches**: models whose feature extractor returns an attention mask (layer-normalised
  feature encoders) run batched with the mask; the others (group-normalised feature encoders,
  whose normalisation spans the whole padded input) one utterance at a time, so a batch gives on
  every valid frame what each utterance gives alone.
- **Capture** of every named submodule with a ``[B, frames, units]`` output: the feature
  projection, each encoder layer (``wav2vec2.encoder.layers.N``: the hidden states), their
  attention and feed-forward blocks, and the CTC head.

Whisper checkpoints (``model_type`` ``whisper``, e.g. a local copy of ``openai/whisper-small``)
load as a :class:`WhisperAdapter`: the encoder's submodules are captured on its 50 Hz grid,
trimmed to the audio's real length (the 30 s the feature extractor pads every input to are
never stored), and the transcript comes from ``generate``. A sequence-to-sequence model has no
per-frame token posteriors, so its frames carry no token labels
(:func:`neurolake.labels.frames.label_transcribed` says which columns stay null).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from neurolake.errors import InputError, SpecError
from neurolake.models.adapter import (
    ForwardOutput,
    LayerInfo,
    ModelAdapter,
    UnitEdit,
    _Geometry,
    _installed,
    _padded,
    _recorder,
    _shape_recorder,
)
from neurolake.models.framing import zero_beyond


class HFCTCAdapter(ModelAdapter):
    """A ``transformers`` CTC model (module docstring)."""

    def __init__(
        self,
        model: nn.Module,
        *,
        vocab: Sequence[str],
        blank_id: int,
        spec: str,
        normalize: bool,
        attention_mask: bool,
        config: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        outputs = int(model.config.vocab_size)
        if len(vocab) != outputs:
            raise SpecError(f"{spec}: the tokenizer has {len(vocab)} tokens for a model with {outputs} outputs")
        if not 0 <= blank_id < outputs:
            raise SpecError(f"{spec}: the blank (pad) token id {blank_id} is outside the {outputs} outputs")
        self._order = torch.tensor([blank_id, *(i for i in range(outputs) if i != blank_id)])
        self.normalize = normalize
        self.attention_mask = attention_mask
        super().__init__(
            model,
            spec=spec,
            kind="hf",
            tokens=[vocab[int(i)] for i in self._order],
            config=config,
            device=device,
        )
        self._order = self._order.to(self.device)

    def num_frames(self, num_samples: int) -> int:
        if num_samples <= 0:
            return 0
        frames = self.module._get_feat_extract_output_lengths(torch.tensor([int(num_samples)]))
        return max(0, int(frames[0]))

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        sizes = lengths.tolist()
        if self.normalize:
            waveforms = _padded(
                [
                    (w[:n] - w[:n].mean()) / torch.sqrt(w[:n].var(unbiased=False) + 1e-7)
                    for w, n in zip(waveforms, sizes, strict=True)
                ]
            )
        else:
            waveforms = zero_beyond(waveforms, lengths, dim=1)
        if self.attention_mask:
            mask = (torch.arange(waveforms.shape[1], device=waveforms.device)[None, :] < lengths[:, None]).long()
            logits = self.module(waveforms, attention_mask=mask).logits
        else:  # a group-normalised feature encoder sees each utterance alone
            logits = _padded([self.module(waveforms[i : i + 1, :n]).logits[0] for i, n in enumerate(sizes)])
        frames = max(self.num_frames(n) for n in sizes)
        return torch.log_softmax(logits[:, :frames, :].index_select(-1, self._order), dim=-1)


class WhisperAdapter(ModelAdapter):
    """A ``transformers`` Whisper model: the encoder's frames, transcripts from ``generate``.

    - **Frames.** The feature extractor pads or cuts every input to its window (30 s, 3000
      log-mel frames of 160 samples); the encoder's second convolution halves that to 1500
      frames of 20 ms. An utterance of ``n`` samples has ``ceil(n / 160)`` real mel frames (the
      extractor's own attention mask) and so ``ceil(ceil(n / 160) / 2)`` encoder frames; only
      those are returned and stored. Longer inputs than the window are refused
      (:attr:`max_samples`): the planner makes them ``errors`` rows.
    - **Capture**: every encoder submodule whose output runs along the encoder's frames (each
      layer ``model.encoder.layers.N``, its attention and feed-forward blocks, the final
      ``model.encoder.layer_norm``) or along the mel frames (``model.encoder.conv1``, two mel
      frames averaged per encoder frame). The decoder runs on text positions and is not
      capturable.
    - **Transcripts**: the encoder runs once (with the capture and any unit edits), and
      ``generate`` decodes from its output, so an edit of encoder units changes the transcript
      as it would inside the model. A multilingual checkpoint is told to transcribe, not
      translate; its language is detected unless the spec names one (``hf:PATH?language=en``).
    """

    transcribes = True

    def __init__(
        self,
        model: nn.Module,
        *,
        extractor: Any,
        tokenizer: Any,
        spec: str,
        language: str | None = None,
        config: Mapping[str, Any] | None = None,
        device: str | torch.device = "cpu",
    ) -> None:
        self.extractor = extractor
        self.tokenizer = tokenizer
        self.language = language
        encoder = model.get_encoder()
        self._mel_hop = int(extractor.hop_length)
        self._stride = int(encoder.conv2.stride[0])
        self._window_frames = int(model.config.max_source_positions)
        self.max_samples = int(extractor.n_samples)
        self._encoder_path = next(name for name, module in model.named_modules() if module is encoder)
        super().__init__(model, spec=spec, kind="hf-whisper", tokens=(), config=config, device=device)

    def num_frames(self, num_samples: int) -> int:
        if num_samples <= 0:
            return 0
        mel = math.ceil(int(num_samples) / self._mel_hop)
        return min(math.ceil(mel / self._stride), self._window_frames)

    @functools.cached_property
    def hop_samples(self) -> float:
        return float(self._mel_hop * self._stride)

    def _run(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise SpecError(
            f"{self._spec}: a Whisper model has no per-frame token posteriors; relevance, GradNAPs and "
            "attribution need a CTC model"
        )

    def features(self, waveforms: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log-mel features as the feature extractor makes them: ``[B, mels, window]`` on the device."""
        audio = [
            np.asarray(w[: int(n)].detach().cpu().numpy(), dtype=np.float32)
            for w, n in zip(waveforms, lengths, strict=True)
        ]
        features = self.extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt").input_features
        return features.to(self.device, dtype=next(self.module.parameters()).dtype)

    @functools.cached_property
    def _geometries(self) -> dict[str, _Geometry]:
        """One encoder pass: the submodules whose output runs along encoder or mel frames."""
        modules = dict(self.module.named_modules())
        names = [name for name in modules if name.startswith(self._encoder_path + ".")]
        seen: dict[str, list] = {name: [] for name in names}
        hooks = [(modules[name], _shape_recorder(seen[name])) for name in names]
        wave = 0.1 * torch.randn(1, self.sample_rate, generator=torch.Generator().manual_seed(0))
        with torch.no_grad(), _installed(hooks):
            self.module.get_encoder()(self.features(wave, torch.tensor([self.sample_rate])))
        window = self._window_frames
        geometries = {}
        for name in names:
            shapes = seen[name]
            if len(shapes) != 1 or shapes[0] is None or not shapes[0][1] or len(shapes[0][0]) != 3:
                continue
            _, a, b = shapes[0][0]
            for axis, length, units in ((1, a, b), (2, b, a)):
                if length in (window, self._stride * window):
                    geometries[name] = _Geometry(axis, units, length // window, 1)
                    break
        return geometries

    def forward(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | Sequence[int],
        layers: Iterable[str | LayerInfo] = (),
        *,
        capture_dtype: torch.dtype = torch.float32,
        edits: Mapping[str, UnitEdit] | None = None,
    ) -> ForwardOutput:
        """As :meth:`ModelAdapter.forward`, with ``hypotheses`` from ``generate`` and
        ``[B, T, 0]`` log-probabilities (there are no per-frame token posteriors)."""
        encoded, frame_lengths, captured = self.encode(
            waveforms, lengths, layers, capture_dtype=capture_dtype, edits=edits
        )
        with torch.no_grad():
            generated = self.module.generate(encoder_outputs=encoded, **self._generate_options())
        hypotheses = [text.strip() for text in self.tokenizer.batch_decode(generated, skip_special_tokens=True)]
        log_probs = torch.zeros((len(hypotheses), int(frame_lengths.max()), 0), device=self.device)
        return ForwardOutput(log_probs, frame_lengths, captured, hypotheses=hypotheses)

    def encode(
        self,
        waveforms: torch.Tensor,
        lengths: torch.Tensor | Sequence[int],
        layers: Iterable[str | LayerInfo] = (),
        *,
        capture_dtype: torch.dtype = torch.float32,
        edits: Mapping[str, UnitEdit] | None = None,
    ) -> tuple[Any, torch.Tensor, dict[str, torch.Tensor]]:
        """The encoder pass of :meth:`forward`: ``(encoder output, frame_lengths, captured)``."""
        waveforms, lengths = self._checked_batch(waveforms, lengths)
        if int(lengths.max()) > self.max_samples:
            longest = int(lengths.argmax())
            raise InputError(
                f"utterance {longest} of the batch lasts {int(lengths[longest]) / self.sample_rate:.1f} s, longer "
                f"than the {self.max_samples / self.sample_rate:g} s window of {self._spec!r}; segment it"
            )
        names = self._capture_names(layers)
        modules = dict(self.module.named_modules())
        outputs: dict[str, list[torch.Tensor | None]] = {name: [] for name in names}
        hooks = self._edit_hooks(edits or {}) + [
            (modules[name], _recorder(outputs[name], self._recording_dtype(name, capture_dtype))) for name in names
        ]
        features = self.features(waveforms, lengths)
        with torch.no_grad(), _installed(hooks):
            encoded = self.module.get_encoder()(features)
        counts = [self.num_frames(n) for n in lengths.tolist()]
        frame_lengths = torch.tensor(counts, dtype=torch.int64, device=self.device)
        captured = {name: self._on_grid(name, outputs[name], frame_lengths, capture_dtype) for name in names}
        return encoded, frame_lengths, captured

    def _generate_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        config = self.module.generation_config
        if getattr(config, "is_multilingual", False):
            options["task"] = "transcribe"
            if self.language:
                options["language"] = self.language
        return options


def _split_options(target: str, spec: str) -> tuple[str, dict[str, str]]:
    """``PATH?key=value&...`` -> ``(PATH, {key: value})``; only ``language`` is known."""
    path, _, query = target.partition("?")
    options = {}
    for item in filter(None, query.split("&")):
        key, _, value = item.partition("=")
        if key != "language" or not value:
            raise SpecError(f"{spec}: unknown option {item!r}; the one option is language=CODE (Whisper)")
        options[key] = value
    return path, options


def load_hf(target: str, spec: str, device: str | torch.device = "cpu") -> ModelAdapter:
    """``hf:ID_OR_PATH``: a ``transformers`` CTC model with its tokenizer and feature extractor,
    or a Whisper model (:class:`WhisperAdapter`)."""
    from transformers import AutoConfig, AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the ingest's own bars say what is going on

    target, options = _split_options(target, spec)
    local = os.path.isdir(target)
    if not local and (target.startswith((".", "/", "~")) or os.sep in target.strip("/").split("/", 1)[-1]):
        raise SpecError(f"{spec}: no model directory {target!r} (a Hub id is ORG/NAME)")
    try:
        model_type = AutoConfig.from_pretrained(target, local_files_only=local).model_type
    except (OSError, ValueError, KeyError) as exc:
        where = "the directory" if local else "the Hugging Face cache or Hub"
        raise SpecError(f"{spec}: cannot load a CTC or Whisper model from {where}: {exc}") from exc
    if model_type == "whisper":
        return _load_whisper(target, spec, local, options.get("language"), device)
    if options:
        raise SpecError(f"{spec}: options (?language=...) are for Whisper models; this is a {model_type} model")
    model, tokenizer, extractor = _pretrained(
        target, spec, local, "a CTC model", (AutoModelForCTC, AutoTokenizer, AutoFeatureExtractor)
    )
    sampling_rate = int(getattr(extractor, "sampling_rate", 16_000))
    if sampling_rate != 16_000:
        raise SpecError(f"{spec}: the feature extractor expects {sampling_rate} Hz audio; neurolake decodes at 16 kHz")
    by_id = {i: t for t, i in tokenizer.get_vocab().items()}
    vocab = [by_id.get(i, f"<unused{i}>") for i in range(int(model.config.vocab_size))]
    blank_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else int(model.config.pad_token_id)
    delimiter = getattr(tokenizer, "word_delimiter_token", None) or "|"
    if delimiter != "|" and delimiter in vocab:
        vocab = ["|" if t == delimiter else t for t in vocab]
    config = {
        "model_type": model.config.model_type,
        "layers": int(getattr(model.config, "num_hidden_layers", 0)),
        "hidden_size": int(getattr(model.config, "hidden_size", 0)),
        "blank_token": vocab[blank_id],
    }
    return HFCTCAdapter(
        model,
        vocab=vocab,
        blank_id=int(blank_id),
        spec=spec,
        normalize=bool(getattr(extractor, "do_normalize", False)),
        attention_mask=bool(getattr(extractor, "return_attention_mask", False)),
        config=config,
        device=device,
    )


def _pretrained(target: str, spec: str, local: bool, what: str, classes: Sequence[Any]) -> list[Any]:
    """``cls.from_pretrained(target)`` for the model, tokenizer and feature extractor classes;
    one :class:`SpecError` naming where they were looked for if any cannot be loaded."""
    try:
        return [cls.from_pretrained(target, local_files_only=local) for cls in classes]
    except (OSError, ValueError, KeyError) as exc:
        where = "the directory" if local else "the Hugging Face cache or Hub"
        raise SpecError(f"{spec}: cannot load {what}, tokenizer and feature extractor from {where}: {exc}") from exc


def _load_whisper(
    target: str, spec: str, local: bool, language: str | None, device: str | torch.device
) -> WhisperAdapter:
    from transformers import WhisperFeatureExtractor, WhisperForConditionalGeneration, WhisperTokenizer

    model, tokenizer, extractor = _pretrained(
        target,
        spec,
        local,
        "a Whisper model",
        (WhisperForConditionalGeneration, WhisperTokenizer, WhisperFeatureExtractor),
    )
    if int(extractor.sampling_rate) != 16_000:
        raise SpecError(
            f"{spec}: the feature extractor expects {extractor.sampling_rate} Hz audio; neurolake decodes at 16 kHz"
        )
    config = {
        "model_type": "whisper",
        "layers": int(model.config.encoder_layers),
        "hidden_size": int(model.config.d_model),
        "window_s": int(extractor.n_samples) / 16_000,
    }
    if language:
        config["language"] = language
    return WhisperAdapter(
        model, extractor=extractor, tokenizer=tokenizer, spec=spec, language=language, config=config, device=device
    )
