"""Train the bundled demo model on synthetic speech.

Usage::

    python -m neurolake.models.train_demo [--corpus DIR] [--out PATH] [--minutes M]

Without ``--corpus`` a corpus of ``--utterances`` sentences is synthesised
(:func:`neurolake.corpora.synth.synthesize_corpus`) into a temporary directory; a
``--corpus`` directory that holds no corpus yet is synthesised into and kept, so
that later runs reuse it. Training uses the ``train`` split; the greedy character
error rate is then measured on ``test`` (new sentences, training voices) and
``test-holdout`` (an accent never heard in training), printed, and stored in the
checkpoint under ``config["training"]["results"]``.

Recipe: CTC loss, AdamW with a one-cycle learning-rate schedule laid over the
time budget (``--minutes`` of optimisation steps, evaluation comes after), batches of similar-length utterances up to ``--batch-seconds`` of padded
audio, a random gain per utterance and SpecAugment-style frequency and time masks
on the log-mel features. Masked features are set to 0, which is what silence
maps to, and the padding of every batch is zeroed layer by layer, so training
sees exactly what single-utterance inference sees. Defaults are sized for two
CPU cores (``--threads``).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import math
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torchaudio
from tqdm import tqdm

from neurolake.corpora import Corpus, read_librispeech
from neurolake.corpora.audio import SAMPLE_RATE, load_audio
from neurolake.corpora.synth import HOLDOUT_SPLIT, TEST_SPLIT, TRAIN_SPLIT, synthesize_corpus
from neurolake.errors import NeurolakeError, SpecError
from neurolake.labels.ctc import greedy_decode
from neurolake.labels.wer import edit_distance
from neurolake.models.demo import (
    DEMO_TOKENS,
    DemoCTCModel,
    DemoModelConfig,
    build_demo_model,
    save_demo_checkpoint,
)

__all__ = [
    "Example",
    "TrainingSettings",
    "corpus_cer",
    "encode_transcript",
    "evaluate",
    "main",
    "one_cycle_lr",
    "train_demo_model",
]

logger = logging.getLogger(__name__)

DEFAULT_OUT = Path(__file__).resolve().parent / "data" / "demo_model.pt"
_TOKEN_IDS = {token: index for index, token in enumerate(DEMO_TOKENS)}


@dataclass(frozen=True)
class TrainingSettings:
    """Hyper-parameters of :func:`train_demo_model`.

    Attributes:
        minutes: wall-clock budget of the optimisation steps, minutes.
        batch_seconds: padded audio per batch, seconds.
        peak_lr: the one-cycle schedule's highest learning rate.
        weight_decay: AdamW's decoupled weight decay.
        warmup_fraction: share of the steps spent raising the learning rate.
        gain_db: per-utterance gain drawn uniformly from ``[-gain_db, gain_db]`` dB.
        freq_masks: frequency masks per utterance, each up to ``freq_mask_bands`` mel bands.
        freq_mask_bands: widest frequency mask, mel bands.
        time_masks: time masks per utterance, each up to ``time_mask_frames`` frames.
        time_mask_frames: longest time mask, feature frames (10 ms each).
        grad_clip: gradient norm clip.
        seed: seeds weights, batch order and augmentation.
    """

    minutes: float = 25.0
    batch_seconds: float = 30.0
    peak_lr: float = 3e-3
    weight_decay: float = 1e-2
    warmup_fraction: float = 0.15
    gain_db: float = 6.0
    freq_masks: int = 2
    freq_mask_bands: int = 10
    time_masks: int = 2
    time_mask_frames: int = 25
    grad_clip: float = 5.0
    seed: int = 0


@dataclass(frozen=True)
class Example:
    """One utterance in memory: ``[samples]`` float32 16 kHz audio, its token ids and text."""

    utterance_id: str
    waveform: np.ndarray
    targets: np.ndarray
    transcript: str


def encode_transcript(text: str) -> np.ndarray:
    """Transcript -> ``[n] int64`` demo token ids (upper-cased, whitespace runs -> one space).

    Raises:
        SpecError: a character the demo tokens lack.
    """
    normalised = " ".join(text.upper().split())
    unknown = sorted(set(normalised) - set(_TOKEN_IDS))
    if unknown:
        raise SpecError(f"characters {unknown} are not demo tokens")
    return np.array([_TOKEN_IDS[char] for char in normalised], dtype=np.int64)


def decode_tokens(token_ids: Sequence[int]) -> str:
    """Token ids (blanks already removed) -> text."""
    return "".join(DEMO_TOKENS[index] for index in token_ids)


def corpus_cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Character error rate over a set: total edit distance / total reference characters."""
    errors = sum(
        edit_distance(" ".join(r.split()), " ".join(h.split())) for r, h in zip(references, hypotheses, strict=True)
    )
    characters = sum(len(" ".join(r.split())) for r in references)
    return errors / characters if characters else 0.0


