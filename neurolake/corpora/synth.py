"""Synthetic speech corpora in LibriSpeech layout, with ground-truth phone timings.

:func:`synthesize_corpus` writes a corpus that every neurolake reader and the
demo model understand, made from nothing but packaged data: sentences from the
project's own vocabulary (``data/vocabulary.txt``) and a small template grammar,
spoken by espeak-ng (:mod:`neurolake.corpora.espeak`) in several English accents.

A *speaker* is an (accent, voice variant, speaking rate, pitch, pitch range)
combination. One accent can be held out: its speakers appear only in their own
split, so a model trained on the rest can be tested on an accent it never heard.

Layout under ``OUT`` (any fsspec URL)::

    SPEAKERS.TXT                                   speaker table, LibriSpeech columns
    <split>/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac   16 kHz mono, 16 bit
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt        "ID TRANSCRIPT" lines
    <split>/<speaker>/<chapter>/<speaker>-<chapter>.phones.jsonl     phone and word timings

Splits: ``train`` (training speakers, training sentences), ``test`` (training
speakers, sentences that are not in ``train``) and ``test-holdout`` (the held-out
accent's speakers, sentences in neither). Transcripts are upper case without
punctuation, as in LibriSpeech. The ``.phones.jsonl`` format is described in
:mod:`neurolake.corpora`; its times are seconds from the start of the
FLAC file and come from espeak-ng's phoneme events, not from an aligner.

The same arguments give the same bytes: sentences and speakers come from one
seeded generator, espeak-ng runs in a fresh process (its signal state carries
over between calls), and FLAC encoding is deterministic.
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

import numpy as np
import soundfile as sf

from neurolake.corpora import open_url, url_of
from neurolake.corpora.audio import SAMPLE_RATE, resample
from neurolake.corpora.espeak import VARIANTS, Speech, SpeechRequest, english_voices, synthesize_in_subprocess
from neurolake.errors import SpecError

__all__ = [
    "HOLDOUT_SPLIT",
    "SAMPLE_RATE",
    "TEST_SPLIT",
    "TRAIN_SPLIT",
    "SentenceGenerator",
    "SynthesisSummary",
    "SyntheticSpeaker",
    "Vocabulary",
    "generate_sentences",
    "load_vocabulary",
    "synthesize_corpus",
]

logger = logging.getLogger(__name__)

TRAIN_SPLIT = "train"
TEST_SPLIT = "test"
HOLDOUT_SPLIT = "test-holdout"

# ------------------------------------------------------------------- sentences

_REQUIRED_CLASSES = (
    "determiner",
    "noun",
    "plural",
    "number",
    "adjective",
    "transitive",
    "intransitive",
    "adverb",
    "preposition",
    "name",
    "pronoun",
    "time",
    "conjunction",
)

# Slots in braces are filled by SentenceGenerator; "subject" and "object" are
# noun phrases, the others name word classes of the vocabulary.
_TEMPLATES = (
    "{subject} {transitive} {object}",
    "{subject} {transitive} {object} {adverb}",
    "{subject} {transitive} {object} {preposition} {object}",
    "{subject} {intransitive} {adverb}",
    "{subject} {intransitive} {preposition} {object}",
    "{subject} {intransitive} {preposition} {object} {time}",
    "{time} {subject} {transitive} {object}",
    "{subject} {intransitive} {conjunction} {subject} {transitive} {object}",
    "{subject} {transitive} {object} {conjunction} {subject} {intransitive} {adverb}",
    "{name} and {name} {intransitive} {preposition} {object}",
)
_SLOT = re.compile(r"\{(\w+)\}")
_VOWELS = frozenset("aeiou")


@dataclass(frozen=True)
class Vocabulary:
    """Word classes for the sentence grammar: class name -> words (lower case)."""

    classes: Mapping[str, tuple[str, ...]]

    @property
    def words(self) -> frozenset[str]:
        """Every word the grammar can emit, including the template's own ("and", "an")."""
        words = {word for phrases in self.classes.values() for phrase in phrases for word in phrase.split()}
        return frozenset(words | {"and", "an"})


