"""Ingest throughput: the whole pipeline versus the bare model forward, same utterances.

Synthesises a corpus, then in one run measures frames per second of
  (a) the bare model forward: the adapter's network on the same length-bucketed,
      padded batches the pipeline makes, no capture, no labels, nothing written;
  (b) ``ingest``: decode (Ray CPU tasks), forward with layer capture, labels, Zarr and
      Parquet writes and commits, on a local Ray started before the clock starts.
Prints both and the ratio (target >= 0.85 on CPU), audio hours per second, and the
time 960 h of LibriSpeech would take at that rate on this machine.

    python benchmarks/ingest_throughput.py [--utterances 300] [--model demo] [--layers GLOB,..]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import torch
import torchaudio

from neurolake.cluster.ray_env import connect
from neurolake.ingest.audio import load_audio
from neurolake.ingest.corpora import open_corpus
from neurolake.ingest.models import load_model
from neurolake.ingest.pipeline import ingest
from neurolake.ingest.synth import synthesize_corpus


def bare_forward(model_spec: str, corpus: str, max_batch: int, max_batch_samples: int) -> tuple[float, int, float]:
    """Seconds of pure forward over the corpus, frames produced, audio seconds."""
    adapter = load_model(model_spec)
    audio = [load_audio(u.audio_uri, adapter.sample_rate) for u in open_corpus(corpus)]
    order = sorted(range(len(audio)), key=lambda i: audio[i].shape[0])
    batches, current = [], []
    for i in order:
        if current and (len(current) >= max_batch or audio[i].shape[0] * (len(current) + 1) > max_batch_samples):
            batches.append(current)
            current = []
        current.append(i)
    batches.append(current)
    tensors = []
    for b in batches:
        lengths = [audio[i].shape[0] for i in b]
        wave = torch.zeros(len(b), max(lengths))
        for row, i in enumerate(b):
            wave[row, : lengths[row]] = torch.from_numpy(audio[i])
        tensors.append((wave, torch.tensor(lengths)))
    frames = sum(adapter.num_frames(a.shape[0]) for a in audio)
    with torch.no_grad():
        adapter.forward(*tensors[0], [])  # warm-up
        t0 = time.perf_counter()
        for wave, lengths in tensors:
            adapter.forward(wave, lengths, [])
        elapsed = time.perf_counter() - t0
    return elapsed, frames, sum(a.shape[0] for a in audio) / adapter.sample_rate


def full_wav2letter(base: str) -> str:
    """A checkpoint of torchaudio's Wav2Letter at full size (random weights), as the adapter reads it."""
    model = torchaudio.models.Wav2Letter(num_classes=29, input_type="waveform", num_features=1)
    path = os.path.join(base, "wav2letter.pt")
    tokens = ["-", " ", "'"] + [chr(ord("A") + i) for i in range(26)]
    torch.save({"config": {"num_classes": 29, "input_type": "waveform", "num_features": 1}, "tokens": tokens,
                "state_dict": model.state_dict()}, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--utterances", type=int, default=300)
    ap.add_argument("--model", default="demo", help="model spec, or 'wav2letter-full' for torchaudio's full-size "
                    "Wav2Letter on waveforms with random weights (a heavy model: forward dominates)")
    ap.add_argument("--layers", default=None, help="comma-separated globs (default: the model's blocks)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--unit-rows", type=int, default=None, help="frames per work unit (default: ~64 MB of activations)")
    args = ap.parse_args()
    base = tempfile.mkdtemp(prefix="nl-ingest-bench-")
    try:
        corpus = os.path.join(base, "corpus")
        synthesize_corpus(corpus, n_utterances=args.utterances, seed=11)
        if args.model == "wav2letter-full":
            args.model = f"wav2letter:{full_wav2letter(base)}"
        resources = connect()
        cpus = int(resources.get("CPU", 1))
        torch.set_num_threads(cpus)
        bare_s, frames, audio_s = bare_forward(args.model, corpus, args.max_batch, 16_000 * 160)
        done: list[tuple[float, int]] = []  # (time, frames) as units commit
        t0 = time.perf_counter()
        summary = ingest(
            os.path.join(base, "lake"), corpus, args.model, run_id="bench",
            layers=args.layers.split(",") if args.layers else None, max_batch=args.max_batch, progress=False,
            unit_rows=args.unit_rows, on_unit_done=lambda r: done.append((time.perf_counter(), r.frames)),
        )
        pipe_s = time.perf_counter() - t0
        assert summary.frames == frames, (summary.frames, frames)
        bare_fps, pipe_fps = frames / bare_s, frames / pipe_s
        print(f"{args.utterances} utterances, {audio_s / 60:.1f} min of audio, {frames:,} frames, {cpus} CPUs, model {args.model}")
        print(f"bare forward : {bare_s:7.1f} s  {bare_fps:10,.0f} frames/s")
        print(f"pipeline     : {pipe_s:7.1f} s  {pipe_fps:10,.0f} frames/s  ({summary.bytes_raw / 1e6:,.0f} MB of activations)")
        print(f"ratio pipeline/bare = {pipe_fps / bare_fps:.2f}   (target >= 0.85 on CPU)")
        if len(done) > 2:
            # Steady state: from the first committed unit to the last, without planning and
            # actor start-up (which a long sweep pays once).
            steady = sum(f for _, f in done[1:]) / (done[-1][0] - done[0][0])
            print(f"steady state : {steady:10,.0f} frames/s over {len(done) - 1} units -> ratio {steady / bare_fps:.2f}; "
                  f"start-up and planning {done[0][0] - t0:.1f} s")
        hours_per_s = audio_s / pipe_s / 3600
        print(f"audio: {audio_s / pipe_s:,.1f} s of audio per second; 960 h would take {960 / hours_per_s / 3600:,.1f} h here")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