def _load_examples(corpus: Corpus, split: str) -> list[Example]:
    examples = []
    for utterance in corpus:
        if utterance.split != split:
            continue
        try:
            targets = encode_transcript(utterance.transcript)
            waveform = load_audio(utterance.audio_uri, SAMPLE_RATE)
        except NeurolakeError as exc:
            logger.warning("skipping %s: %s", utterance.utterance_id, exc)
            continue
        examples.append(Example(utterance.utterance_id, waveform, targets, utterance.transcript))
    return examples


def _batches(
    examples: Sequence[Example], batch_seconds: float, rng: random.Random, jitter: float = 0.0
) -> list[list[Example]]:
    """Groups of similar-length utterances whose padded length stays within ``batch_seconds``, shuffled.

    ``jitter`` perturbs the length order by up to that fraction, so that repeated
    calls group the utterances differently.
    """
    ordered = sorted(examples, key=lambda e: len(e.waveform) * rng.uniform(1.0 - jitter, 1.0 + jitter))
    budget = batch_seconds * SAMPLE_RATE
    batches: list[list[Example]] = []
    current: list[Example] = []
    longest = 0
    for example in ordered:
        grown = max(longest, len(example.waveform))
        if current and (len(current) + 1) * grown > budget:
            batches.append(current)
            current, grown = [], len(example.waveform)
        current.append(example)
        longest = grown
    if current:
        batches.append(current)
    rng.shuffle(batches)
    return batches


def _endless(examples: Sequence[Example], batch_seconds: float, rng: random.Random) -> Iterator[list[Example]]:
    """Epoch after epoch of :func:`_batches`, regrouped and reordered every epoch."""
    while True:
        yield from _batches(examples, batch_seconds, rng, jitter=0.1)


def _collate(batch: Sequence[Example], gains: np.ndarray | None = None):
    """``(waveforms [B, S], lengths [B], targets [sum n], target_lengths [B])``."""
    lengths = torch.tensor([len(e.waveform) for e in batch], dtype=torch.int64)
    waveforms = torch.zeros(len(batch), int(lengths.max()))
    for row, example in enumerate(batch):
        waveforms[row, : len(example.waveform)] = torch.from_numpy(example.waveform)
    if gains is not None:
        waveforms *= torch.from_numpy(gains.astype(np.float32))[:, None]
    targets = torch.from_numpy(np.concatenate([e.targets for e in batch]))
    target_lengths = torch.tensor([len(e.targets) for e in batch], dtype=torch.int64)
    return waveforms, lengths, targets, target_lengths


def _augmenter(settings: TrainingSettings) -> torch.nn.Module:
    masks = [
        torchaudio.transforms.FrequencyMasking(settings.freq_mask_bands, iid_masks=True)
        for _ in range(settings.freq_masks)
    ]
    masks += [
        torchaudio.transforms.TimeMasking(settings.time_mask_frames, iid_masks=True) for _ in range(settings.time_masks)
    ]
    return torch.nn.Sequential(*masks)


