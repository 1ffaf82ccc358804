"""Ingest throughput: the whole pipeline versus the bare model forward, same utterances.

Synthesises a corpus (``--utterances`` distinct recordings, listed ``--repeat`` times in a
manifest under distinct ids, so that a long run needs no long synthesis), then in one
run measures frames per second of
  (a) the bare model forward on length-bucketed, padded batches of the same utterances,
      no capture, no labels, nothing written, audio decoded before the clock starts -
      both as one process using every core's threads and as one single-threaded process
      per core (for small models the second is faster); the faster is the baseline;
  (b) ``ingest``: decode (Ray tasks), forward with layer capture, labels, Zarr and
      Parquet writes and commits, on a local Ray started before the clock starts
      (actor start-up and planning are inside the clock).
Prints both and the ratio (target >= 0.85 on CPU), the time to the first commit, audio hours per
second, and the time 960 h of LibriSpeech would take at that rate on this machine.

The default model is wav2vec 2.0 base (the architecture of WAV2VEC2_ASR_BASE_960H, random
weights: the compute of a real ASR model, ~550 frames/s on 2 cores). ``--model demo`` runs
the bundled model, which is ~60x cheaper per frame: there decoding, labels and compression
(on the same cores) weigh as much as the model and the ratio is about 0.35 on 2 cores.
``--model standin`` (``standin_model.py``) gives wav2vec 2.0 base's outputs from table
look-ups: the pipeline's rate is then what the CPUs sustain around a GPU's forward (run it
with ``--actors 1``, one actor as beside one GPU, and under ``taskset`` for fewer cores).

    python benchmarks/ingest_throughput.py [--model wav2vec2-base|wav2letter-full|demo|SPEC]
                                           [--utterances N] [--repeat K]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time

import torch
import torchaudio

from neurolake.cluster.ray_env import connect
from neurolake.corpora import open_corpus
from neurolake.corpora.audio import load_audio
from neurolake.corpora.synth import synthesize_corpus
from neurolake.ingest.part import length_batches
from neurolake.ingest.pipeline import ingest
from neurolake.models import load_model


def _batches(audio: list, max_batch: int, max_batch_samples: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Padded batches by the pipeline's own rule, over the whole corpus sorted by length (the
    pipeline's parts are cut from the same order, so its batches differ at part boundaries)."""
    batches = length_batches([a.shape[0] for a in audio], max_batch, max_batch_samples)
    tensors = []
    for b in batches:
        lengths = [audio[i].shape[0] for i in b]
        wave = torch.zeros(len(b), max(lengths))
        for row, i in enumerate(b):
            wave[row, : lengths[row]] = torch.from_numpy(audio[i])
        tensors.append((wave, torch.tensor(lengths)))
    return tensors


def _decoded_audio(model_spec: str, corpus: str, device: str = "cpu") -> tuple[object, list]:
    adapter = load_model(model_spec, device)
    cache: dict[str, object] = {}
    audio = []
    for u in open_corpus(corpus):
        if u.audio_uri not in cache:
            cache[u.audio_uri] = load_audio(u.audio_uri, adapter.sample_rate)
        audio.append(cache[u.audio_uri])
    return adapter, audio


def _timed_forward(adapter, tensors) -> float:
    device = adapter.device
    with torch.no_grad():
        adapter.forward(tensors[0][0].to(device), tensors[0][1], [])  # warm-up
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        for wave, lengths in tensors:
            adapter.forward(wave.to(device), lengths, [])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0


def bare_forward(
    model_spec: str, corpus: str, max_batch: int, max_batch_samples: int, device: str = "cpu"
) -> tuple[float, int, float, float]:
    """Seconds of pure forward over the corpus (one process, all cores, or one GPU), frames,
    audio seconds, and the share of padding in its batches."""
    adapter, audio = _decoded_audio(model_spec, corpus, device)
    batches = _batches(audio, max_batch, max_batch_samples)
    elapsed = _timed_forward(adapter, batches)
    frames = sum(adapter.num_frames(a.shape[0]) for a in audio)
    padding = sum(wave.numel() for wave, _ in batches) / sum(a.shape[0] for a in audio) - 1
    return elapsed, frames, sum(a.shape[0] for a in audio) / adapter.sample_rate, padding


def _forward_worker(model_spec, corpus, max_batch, max_batch_samples, part, parts, barrier, results) -> None:
    torch.set_num_threads(1)
    adapter, audio = _decoded_audio(model_spec, corpus)
    tensors = _batches(audio, max_batch, max_batch_samples)[part::parts]
    barrier.wait()
    results.put(_timed_forward(adapter, tensors))