def load_vocabulary(url: str | None = None, *, storage_options: Mapping[str, Any] | None = None) -> Vocabulary:
    """Read a vocabulary file (format in ``data/vocabulary.txt``); the packaged one by default.

    Raises:
        SpecError: a word outside a class, or a class the grammar needs is missing or empty.
    """
    if url is None:
        text = resources.files("neurolake.corpora").joinpath("data/vocabulary.txt").read_text("utf-8")
        url = "neurolake/corpora/data/vocabulary.txt"
    else:
        fs, path = open_url(url, storage_options)
        try:
            text = fs.cat_file(path).decode("utf-8")
        except FileNotFoundError as exc:
            raise SpecError(f"vocabulary {url!r} not found") from exc
    classes: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = classes.setdefault(line[1:-1].strip(), [])
        elif current is None:
            raise SpecError(f"{url}: line {number}: word {line!r} before any [class] header")
        else:
            current.append(" ".join(line.lower().split()))
    missing = [name for name in _REQUIRED_CLASSES if not classes.get(name)]
    if missing:
        raise SpecError(f"{url}: the sentence grammar needs non-empty classes {', '.join(missing)}")
    return Vocabulary({name: tuple(words) for name, words in classes.items()})


class SentenceGenerator:
    """Random sentences from a template grammar over a :class:`Vocabulary`.

    Sentences are lower case, words separated by single spaces, no punctuation:
    ``"the old farmer carried a basket across the bridge"``.
    """

    def __init__(self, vocabulary: Vocabulary) -> None:
        self.vocabulary = vocabulary

    def sentence(self, rng: random.Random) -> str:
        """One sentence drawn with ``rng``."""
        template = rng.choice(_TEMPLATES)
        words = _SLOT.sub(lambda slot: self._fill(slot.group(1), rng), template).split()
        # "a" before a vowel-initial word reads as "an", as a speaker would say it.
        return " ".join(
            "an" if w == "a" and i + 1 < len(words) and words[i + 1][0] in _VOWELS else w for i, w in enumerate(words)
        )

    def _fill(self, slot: str, rng: random.Random) -> str:
        classes = self.vocabulary.classes
        if slot == "subject" and rng.random() < 0.3:
            return rng.choice(classes["pronoun"])
        if slot in ("subject", "object"):
            return self._noun_phrase(rng)
        return rng.choice(classes[slot])

    def _noun_phrase(self, rng: random.Random) -> str:
        classes = self.vocabulary.classes
        kind = rng.random()
        if kind < 0.25:
            return rng.choice(classes["name"])
        adjective = [rng.choice(classes["adjective"])] if rng.random() < 0.4 else []
        if kind < 0.4:
            return " ".join([rng.choice(classes["number"]), *adjective, rng.choice(classes["plural"])])
        return " ".join([rng.choice(classes["determiner"]), *adjective, rng.choice(classes["noun"])])


def generate_sentences(n: int, seed: int, vocabulary: Vocabulary | None = None) -> list[str]:
    """``n`` distinct sentences, the same for the same ``seed`` and vocabulary.

    Raises:
        SpecError: the vocabulary cannot make ``n`` distinct sentences.
    """
    generator = SentenceGenerator(vocabulary or load_vocabulary())
    rng = random.Random(seed)
    sentences: dict[str, None] = {}  # insertion-ordered set
    for _ in range(max(1000, 50 * n)):
        if len(sentences) == n:
            break
        sentences.setdefault(generator.sentence(rng), None)
    if len(sentences) < n:
        raise SpecError(f"the vocabulary gives only {len(sentences)} distinct sentences, {n} asked for")
    return list(sentences)


# -------------------------------------------------------------------- speakers