def _loss(model: DemoCTCModel, augment: torch.nn.Module, batch, gains: np.ndarray) -> torch.Tensor:
    waveforms, lengths, targets, target_lengths = _collate(batch, gains)
    features, feature_lengths = model.features(waveforms, lengths)
    # Masked features become 0, the value of silence; each utterance gets its own masks.
    features = augment(features)
    log_probs = model.classify(features, feature_lengths)
    frame_lengths = model.frame_lengths(lengths)
    return torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, frame_lengths, target_lengths, blank=0, reduction="mean", zero_infinity=True
    )


def evaluate(model: DemoCTCModel, examples: Sequence[Example], batch_seconds: float = 60.0) -> dict[str, float]:
    """Greedy-decoding CER of ``model`` on ``examples``: ``{"cer", "utterances", "seconds"}``."""
    model.eval()
    references, hypotheses = [], []
    with torch.no_grad():
        for batch in _batches(examples, batch_seconds, random.Random(0)):
            waveforms, lengths, _, _ = _collate(batch)
            log_probs = model(waveforms, lengths)
            for row, frames in enumerate(model.frame_lengths(lengths).tolist()):
                decoded = greedy_decode(log_probs[row, :frames].numpy())
                hypotheses.append(decode_tokens(decoded.token_ids.tolist()))
                references.append(batch[row].transcript)
    seconds = sum(len(e.waveform) for e in examples) / SAMPLE_RATE
    return {"cer": corpus_cer(references, hypotheses), "utterances": len(examples), "seconds": seconds}


def one_cycle_lr(fraction: float, peak_lr: float, warmup_fraction: float) -> float:
    """Learning rate at ``fraction`` (0-1) of the training budget: a one-cycle schedule.

    Cosine rise from ``peak_lr / 25`` to ``peak_lr`` over the first ``warmup_fraction``,
    then cosine decay to ``peak_lr / 25e4`` (the shape and defaults of
    :class:`torch.optim.lr_scheduler.OneCycleLR`, without momentum cycling). It runs
    on the share of the time budget used rather than on steps, so the cycle ends
    when the budget does however fast the machine is.
    """
    initial, final = peak_lr / 25.0, peak_lr / 25e4
    fraction = min(max(fraction, 0.0), 1.0)
    if fraction < warmup_fraction:
        return initial + (peak_lr - initial) * (1.0 - math.cos(math.pi * fraction / warmup_fraction)) / 2.0
    remaining = (fraction - warmup_fraction) / (1.0 - warmup_fraction)
    return final + (peak_lr - final) * (1.0 + math.cos(math.pi * remaining)) / 2.0


