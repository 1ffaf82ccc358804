"""Capture overhead of ``hf:`` models: neurolake's forward with every encoder layer captured onto
the output frame grid, against the bare ``transformers`` forward with ``output_hidden_states``.

A wav2vec 2.0 CTC model of the base geometry's shape but fewer layers (random weights, built from
a config, saved and loaded back through ``hf:PATH``) decodes the same batch of utterances both
ways; the best of ``--repeats`` timings of each is kept.

With ``--model whisper``, a Whisper of whisper-base's encoder geometry (d_model 512, 8 heads,
feed-forward 2048; random weights, a two-layer decoder, a byte-level tokenizer) is timed the same
way: neurolake's forward (features, the encoder with every layer captured and trimmed to the
audio's frames, ``generate`` from that encoder output) against the bare ``transformers`` calls
(features, the encoder with ``output_hidden_states``, ``generate`` from its output). Both
decode the same tokens (the generation length is capped at 24 tokens for both); the encoder-only
times are printed too.

Target: capture / bare <= 1.2.

    python benchmarks/hf_capture.py [--model wav2vec2|whisper] [--layers 4] [--seconds 8] [--batch 4] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: tests.models.whisper_tiny

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "'"]


def build(path: Path, layers: int) -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(VOCAB),
        num_hidden_layers=layers,
        feat_extract_norm="layer",
        do_stable_layer_norm=True,
        pad_token_id=0,
    )
    path.mkdir(parents=True, exist_ok=True)
    (path.parent / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    Wav2Vec2CTCTokenizer(str(path.parent / "vocab.json"), word_delimiter_token="|").save_pretrained(path)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=True).save_pretrained(path)
    Wav2Vec2ForCTC(config).eval().save_pretrained(path)


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        with torch.no_grad():
            fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("wav2vec2", "whisper"), default="wav2vec2")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.model == "whisper":
        whisper(args)
        return

    from neurolake.models import load_model

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        build(path, args.layers)
        adapter = load_model(f"hf:{path}")
        model = adapter.module
        n = int(args.seconds * 16_000)
        waves = 0.1 * torch.randn(args.batch, n, generator=torch.Generator().manual_seed(1))
        lengths = [n] * args.batch
        names = [f"wav2vec2.encoder.layers.{i}" for i in range(args.layers)]
        normed = (waves - waves.mean(dim=1, keepdim=True)) / torch.sqrt(
            waves.var(dim=1, unbiased=False, keepdim=True) + 1e-7
        )
        mask = torch.ones_like(waves, dtype=torch.long)

        def bare() -> None:
            model(normed, attention_mask=mask, output_hidden_states=True)

        def captured() -> None:
            adapter.forward(waves, lengths, names)

        bare(), captured()  # warm up
        t_bare, t_capture = best(bare, args.repeats), best(captured, args.repeats)
    audio = args.batch * args.seconds
    print(
        f"{args.layers}-layer wav2vec 2.0 (hidden 768), batch {args.batch} x {args.seconds:.0f} s, "
        f"{torch.get_num_threads()} torch threads"
    )
    print(f"bare transformers forward (output_hidden_states): {t_bare:.2f} s ({audio / t_bare:.1f} s audio/s)")
    print(
        f"neurolake forward capturing {len(names)} encoder layers: {t_capture:.2f} s ({audio / t_capture:.1f} s audio/s)"
    )
    print(f"ratio capture / bare: {t_capture / t_bare:.2f} (target <= 1.2)")


def whisper(args: argparse.Namespace) -> None:
    from neurolake.models import load_model
    from tests.models.whisper_tiny import save_tiny_whisper

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "whisper"
        model = save_tiny_whisper(path, encoder_layers=args.layers, d_model=512, heads=8, ffn=2048)
        adapter = load_model(f"hf:{path}")
        model = adapter.module
        encoder = model.get_encoder()
        n = int(args.seconds * 16_000)
        waves = 0.1 * torch.randn(args.batch, n, generator=torch.Generator().manual_seed(1))
        lengths = torch.tensor([n] * args.batch)
        names = [f"model.encoder.layers.{i}" for i in range(args.layers)]

        def bare_encoder():
            return encoder(adapter.features(waves, lengths), output_hidden_states=True)

        def bare() -> None:
            model.generate(encoder_outputs=bare_encoder())

        def captured() -> None:
            adapter.forward(waves, lengths, names, capture_dtype=torch.float16)

        def captured_encoder() -> None:
            adapter.encode(waves, lengths, names, capture_dtype=torch.float16)

        bare(), captured()  # warm up
        t_bare, t_capture = best(bare, args.repeats), best(captured, args.repeats)
        t_bare_encoder, t_capture_encoder = best(bare_encoder, args.repeats), best(captured_encoder, args.repeats)
    audio = args.batch * args.seconds
    print(
        f"{args.layers}-layer Whisper encoder (d_model 512), batch {args.batch} x {args.seconds:.0f} s "
        f"(each padded to the 30 s window), {torch.get_num_threads()} torch threads"
    )
    print(f"bare transformers (features, encoder, generate): {t_bare:.2f} s ({audio / t_bare:.1f} s audio/s)")
    print(
        f"neurolake forward capturing {len(names)} encoder layers: {t_capture:.2f} s ({audio / t_capture:.1f} s audio/s)"
    )
    print(f"encoder only: bare {t_bare_encoder:.2f} s, with capture {t_capture_encoder:.2f} s")
    print(
        f"ratio capture / bare: {t_capture / t_bare:.2f} (target <= 1.2); encoder only {t_capture_encoder / t_bare_encoder:.2f}"
    )


if __name__ == "__main__":
    main()