@dataclass(frozen=True)
class SyntheticSpeaker:
    """A synthetic voice: espeak-ng accent and variant with a speaking rate and pitch.

    Attributes:
        speaker_id: LibriSpeech-style numeric id, as text.
        accent: language code of the espeak-ng voice (``"en-gb-scotland"``).
        variant: espeak-ng voice variant (``"m3"``, ``"f2"``).
        rate_wpm: speaking rate, words per minute.
        pitch: base pitch, 0-100 (50 = the variant's normal pitch).
        pitch_range: intonation range, 0-100 (50 = normal).
        splits: the splits this speaker speaks in.
    """

    speaker_id: str
    accent: str
    variant: str
    rate_wpm: int
    pitch: int
    pitch_range: int
    splits: tuple[str, ...] = ()

    @property
    def sex(self) -> str:
        """``"F"`` or ``"M"``, from the variant (LibriSpeech's SEX column)."""
        return "F" if self.variant.startswith("f") else "M"


@dataclass(frozen=True)
class SynthesisSummary:
    """What :func:`synthesize_corpus` wrote.

    Attributes:
        url: the corpus root.
        splits: split name -> number of utterances.
        speakers: every speaker, with the splits it speaks in.
        audio_seconds: total duration of the audio, seconds.
        holdout_accent: the accent only ``test-holdout`` has, or ``None``.
        wall_seconds: time the synthesis took, seconds.
    """

    url: str
    splits: Mapping[str, int]
    speakers: tuple[SyntheticSpeaker, ...]
    audio_seconds: float
    holdout_accent: str | None
    wall_seconds: float

    @property
    def n_utterances(self) -> int:
        """Utterances over all splits."""
        return sum(self.splits.values())


@dataclass(frozen=True)
class _Planned:
    """One utterance of the plan, before synthesis."""

    split: str
    speaker: SyntheticSpeaker
    chapter_id: str
    utterance_id: str
    sentence: str
    noise_seed: int


@dataclass
class _ChapterFiles:
    """Transcript and timing lines of the chapter being written."""

    directory: str
    stem: str
    transcript: list[str] = field(default_factory=list)
    phones: list[str] = field(default_factory=list)