def bare_forward_per_core(model_spec: str, corpus: str, max_batch: int, max_batch_samples: int, cpus: int) -> float:
    """Wall seconds of the same forward as ``cpus`` single-threaded processes, each with every
    ``cpus``-th batch, started together."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(cpus), ctx.Queue()
    procs = [
        ctx.Process(
            target=_forward_worker, args=(model_spec, corpus, max_batch, max_batch_samples, i, cpus, barrier, results)
        )
        for i in range(cpus)
    ]
    for p in procs:
        p.start()
    times = [results.get() for _ in procs]
    for p in procs:
        p.join()
    return max(times)


def repeated_manifest(corpus: str, times: int, path: str) -> str:
    """A manifest listing every utterance of ``corpus`` ``times`` times under distinct ids.

    Phone-timing sidecars are keyed by the original ids, so the copies are labelled from
    the lexicon (as any corpus without timings is).
    """
    with open(path, "w") as f:
        for k in range(times):
            for u in open_corpus(corpus):
                f.write(
                    json.dumps(
                        {
                            "utterance_id": f"{u.utterance_id}-r{k}",
                            "audio_uri": u.audio_uri,
                            "transcript": u.transcript,
                            "speaker_id": u.speaker_id,
                        }
                    )
                    + "\n"
                )
    return path


def full_wav2letter(base: str) -> str:
    """A checkpoint of torchaudio's Wav2Letter at full size (random weights), as the adapter reads it."""
    model = torchaudio.models.Wav2Letter(num_classes=29, input_type="waveform", num_features=1)
    path = os.path.join(base, "wav2letter.pt")
    tokens = ["-", " ", "'"] + [chr(ord("A") + i) for i in range(26)]
    torch.save(
        {
            "config": {"num_classes": 29, "input_type": "waveform", "num_features": 1},
            "tokens": tokens,
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path


def base_wav2vec2(base: str, large: bool = False) -> str:
    """A checkpoint of wav2vec 2.0 "base" (the architecture of WAV2VEC2_ASR_BASE_960H: 95 M
    parameters, 12 transformer layers of 768) or, with ``large``, "large" (WAV2VEC2_ASR_LARGE_LV60K_960H's:
    317 M parameters, 24 layers of 1024, layer-normalised feature encoder) with random weights,
    as the adapter reads it."""
    config = dict(
        extractor_mode="layer_norm" if large else "group_norm",
        extractor_conv_layer_config=None,
        extractor_conv_bias=large,
        encoder_embed_dim=1024 if large else 768,
        encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=128,
        encoder_pos_conv_groups=16,
        encoder_num_layers=24 if large else 12,
        encoder_num_heads=16 if large else 12,
        encoder_attention_dropout=0.0,
        encoder_ff_interm_features=4096 if large else 3072,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0,
        encoder_layer_norm_first=large,
        encoder_layer_drop=0.0,
        aux_num_out=29,
    )
    torch.manual_seed(0)
    model = torchaudio.models.wav2vec2_model(**config)
    path = os.path.join(base, "wav2vec2-large.pt" if large else "wav2vec2-base.pt")
    tokens = ["-", "|", "'"] + [chr(ord("A") + i) for i in range(26)]
    torch.save({"config": config, "tokens": tokens, "state_dict": model.state_dict()}, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--model",
        default="wav2vec2-base",
        help="'wav2vec2-base' (default: wav2vec 2.0 base, "
        "WAV2VEC2_ASR_BASE_960H's architecture), 'wav2vec2-large' (24 layers of 1024), "
        "'wav2letter-full' (torchaudio's full-size Wav2Letter "
        "on waveforms), both with random weights, 'standin' (wav2vec 2.0 base's outputs from "
        "table look-ups: the CPU side of a GPU sweep, see standin_model.py), or any model spec such as 'demo'",
    )
    ap.add_argument(
        "--utterances",
        type=int,
        default=None,
        help="distinct synthetic utterances (default 150 for wav2vec2-base, else 1000)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="times the corpus is listed (default 4 for wav2vec2-base, else 10: start-up is then a small share)",
    )
    ap.add_argument("--layers", default=None, help="comma-separated globs (default: the model's blocks)")
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--actors", type=int, default=None, help="model actors (default: ingest's own choice)")
    ap.add_argument("--part-rows", type=int, default=None, help="frames per part (default: ~256 MB of activations)")
    args = ap.parse_args()
    large = args.model in ("wav2vec2-base", "wav2vec2-large")  # ~60x the demo model's cost per frame
    args.utterances = args.utterances or (150 if large else 1000)
    args.repeat = args.repeat or (4 if large else 10)
    base = tempfile.mkdtemp(prefix="nl-ingest-bench-")
    try:
        corpus = os.path.join(base, "corpus")
        synthesize_corpus(corpus, n_utterances=args.utterances, seed=11)
        if args.repeat > 1:
            corpus = repeated_manifest(corpus, args.repeat, os.path.join(base, "repeated.jsonl"))
        if args.model == "wav2letter-full":
            args.model = f"wav2letter:{full_wav2letter(base)}"
        elif args.model in ("wav2vec2-base", "wav2vec2-large"):
            args.model = f"wav2vec2:{base_wav2vec2(base, large=args.model == 'wav2vec2-large')}"
        elif args.model == "standin":
            # Ray's workers inherit the environment of the local Ray this process starts.
            here = os.path.dirname(os.path.abspath(__file__))
            os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)
            sys.path.insert(0, here)
            args.model = "python:standin_model:build"
            args.layers = args.layers or "layers.*"
        resources = connect()
        cpus = int(resources.get("CPU", 1))
        gpus = int(resources.get("GPU", 0))
        device = "cuda" if gpus and torch.cuda.is_available() else "cpu"
        torch.set_num_threads(cpus)
        bare_s, frames, audio_s, bare_padding = bare_forward(args.model, corpus, args.max_batch, 16_000 * 160, device)
        per_core_s = (
            bare_forward_per_core(args.model, corpus, args.max_batch, 16_000 * 160, cpus)
            if cpus > 1 and device == "cpu"
            else bare_s
        )
        done: list[tuple[float, object]] = []  # (time, PartResult) as parts commit
        t0 = time.perf_counter()
        summary = ingest(
            os.path.join(base, "lake"),
            corpus,
            args.model,
            run_id="bench",
            layers=args.layers.split(",") if args.layers else None,
            max_batch=args.max_batch,
            progress=False,
            part_rows=args.part_rows,
            actors=args.actors,
            on_part_done=lambda r: done.append((time.perf_counter(), r)),
        )
        pipe_s = time.perf_counter() - t0
        assert summary.frames == frames, (summary.frames, frames)
        pipe_fps = frames / pipe_s
        bare_fps = frames / min(bare_s, per_core_s)
        print(
            f"{args.utterances} x {args.repeat} utterances, {audio_s / 60:.1f} min of audio, {frames:,} frames, "
            f"{cpus} CPUs, {gpus} GPUs (bare forward on {device}), model {args.model}"
        )
        print(f"bare forward : {bare_s:7.1f} s  {frames / bare_s:10,.0f} frames/s  (one process, {cpus} threads)")
        print(
            f"bare forward : {per_core_s:7.1f} s  {frames / per_core_s:10,.0f} frames/s  ({cpus} processes, 1 thread each)"
        )
        print(
            f"pipeline     : {pipe_s:7.1f} s  {pipe_fps:10,.0f} frames/s  ({summary.bytes_raw / 1e6:,.0f} MB of activations)"
        )
        print(
            f"ratio pipeline/bare = {pipe_fps / bare_fps:.2f}   (target >= 0.85 on CPU; against the faster bare "
            f"forward; against one {cpus}-thread process {pipe_fps * bare_s / frames:.2f})"
        )
        if done:
            # An actor works on two parts at once, so they commit in pairs: a rate between
            # commits would mislead; the time to the first commit shows start-up plus a part.
            print(
                f"first part committed after {done[0][0] - t0:.1f} s (planning, actor start-up, decoding "
                f"and the part itself); {len(done)} parts"
            )
            forward_s = sum(r.forward_seconds for _, r in done)
            padded = sum(r.padded_samples for _, r in done)
            print(
                f"inside the pipeline: model forward (with capture) {forward_s:.1f} s = {forward_s / pipe_s:.0%} of "
                f"its wall time; padding {padded / (audio_s * 16_000) - 1:.1%} of the audio "
                f"(bare batches: {bare_padding:.1%})"
            )
        hours_per_s = audio_s / pipe_s / 3600
        print(
            f"audio: {audio_s / pipe_s:,.1f} s of audio per second; 960 h would take {960 / hours_per_s / 3600:,.1f} h here"
        )
        print(
            f"activations written: {summary.bytes_raw / pipe_s / 1e9:.2f} GB/s (float16, before compression)"
            + (f"; per GPU {audio_s / pipe_s / 3600 / gpus:.4f} audio hours per second" if gpus else "")
        )
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