def train_demo_model(
    train: Sequence[Example], settings: TrainingSettings, config: DemoModelConfig | None = None
) -> tuple[DemoCTCModel, dict]:
    """CTC-train a fresh demo model on ``train`` for ``settings.minutes`` of wall-clock time.

    Returns:
        The model in eval mode and a summary: steps, epochs, seconds, loss history.
    """
    if not train:
        raise SpecError("no training utterances")
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    np_rng = np.random.default_rng(settings.seed)
    model = build_demo_model(config, seed=settings.seed).train()
    augment = _augmenter(settings)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.peak_lr, weight_decay=settings.weight_decay)
    batches = _endless(train, settings.batch_seconds, rng)
    budget_s = settings.minutes * 60.0

    def gains(batch):
        return 10.0 ** (np_rng.uniform(-settings.gain_db, settings.gain_db, len(batch)) / 20.0)

    started = time.perf_counter()
    logger.info(
        "training %d parameters for %.1f minutes on %d utterances (%.0f s of audio)",
        sum(p.numel() for p in model.parameters()),
        settings.minutes,
        len(train),
        sum(len(e.waveform) for e in train) / SAMPLE_RATE,
    )
    history: list[dict[str, float]] = []
    window: list[float] = []
    audio_seconds = 0.0
    step = 0
    progress = tqdm(total=round(budget_s), desc="train", unit="s", dynamic_ncols=True)
    while (elapsed := time.perf_counter() - started) < budget_s:
        lr = one_cycle_lr(elapsed / budget_s, settings.peak_lr, settings.warmup_fraction)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = next(batches)
        loss = _loss(model, augment, batch, gains(batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        step += 1
        audio_seconds += sum(len(e.waveform) for e in batch) / SAMPLE_RATE
        window.append(loss.item())
        progress.update(round(time.perf_counter() - started) - progress.n)
        progress.set_postfix(step=step, loss=f"{window[-1]:.3f}", lr=f"{lr:.2e}")
        if len(window) == 25:
            history.append(
                {
                    "step": step,
                    "elapsed_s": round(time.perf_counter() - started, 1),
                    "loss": round(sum(window) / len(window), 4),
                }
            )
            logger.info("step %d  loss %.3f  lr %.2e  %.0f s", step, history[-1]["loss"], lr, history[-1]["elapsed_s"])
            window = []
    progress.close()
    train_seconds = sum(len(e.waveform) for e in train) / SAMPLE_RATE
    summary = {
        "steps": step,
        "wall_seconds": round(time.perf_counter() - started, 1),
        "epochs": round(audio_seconds / train_seconds, 2),
        "loss_history": history,
    }
    return model.eval(), summary


def _open_or_synthesise(corpus: str | None, utterances: int, seed: int, workdir: str) -> Corpus:
    if corpus is not None and Path(corpus).is_dir() and any(Path(corpus).rglob("*.trans.txt")):
        return read_librispeech(corpus)
    target = corpus or str(Path(workdir) / "corpus")
    logger.info("synthesising %d utterances into %s", utterances, target)
    synthesize_corpus(target, utterances, seed)
    return read_librispeech(target)


def _parser() -> argparse.ArgumentParser:
    defaults = TrainingSettings()
    parser = argparse.ArgumentParser(
        prog="python -m neurolake.models.train_demo",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--corpus", help="synthetic corpus directory (synthesised there if it holds none; a temporary one if omitted)"
    )
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="checkpoint to write")
    parser.add_argument("--minutes", type=float, default=defaults.minutes, help="training time budget")
    parser.add_argument("--utterances", type=int, default=5000, help="utterances to synthesise")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument(
        "--batch-seconds", type=float, default=defaults.batch_seconds, help="padded audio per batch, seconds"
    )
    parser.add_argument("--lr", type=float, default=defaults.peak_lr, help="peak learning rate")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    torch.set_num_threads(args.threads)
    settings = TrainingSettings(minutes=args.minutes, batch_seconds=args.batch_seconds, peak_lr=args.lr, seed=args.seed)
    try:
        with tempfile.TemporaryDirectory(prefix="neurolake-demo-") as workdir:
            corpus = _open_or_synthesise(args.corpus, args.utterances, args.seed, workdir)
            splits = {split: _load_examples(corpus, split) for split in (TRAIN_SPLIT, TEST_SPLIT, HOLDOUT_SPLIT)}
        model, summary = train_demo_model(splits[TRAIN_SPLIT], settings)
    except NeurolakeError as exc:
        logger.error("%s", exc)
        return 2
    results = {
        split: evaluate(model, examples) for split, examples in splits.items() if split != TRAIN_SPLIT and examples
    }
    for split, result in results.items():
        logger.info(
            "greedy CER on %s: %.3f (%d utterances, %.0f s)",
            split,
            result["cer"],
            result["utterances"],
            result["seconds"],
        )
    training = {
        "settings": dataclasses.asdict(settings),
        # Sizes only: the corpus path is a detail of the machine that trained.
        "corpus": {
            "train_utterances": len(splits[TRAIN_SPLIT]),
            "train_seconds": round(sum(len(e.waveform) for e in splits[TRAIN_SPLIT]) / SAMPLE_RATE, 1),
        },
        "threads": args.threads,
        **summary,
        "results": results,
    }
    size = save_demo_checkpoint(args.out, model, training)
    logger.info("wrote %s (%.1f MB)", args.out, size / 1e6)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