def synthesize_corpus(
    out_url: str,
    n_utterances: int = 200,
    seed: int = 0,
    *,
    holdout_accent: str | None = "en-029",
    accents: Sequence[str] | None = None,
    speakers_per_accent: int = 3,
    test_fraction: float = 0.1,
    holdout_fraction: float = 0.1,
    utterances_per_chapter: int = 20,
    rate_wpm: tuple[int, int] = (130, 210),
    pitch: tuple[int, int] = (30, 70),
    pitch_range: tuple[int, int] = (30, 80),
    variants: Sequence[str] = VARIANTS,
    vocabulary: Vocabulary | None = None,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> SynthesisSummary:
    """Synthesise a LibriSpeech-layout corpus of ``n_utterances`` sentences under ``out_url``.

    Args:
        out_url: corpus root, local path or fsspec URL; must be empty or absent
            unless ``overwrite``.
        n_utterances: utterances over all splits.
        seed: seeds sentences, speakers and espeak-ng's noise; same seed, same bytes.
        holdout_accent: accent spoken only in ``test-holdout``; ``None`` for no
            held-out split.
        accents: accents to use (language codes of :func:`~neurolake.corpora.espeak.english_voices`);
            all shipped English accents by default. ``holdout_accent`` is added if absent.
        speakers_per_accent: speakers drawn per accent.
        test_fraction: share of utterances in ``test``; 0 for none.
        holdout_fraction: share of utterances in ``test-holdout`` (ignored without
            ``holdout_accent``).
        utterances_per_chapter: a speaker's utterances in one split are grouped
            into chapters of at most this many.
        rate_wpm: inclusive range of speaking rates, words per minute.
        pitch: inclusive range of base pitch, 0-100.
        pitch_range: inclusive range of intonation range, 0-100.
        variants: espeak-ng voice variants to draw from.
        vocabulary: word classes; :func:`load_vocabulary` by default.
        overwrite: delete whatever is at ``out_url`` first.
        storage_options: passed to the fsspec filesystem.

    Raises:
        SpecError: invalid arguments, unknown accent or variant, or a non-empty
            ``out_url`` without ``overwrite``.
    """
    started = time.perf_counter()
    counts = _split_counts(n_utterances, holdout_accent, test_fraction, holdout_fraction)
    for name, (low, high) in (("rate_wpm", rate_wpm), ("pitch", pitch), ("pitch_range", pitch_range)):
        if low > high:
            raise SpecError(f"{name} range ({low}, {high}) is empty")
    if speakers_per_accent < 1 or utterances_per_chapter < 1 or not variants:
        raise SpecError("speakers_per_accent and utterances_per_chapter must be at least 1, and variants non-empty")
    unknown_variants = sorted(set(variants) - set(VARIANTS))
    if unknown_variants:
        raise SpecError(f"unknown voice variants {unknown_variants}; choose from {', '.join(VARIANTS)}")
    available = [voice.accent for voice in english_voices()]
    chosen = sorted(set(accents or available) | ({holdout_accent} if holdout_accent else set()))
    unknown = [accent for accent in chosen if accent not in available]
    if unknown:
        raise SpecError(f"unknown accents {unknown}; available: {', '.join(available)}")
    training_accents = [accent for accent in chosen if accent != holdout_accent]
    if not training_accents:
        raise SpecError("every accent is held out; give at least one other accent")

    rng = random.Random(seed)
    sentences = generate_sentences(n_utterances, rng.randrange(2**32), vocabulary)
    speakers = _draw_speakers(
        rng, training_accents, holdout_accent, speakers_per_accent, variants, rate_wpm, pitch, pitch_range
    )
    plan = _plan(rng, counts, sentences, speakers, holdout_accent, utterances_per_chapter)

    fs, root = open_url(out_url, storage_options)
    root = root.rstrip("/")
    _prepare_output(fs, root, out_url, overwrite)
    requests = [
        SpeechRequest(
            p.sentence,
            p.speaker.accent,
            p.speaker.variant,
            p.speaker.rate_wpm,
            p.speaker.pitch,
            p.speaker.pitch_range,
            p.noise_seed,
        )
        for p in plan
    ]
    seconds_by_speaker: dict[str, float] = {}
    chapter: _ChapterFiles | None = None
    for planned, speech in zip(plan, synthesize_in_subprocess(requests), strict=True):
        directory = f"{root}/{planned.split}/{planned.speaker.speaker_id}/{planned.chapter_id}"
        if chapter is None or chapter.directory != directory:
            if chapter is not None:
                _write_chapter(fs, chapter)
            chapter = _ChapterFiles(directory, f"{planned.speaker.speaker_id}-{planned.chapter_id}")
            fs.makedirs(directory, exist_ok=True)
        samples = _to_pcm16(speech)
        fs.pipe_file(f"{directory}/{planned.utterance_id}.flac", _flac_bytes(samples))
        seconds_by_speaker[planned.speaker.speaker_id] = (
            seconds_by_speaker.get(planned.speaker.speaker_id, 0.0) + len(samples) / SAMPLE_RATE
        )
        chapter.transcript.append(f"{planned.utterance_id} {planned.sentence.upper()}")
        chapter.phones.append(_phones_line(planned.utterance_id, speech))
    if chapter is not None:
        _write_chapter(fs, chapter)

    used = {(p.speaker.speaker_id, p.split) for p in plan}
    speakers = [replace(s, splits=tuple(split for split in counts if (s.speaker_id, split) in used)) for s in speakers]
    speakers = tuple(s for s in speakers if s.splits)
    fs.pipe_file(f"{root}/SPEAKERS.TXT", _speakers_table(speakers, seconds_by_speaker).encode("utf-8"))
    audio_seconds = sum(seconds_by_speaker.values())
    wall = time.perf_counter() - started
    summary = SynthesisSummary(
        url_of(fs, root), {k: v for k, v in counts.items() if v}, speakers, audio_seconds, holdout_accent, wall
    )
    logger.info(
        "synthesised %d utterances (%.1f s of audio) in %.1f s into %s",
        summary.n_utterances,
        audio_seconds,
        wall,
        summary.url,
    )
    return summary


def _split_counts(n: int, holdout_accent: str | None, test_fraction: float, holdout_fraction: float) -> dict[str, int]:
    if n < 1:
        raise SpecError(f"n_utterances must be at least 1, got {n}")
    if not 0 <= test_fraction < 1 or not 0 <= holdout_fraction < 1:
        raise SpecError("test_fraction and holdout_fraction must lie in [0, 1)")
    n_holdout = round(n * holdout_fraction) if holdout_accent else 0
    n_test = round(n * test_fraction)
    n_train = n - n_test - n_holdout
    if n_train < 1:
        raise SpecError(
            f"{n} utterances leave none for {TRAIN_SPLIT!r} after {n_test} test and "
            f"{n_holdout} held-out ones; ask for more utterances or smaller fractions"
        )
    return {TRAIN_SPLIT: n_train, TEST_SPLIT: n_test, HOLDOUT_SPLIT: n_holdout}


def _draw_speakers(
    rng: random.Random,
    training_accents: Sequence[str],
    holdout_accent: str | None,
    per_accent: int,
    variants: Sequence[str],
    rate_wpm: tuple[int, int],
    pitch: tuple[int, int],
    pitch_range: tuple[int, int],
) -> list[SyntheticSpeaker]:
    accents = [*training_accents, *([holdout_accent] if holdout_accent else [])]
    # Distinct variants within an accent while they last, so its speakers differ in timbre.
    pools = {accent: rng.sample(list(variants), len(variants)) for accent in accents}
    speakers = []
    # Accents interleave (k-th speaker of every accent, then the (k+1)-th), so
    # that round-robin assignment reaches every accent even in a small corpus.
    for k in range(per_accent):
        for accent in accents:
            speakers.append(
                SyntheticSpeaker(
                    speaker_id=str(1000 + len(speakers)),
                    accent=accent,
                    variant=pools[accent][k % len(variants)],
                    rate_wpm=rng.randint(*rate_wpm),
                    pitch=rng.randint(*pitch),
                    pitch_range=rng.randint(*pitch_range),
                )
            )
    return speakers


def _plan(
    rng: random.Random,
    counts: Mapping[str, int],
    sentences: Sequence[str],
    speakers: Sequence[SyntheticSpeaker],
    holdout_accent: str | None,
    per_chapter: int,
) -> list[_Planned]:
    """Utterances in writing order: split, speaker, chapter, utterance number."""
    plan: list[_Planned] = []
    next_sentence = 0
    next_chapter = 1
    for split, count in counts.items():
        voices = [s for s in speakers if (s.accent == holdout_accent) == (split == HOLDOUT_SPLIT)]
        # Round robin keeps speakers balanced; each split gets its own sentences.
        assigned: dict[str, list[str]] = {s.speaker_id: [] for s in voices}
        for k in range(count):
            assigned[voices[k % len(voices)].speaker_id].append(sentences[next_sentence])
            next_sentence += 1
        for speaker in voices:
            own = assigned[speaker.speaker_id]
            for first in range(0, len(own), per_chapter):
                chapter_id = str(next_chapter)
                next_chapter += 1
                for number, sentence in enumerate(own[first : first + per_chapter]):
                    plan.append(
                        _Planned(
                            split,
                            speaker,
                            chapter_id,
                            f"{speaker.speaker_id}-{chapter_id}-{number:04d}",
                            sentence,
                            rng.randrange(2**31),
                        )
                    )
    return plan


def _prepare_output(fs, root: str, out_url: str, overwrite: bool) -> None:
    if fs.exists(root):
        if not fs.isdir(root):
            raise SpecError(f"{out_url!r} is a file; give a directory for the corpus")
        if fs.ls(root, detail=False):
            if not overwrite:
                raise SpecError(
                    f"{out_url!r} is not empty; give an empty or new directory, or overwrite=True to replace it"
                )
            fs.rm(root, recursive=True)
    fs.makedirs(root, exist_ok=True)


def _to_pcm16(speech: Speech) -> np.ndarray:
    """espeak-ng's int16 samples at its rate -> ``[samples]`` int16 at :data:`SAMPLE_RATE`."""
    wave = resample(speech.samples.astype(np.float32) / 32768.0, speech.sample_rate, SAMPLE_RATE)
    return np.clip(np.round(wave * 32768.0), -32768, 32767).astype(np.int16)


def _flac_bytes(samples: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def _phones_line(utterance_id: str, speech: Speech) -> str:
    record = {
        "id": utterance_id,
        # Microsecond precision is far below a 16 kHz sample and keeps the files small.
        "phones": [[round(p.start_s, 6), round(p.end_s, 6), p.label] for p in speech.phones],
        "words": [[round(w.start_s, 6), round(w.end_s, 6), w.label.upper()] for w in speech.words],
    }
    return json.dumps(record, ensure_ascii=False)


def _write_chapter(fs, chapter: _ChapterFiles) -> None:
    fs.pipe_file(
        f"{chapter.directory}/{chapter.stem}.trans.txt", ("\n".join(chapter.transcript) + "\n").encode("utf-8")
    )
    fs.pipe_file(f"{chapter.directory}/{chapter.stem}.phones.jsonl", ("\n".join(chapter.phones) + "\n").encode("utf-8"))


def _speakers_table(speakers: Sequence[SyntheticSpeaker], seconds: Mapping[str, float]) -> str:
    lines = [
        "; Synthetic speakers (espeak-ng). NAME is ACCENT+VARIANT rate=WPM pitch=P range=R.",
        "; SUBSET lists every split the speaker appears in.",
        ";ID   |SEX| SUBSET                    |MINUTES| NAME",
    ]
    for s in speakers:
        lines.append(
            f"{s.speaker_id:<5} | {s.sex} | {','.join(s.splits):<25} | "
            f"{seconds[s.speaker_id] / 60:5.2f} | "
            f"{s.accent}+{s.variant} rate={s.rate_wpm} pitch={s.pitch} range={s.pitch_range}"
        )
    return "\n".join(lines) + "\n"


_ARPABET_VOWELS = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"})


def export_textgrids(corpus_url: str, out_url: str, *, storage_options: Mapping[str, Any] | None = None) -> int:
    """The corpus's ground truth as Montreal Forced Aligner would write it: ``out/SPEAKER/
    UTTERANCE.TextGrid`` with ``words`` and ``phones`` tiers, phones in ARPAbet with a stress
    digit on vowels (espeak-ng's IPA mapped by :func:`neurolake.labels.lexicon.intervals_to_arpabet`).
    Returns the number of files written."""
    from neurolake.corpora.records import Alignment, Interval, open_url, url_of
    from neurolake.corpora.sidecars import read_alignments, write_textgrid
    from neurolake.labels.lexicon import intervals_to_arpabet

    fs, root = open_url(corpus_url, storage_options)
    out_fs, out_root = open_url(out_url, storage_options)
    written = 0
    for path in sorted(p for p in fs.find(root) if p.endswith(".phones.jsonl")):
        for utterance_id, alignment in read_alignments(url_of(fs, path), storage_options=storage_options).items():
            phones = tuple(
                Interval(s, e, f"{p}1" if p in _ARPABET_VOWELS else p)
                for s, e, p in intervals_to_arpabet(alignment.phones)
            )
            end = max([i.end_s for i in (*phones, *alignment.words)], default=0.0) + 0.05
            text = write_textgrid(Alignment(utterance_id, phones, alignment.words), end)
            folder = f"{out_root.rstrip('/')}/{utterance_id.split('-')[0]}"
            out_fs.makedirs(folder, exist_ok=True)
            with out_fs.open(f"{folder}/{utterance_id}.TextGrid", "w") as f:
                f.write(text)
            written += 1
    return written


def export_lhotse(
    corpus_url: str, out_url: str, *, cuts: bool = False, storage_options: Mapping[str, Any] | None = None
) -> int:
    """The corpus with its ground truth as lhotse manifests, built with lhotse's own classes:
    per split, ``synth_recordings_<split>.jsonl.gz`` and ``synth_supervisions_<split>.jsonl.gz``
    (with ``cuts``, one ``synth_cuts_<split>.jsonl.gz`` instead).

    One recording and one whole-recording supervision per utterance (id, speaker, transcript);
    the supervision's ``alignment`` holds the corpus's phone timings under ``"phone"`` (espeak-ng
    IPA, as in the sidecars) and its word timings under ``"word"``. Recordings name their FLAC
    files by the URLs the corpus reader gives. Returns the number of supervisions written.

    Raises:
        SpecError: ``corpus_url`` is not a corpus with phone timings.
    """
    import tempfile

    from lhotse import AudioSource, CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
    from lhotse.supervision import AlignmentItem

    from neurolake.corpora.audio import audio_info
    from neurolake.corpora.librispeech import read_librispeech
    from neurolake.corpora.sidecars import read_alignments

    corpus = read_librispeech(corpus_url, storage_options=storage_options)
    by_split: dict[str, list[tuple[Recording, SupervisionSegment]]] = {}
    sidecars: dict[str, dict] = {}
    for utt in corpus.utterances:
        if utt.phones_uri is None:
            raise SpecError(f"{utt.utterance_id} of {corpus_url} has no phone timings; give a synthetic corpus")
        if utt.phones_uri not in sidecars:
            sidecars[utt.phones_uri] = read_alignments(utt.phones_uri, storage_options=storage_options)
        truth = sidecars[utt.phones_uri][utt.utterance_id]
        info = audio_info(utt.audio_uri, storage_options=storage_options)
        recording = Recording(
            id=utt.utterance_id,
            sources=[AudioSource(type="file", channels=[0], source=utt.audio_uri)],
            sampling_rate=info.sample_rate,
            num_samples=info.num_samples,
            duration=info.duration_s,
        )
        supervision = SupervisionSegment(
            id=utt.utterance_id,
            recording_id=recording.id,
            start=0.0,
            duration=recording.duration,
            channel=0,
            text=utt.transcript,
            speaker=utt.speaker_id,
            language="English",
            alignment={
                kind: [AlignmentItem(i.label, i.start_s, round(i.end_s - i.start_s, 6)) for i in intervals]
                for kind, intervals in (("phone", truth.phones), ("word", truth.words))
            },
        )
        by_split.setdefault(utt.split or "all", []).append((recording, supervision))

    out_fs, out_root = open_url(out_url, storage_options)
    out_fs.makedirs(out_root, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        # lhotse writes local files; they are copied to wherever OUT is.
        for split, items in sorted(by_split.items()):
            recordings = RecordingSet.from_recordings(r for r, _ in items)
            supervisions = SupervisionSet.from_segments(s for _, s in items)
            manifests = (
                {"cuts": CutSet.from_manifests(recordings=recordings, supervisions=supervisions)}
                if cuts
                else {"recordings": recordings, "supervisions": supervisions}
            )
            for kind, manifest in manifests.items():
                name = f"synth_{kind}_{split}.jsonl.gz"
                manifest.to_file(f"{scratch}/{name}")
                out_fs.put_file(f"{scratch}/{name}", f"{out_root.rstrip('/')}/{name}")
    return sum(len(items) for items in by_split.values())
