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
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from neurolake.errors import SpecError
from neurolake.models.adapter import ModelAdapter, _padded
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


def load_hf(target: str, spec: str, device: str | torch.device = "cpu") -> HFCTCAdapter:
    """``hf:ID_OR_PATH``: a ``transformers`` CTC model with its tokenizer and feature extractor."""
    from transformers import AutoFeatureExtractor, AutoModelForCTC, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the ingest's own bars say what is going on

    local = os.path.isdir(target)
    if not local and (target.startswith((".", "/", "~")) or os.sep in target.strip("/").split("/", 1)[-1]):
        raise SpecError(f"{spec}: no model directory {target!r} (a Hub id is ORG/NAME)")
    try:
        model = AutoModelForCTC.from_pretrained(target, local_files_only=local)
        tokenizer = AutoTokenizer.from_pretrained(target, local_files_only=local)
        extractor = AutoFeatureExtractor.from_pretrained(target, local_files_only=local)
    except (OSError, ValueError, KeyError) as exc:
        where = "the directory" if local else "the Hugging Face cache or Hub"
        raise SpecError(
            f"{spec}: cannot load a CTC model, tokenizer and feature extractor from {where}: {exc}"
        ) from exc
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
