"""Cost of frame labelling against the model forward pass it follows.

Goal: labelling one utterance (greedy decode, forced alignment, words, WER/CER, phonemes)
costs at most 0.2 of the model's forward pass over the same utterance, so it never becomes
the bottleneck of ingestion.

The full measurement - labels after real model adapters on a real corpus - needs the
adapters; until then this script measures ``label_utterance`` on synthetic posteriors of
realistic shape (default: 200 utterances of 1,500 frames, 30 s at 50 Hz, over the 29-token
character set of torchaudio's wav2vec2 ASR bundles, ~80 words each, 3 % of the letters
wrong, about 20 % WER) and times, in the same process and on the same CPU threads, the
forward pass of

- ``wav2letter``: torchaudio's ``Wav2Letter`` on raw waveform, the size the project
  supports as a model (about 40 GMAC for 30 s), and
- ``small``: a five-layer Conv1d stack of 256 channels on 40 log-mel features (about
  3.4 GMAC for 30 s, a twelfth of Wav2Letter): a cheap forward pass, so a hard ratio to meet.

Run: ``python benchmarks/labels_cost.py [--utterances 200] [--frames 1500] [--threads 1]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import numpy as np
import torch
import torchaudio

from neurolake.ingest.labels import label_utterance
from neurolake.ingest.phonemes import cmudict_pronunciations

LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
TOKENS = ["-", "|", "'", *LETTERS]
SAMPLE_RATE = 16_000


def synthetic_utterances(n: int, n_frames: int, seed: int) -> list[tuple[np.ndarray, str]]:
    """(log-probs ``[n_frames, 29] float32``, reference) pairs with peaky, model-like
    posteriors whose greedy path spells the reference with some letters wrong."""
    rng = np.random.default_rng(seed)
    pick = random.Random(seed)
    # A Zipf-weighted 5,000-word vocabulary: corpora repeat words, as real speech does.
    vocabulary = pick.sample(sorted(w for w in cmudict_pronunciations() if w.isalpha()), 5000)
    weights = 1.0 / np.arange(1, len(vocabulary) + 1)
    weights /= weights.sum()
    out = []
    for _ in range(n):
        # About 15 characters per second of speech, as in LibriSpeech.
        words: list[str] = []
        while len(" ".join(words)) < 0.3 * n_frames:
            words.append(vocabulary[rng.choice(len(vocabulary), p=weights)])
        reference = " ".join(words)
        path = np.zeros(n_frames, dtype=np.int64)
        slots = np.arange(0, n_frames - 1, 2)  # one spike per slot keeps repeats apart
        spikes = np.sort(rng.choice(slots, size=len(reference), replace=False))
        for frame, char in zip(spikes, reference, strict=True):
            token = TOKENS.index("|" if char == " " else char)
            if char != " " and rng.random() < 0.03:
                token = int(rng.integers(3, len(TOKENS)))
            path[frame] = token
        probs = rng.dirichlet(np.full(len(TOKENS), 0.3), size=n_frames) * 0.3
        probs[np.arange(n_frames), path] += 0.7
        out.append((np.log(probs).astype(np.float32), reference))
    return out


def small_conv_stack(n_classes: int) -> torch.nn.Module:
    """Five Conv1d layers of 256 channels on 40 features, stride 2 once: 100 -> 50 Hz."""
    layers: list[torch.nn.Module] = [torch.nn.Conv1d(40, 256, 11, stride=2, padding=5)]
    for _ in range(3):
        layers += [torch.nn.ReLU(), torch.nn.Conv1d(256, 256, 11, padding=5)]
    layers += [torch.nn.ReLU(), torch.nn.Conv1d(256, n_classes, 1)]
    return torch.nn.Sequential(*layers)


def time_forward(model: torch.nn.Module, batch: torch.Tensor, repeats: int) -> tuple[float, int]:
    """Median seconds of one forward pass after a warm-up, and the output frame count."""
    times = []
    with torch.inference_mode():
        out = model(batch)
        for _ in range(repeats):
            start = time.perf_counter()
            out = model(batch)
            times.append(time.perf_counter() - start)
    return statistics.median(times), int(out.shape[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--utterances", type=int, default=200)
    parser.add_argument("--frames", type=int, default=1500, help="output frames per utterance")
    parser.add_argument("--frame-rate", type=float, default=50.0, help="output frames per second")
    parser.add_argument("--forward-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    utterances = synthetic_utterances(args.utterances, args.frames, args.seed)
    print(f"built {len(utterances)} utterances in {time.perf_counter() - start:.1f} s")

    # One-time costs (CMUdict load, compiling or loading the compiled kernels) happen here.
    start = time.perf_counter()
    label_utterance(utterances[0][0], TOKENS, utterances[0][1], frame_rate_hz=args.frame_rate)
    print(f"first call (one-time set-up): {time.perf_counter() - start:.2f} s")

    label_times, arrow_times, wers = [], [], []
    for log_probs, reference in utterances:
        start = time.perf_counter()
        labels = label_utterance(log_probs, TOKENS, reference, frame_rate_hz=args.frame_rate)
        label_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        labels.frames_table()
        arrow_times.append(time.perf_counter() - start)
        wers.append(labels.utterance["wer"])
    label_s = statistics.mean(label_times)
    arrow_s = statistics.mean(arrow_times)
    n_chars = statistics.mean(len(r) for _, r in utterances)
    print(
        f"label_utterance: {args.frames} frames x {len(TOKENS)} tokens, ~{n_chars:.0f} reference "
        f"characters, mean WER {statistics.mean(wers):.2f}"
    )
    print(
        f"  per utterance: mean {label_s * 1e3:.2f} ms, median "
        f"{statistics.median(label_times) * 1e3:.2f} ms, max {max(label_times) * 1e3:.2f} ms; "
        f"+ Arrow table {arrow_s * 1e3:.2f} ms"
    )

    seconds = args.frames / args.frame_rate
    waveform = torch.randn(1, 1, int(seconds * SAMPLE_RATE))
    features = torch.randn(1, 40, int(seconds * 100))
    baselines = {
        "wav2letter": (torchaudio.models.Wav2Letter(len(TOKENS), "waveform", 1).eval(), waveform),
        "small": (small_conv_stack(len(TOKENS)).eval(), features),
    }
    print(f"forward passes on {seconds:.0f} s of input, batch 1, {args.threads} CPU thread(s):")
    for name, (model, batch) in baselines.items():
        forward_s, out_frames = time_forward(model, batch, args.forward_repeats)
        ratio = (label_s + arrow_s) / forward_s
        print(
            f"  {name:>10}: {forward_s * 1e3:8.1f} ms ({out_frames} frames); "
            f"labels / forward = {ratio:.3f} (target <= 0.2: {'met' if ratio <= 0.2 else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
