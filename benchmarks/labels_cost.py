"""Cost of frame labelling against the model forward pass it follows.

Goal: labelling an utterance (greedy decode, forced alignment, words, WER/CER, phonemes)
costs at most 0.2 of the model's forward pass over it, so it never becomes the bottleneck
of ingestion. Synthesises a corpus, runs the model adapter (default: the bundled demo
model) over every utterance, then labels the log-probabilities exactly as ingest does
(ground-truth phone intervals from the synthetic sidecar); both timed in one process on
the same CPU threads.

    python benchmarks/labels_cost.py [--utterances 200] [--model demo] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import torch

from neurolake.corpora import open_corpus, read_phone_intervals
from neurolake.corpora.audio import load_audio
from neurolake.corpora.synth import synthesize_corpus
from neurolake.labels.frames import label_utterance
from neurolake.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utterances", type=int, default=200)
    ap.add_argument("--model", default="demo")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    base = tempfile.mkdtemp(prefix="nl-labels-bench-")
    try:
        synthesize_corpus(os.path.join(base, "c"), n_utterances=args.utterances, seed=3)
        corpus = open_corpus(os.path.join(base, "c"))
        adapter = load_model(args.model)
        items = [(u, load_audio(u.audio_uri, adapter.sample_rate), read_phone_intervals(u)) for u in corpus]
        adapter.forward(torch.from_numpy(items[0][1])[None], [items[0][1].size], [])  # warm-up
        t0 = time.perf_counter()
        outputs = []
        for _, audio, _ in items:
            out = adapter.forward(torch.from_numpy(audio)[None], [audio.size], [])
            outputs.append(out.log_probs[0, : int(out.frame_lengths[0])].numpy())
        forward_s = time.perf_counter() - t0
        label_utterance(
            outputs[0], adapter.tokens, items[0][0].transcript, frame_shift_s=adapter.frame_shift_s
        )  # compile
        t0 = time.perf_counter()
        for (utt, _, phones), log_probs in zip(items, outputs, strict=False):
            label_utterance(
                log_probs,
                adapter.tokens,
                utt.transcript,
                frame_shift_s=adapter.frame_shift_s,
                phone_intervals=phones,
                utterance_id=utt.utterance_id,
            ).frames_table()
        labels_s = time.perf_counter() - t0
        frames = sum(o.shape[0] for o in outputs)
        print(f"{len(items)} utterances, {frames:,} frames, model {args.model}, {args.threads} threads")
        print(f"forward : {forward_s:7.2f} s  ({1000 * forward_s / len(items):.1f} ms per utterance)")
        print(f"labels  : {labels_s:7.2f} s  ({1000 * labels_s / len(items):.1f} ms per utterance)")
        print(f"ratio labels/forward = {labels_s / forward_s:.3f}   (target <= 0.2)")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
