"""A Whisper checkpoint small enough for tests: random weights from a config, a byte-level BPE
tokenizer with Whisper's special tokens, saved in the ``save_pretrained`` layout (as a local copy
of ``openai/whisper-*`` is)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SPECIALS = ["<|endoftext|>", "<|startoftranscript|>", "<|transcribe|>", "<|notimestamps|>"]


def save_tiny_whisper(
    path: Path, *, encoder_layers: int = 3, d_model: int = 32, heads: int = 2, ffn: int = 64, seed: int = 3
):
    """Write the checkpoint to ``path`` and return the model (``eval`` mode). With the default
    seed its transcripts are not empty (a random model often emits only special tokens). The
    encoder geometry is settable (``d_model=512, heads=8, ffn=2048, encoder_layers=6`` is
    whisper-base's); the decoder has two layers."""
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    path.mkdir(parents=True, exist_ok=True)
    vocab = {c: i for i, c in enumerate(sorted(set(bytes_to_unicode().values())))}
    merges = ["Ġ T", "H E", "ĠT HE", "Ġ A"]
    for merge in merges:
        vocab["".join(merge.split())] = len(vocab)
    (path / "vocab.json").write_text(json.dumps(vocab))
    (path / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    tokenizer = WhisperTokenizer(
        str(path / "vocab.json"),
        str(path / "merges.txt"),
        unk_token=SPECIALS[0],
        bos_token=SPECIALS[0],
        eos_token=SPECIALS[0],
        pad_token=SPECIALS[0],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIALS}
    special = {
        "decoder_start_token_id": ids["<|startoftranscript|>"],
        "eos_token_id": ids["<|endoftext|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "bos_token_id": ids["<|endoftext|>"],
    }
    config = WhisperConfig(
        vocab_size=len(tokenizer),
        num_mel_bins=80,
        encoder_layers=encoder_layers,
        decoder_layers=2,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        d_model=d_model,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        max_source_positions=1500,
        max_target_positions=64,
        begin_suppress_tokens=None,
        suppress_tokens=None,
        **special,
    )
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    # An English-only checkpoint's generation settings (no language or task tokens).
    model.generation_config = GenerationConfig(
        **special, no_timestamps_token_id=ids["<|notimestamps|>"], is_multilingual=False, max_length=24
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(path)
    return model
