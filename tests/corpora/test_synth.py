"""Synthetic speech: real espeak-ng audio whose timings, layout and splits can be checked."""

from __future__ import annotations

import random
import threading
from pathlib import Path

import numpy as np
import pytest

from neurolake.corpora import read_alignments, read_librispeech
from neurolake.corpora.audio import audio_info, load_audio
from neurolake.corpora.espeak import SpeechRequest, english_voices, synthesize_speech
from neurolake.corpora.synth import (
    HOLDOUT_SPLIT,
    TEST_SPLIT,
    TRAIN_SPLIT,
    SentenceGenerator,
    generate_sentences,
    load_vocabulary,
    synthesize_corpus,
)
from neurolake.errors import SpecError

ACCENTS = ("en-us", "en-gb", "en-gb-scotland")
HOLDOUT = "en-029"


def _small_corpus(out: Path, seed: int, n: int = 24, **kwargs):
    return synthesize_corpus(
        str(out),
        n,
        seed,
        holdout_accent=HOLDOUT,
        accents=ACCENTS,
        speakers_per_accent=2,
        test_fraction=0.25,
        holdout_fraction=0.25,
        utterances_per_chapter=3,
        **kwargs,
    )


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth") / "corpus"
    return out, _small_corpus(out, seed=11)


def test_english_voices_cover_several_accents():
    accents = {voice.accent for voice in english_voices()}
    assert {"en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029"} <= accents
    assert "en-shaw" not in accents  # an alphabet, not an accent


def test_layout_is_read_back_as_librispeech(corpus):
    out, summary = corpus
    assert summary.splits == {TRAIN_SPLIT: 12, TEST_SPLIT: 6, HOLDOUT_SPLIT: 6}
    read = read_librispeech(str(out))
    assert read.errors == () and read.untranscribed_audio == ()
    assert len(read) == summary.n_utterances == 24
    assert {split: sum(u.split == split for u in read) for split in summary.splits} == summary.splits
    vocabulary = load_vocabulary().words
    for utterance in read:
        speaker, chapter, number = utterance.utterance_id.split("-")
        assert (speaker, chapter) == (utterance.speaker_id, utterance.chapter_id) and len(number) == 4
        assert utterance.audio_uri == (f"{out}/{utterance.split}/{speaker}/{chapter}/{utterance.utterance_id}.flac")
        assert utterance.transcript == utterance.transcript.upper()
        assert set(utterance.transcript.lower().split()) <= vocabulary
        assert utterance.phones_uri is not None
    # Chapters hold at most utterances_per_chapter utterances.
    chapters = {(u.speaker_id, u.chapter_id) for u in read}
    assert max(sum((u.speaker_id, u.chapter_id) == c for u in read) for c in chapters) == 3
    speakers_table = (out / "SPEAKERS.TXT").read_text().splitlines()
    assert sum(not line.startswith(";") for line in speakers_table) == len(summary.speakers)


def test_audio_duration_matches_phone_timings(corpus):
    out, _ = corpus
    read = read_librispeech(str(out))
    by_chapter: dict[str, dict] = {}
    for utterance in read:
        alignments = by_chapter.setdefault(utterance.phones_uri, read_alignments(utterance.phones_uri))
        alignment = alignments[utterance.utterance_id]
        info = audio_info(utterance.audio_uri)
        assert (info.sample_rate, info.channels, info.subtype) == (16_000, 1, "PCM_16")
        phones = alignment.phones
        assert len(phones) >= 3
        assert all(p.start_s < p.end_s for p in phones)
        assert all(a.end_s <= b.start_s + 1e-9 for a, b in zip(phones, phones[1:], strict=False))
        # The last phone ends at the audio's end, up to espeak-ng's closing pause.
        assert phones[-1].end_s <= info.duration_s + 1 / 16_000
        assert info.duration_s - phones[-1].end_s < 0.1
        assert phones[0].start_s < 0.1
        # Words cover the transcript in order, and every phone lies inside the words' span.
        assert " ".join(w.label for w in alignment.words) == utterance.transcript
        assert alignment.words[0].start_s == phones[0].start_s
        assert alignment.words[-1].end_s == phones[-1].end_s
        assert not any("ˈ" in p.label or "ˌ" in p.label for p in phones)


def test_phone_timings_locate_the_speech(corpus):
    out, _ = corpus
    utterance = read_librispeech(str(out)).utterances[0]
    alignment = read_alignments(utterance.phones_uri)[utterance.utterance_id]
    wave = load_audio(utterance.audio_uri)
    first = int(alignment.phones[0].start_s * 16_000)
    last = int(alignment.phones[-1].end_s * 16_000)
    before = np.sqrt(np.mean(wave[: max(first - 16, 1)] ** 2))
    during = np.sqrt(np.mean(wave[first:last] ** 2))
    # Silence before the first phone (minus the resampling filter's reach), speech after it.
    assert before < 1e-3 < 0.01 < during
    # Vowels are louder than the average of the utterance: timings sit on the right sounds.
    vowels = [p for p in alignment.phones if p.label[0] in "aeiouəɪʊɛɔɒʌæɑɐ"]
    vowel_rms = np.sqrt(
        np.mean(np.concatenate([wave[int(p.start_s * 16_000) : int(p.end_s * 16_000)] for p in vowels]) ** 2)
    )
    assert vowel_rms > during


def test_same_seed_gives_the_same_bytes(tmp_path):
    first = _small_corpus(tmp_path / "a", seed=5, n=8)
    second = _small_corpus(tmp_path / "b", seed=5, n=8)
    _small_corpus(tmp_path / "c", seed=6, n=8)
    assert first.speakers == second.speakers

    def files(root: Path) -> dict[str, bytes]:
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}

    a, b, c = files(tmp_path / "a"), files(tmp_path / "b"), files(tmp_path / "c")
    assert len(a) > 8 and a == b
    assert a != c


def test_held_out_accent_is_only_in_its_split(corpus):
    out, summary = corpus
    holdout_speakers = {s.speaker_id for s in summary.speakers if s.accent == HOLDOUT}
    assert holdout_speakers and all(s.splits == (HOLDOUT_SPLIT,) for s in summary.speakers if s.accent == HOLDOUT)
    read = read_librispeech(str(out))
    for utterance in read:
        assert (utterance.speaker_id in holdout_speakers) == (utterance.split == HOLDOUT_SPLIT)
    # test shares the training voices but none of the training sentences.
    by_split = {split: {u.transcript for u in read if u.split == split} for split in summary.splits}
    train_speakers = {u.speaker_id for u in read if u.split == TRAIN_SPLIT}
    assert {u.speaker_id for u in read if u.split == TEST_SPLIT} <= train_speakers
    assert not by_split[TRAIN_SPLIT] & by_split[TEST_SPLIT]
    assert not by_split[TRAIN_SPLIT] & by_split[HOLDOUT_SPLIT]
    assert {s.accent for s in summary.speakers} == {*ACCENTS, HOLDOUT}


def test_without_holdout_there_is_no_holdout_split(tmp_path):
    summary = synthesize_corpus(
        str(tmp_path / "c"), 6, 1, holdout_accent=None, accents=["en-us"], speakers_per_accent=1, test_fraction=0.5
    )
    assert summary.splits == {TRAIN_SPLIT: 3, TEST_SPLIT: 3}
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["SPEAKERS.TXT", TEST_SPLIT, TRAIN_SPLIT]


def test_invalid_requests_are_spec_errors(tmp_path, corpus):
    out, _ = corpus
    with pytest.raises(SpecError, match="not empty"):
        synthesize_corpus(str(out), 4, 0)
    with pytest.raises(SpecError, match="unknown accents"):
        synthesize_corpus(str(tmp_path / "x"), 4, 0, accents=["en-mars"])
    with pytest.raises(SpecError, match="leave none"):
        synthesize_corpus(str(tmp_path / "x"), 2, 0, test_fraction=0.5, holdout_fraction=0.5)
    with pytest.raises(SpecError, match="variants"):
        synthesize_corpus(str(tmp_path / "x"), 4, 0, variants=["robot"])
    with pytest.raises(SpecError, match="unknown English accent"):
        synthesize_speech(SpeechRequest("hello", accent="en-mars"))


def test_overwrite_replaces_the_corpus(tmp_path):
    out = tmp_path / "c"
    (out / "stale").mkdir(parents=True)
    synthesize_corpus(
        str(out), 3, 0, holdout_accent=None, accents=["en-gb"], speakers_per_accent=1, test_fraction=0, overwrite=True
    )
    assert sorted(p.name for p in out.iterdir()) == ["SPEAKERS.TXT", TRAIN_SPLIT]


def test_sentences_are_distinct_reproducible_and_from_the_vocabulary():
    vocabulary = load_vocabulary()
    assert len(vocabulary.words) > 300
    sentences = generate_sentences(200, seed=3)
    assert sentences == generate_sentences(200, seed=3) != generate_sentences(200, seed=4)
    assert len(set(sentences)) == 200
    for sentence in sentences:
        words = sentence.split()
        assert set(words) <= vocabulary.words and len(words) >= 3
        assert all(not (a == "a" and b[0] in "aeiou") for a, b in zip(words, words[1:], strict=False))
    assert SentenceGenerator(vocabulary).sentence(random.Random(0)) == SentenceGenerator(vocabulary).sentence(
        random.Random(0)
    )


def test_speaking_rate_and_pitch_change_the_audio():
    text = "the old farmer carried a basket across the bridge"
    slow = synthesize_speech(SpeechRequest(text, rate_wpm=120))
    fast = synthesize_speech(SpeechRequest(text, rate_wpm=240))
    assert slow.duration_s > 1.5 * fast.duration_s
    assert [p.label for p in slow.phones] == [p.label for p in fast.phones]

    def mean_f0(pitch: int) -> float:
        """F0 in Hz of a sustained vowel, from the autocorrelation peak between 50 and 400 Hz."""
        speech = synthesize_speech(SpeechRequest("aaaa", variant="m3", pitch=pitch, pitch_range=0))
        wave = speech.samples.astype(np.float64)
        voiced = wave[len(wave) // 4 : 3 * len(wave) // 4]
        voiced -= voiced.mean()
        correlation = np.correlate(voiced, voiced, "full")[len(voiced) - 1 :]
        shortest, longest = speech.sample_rate // 400, speech.sample_rate // 50
        return speech.sample_rate / (shortest + int(np.argmax(correlation[shortest:longest])))

    assert mean_f0(90) > 1.3 * mean_f0(10)


def test_concurrent_synthesis_is_serialised_correctly():
    texts = [f"{name} walked across the bridge" for name in ("anna", "ben", "clara", "david")]
    expected = {text: synthesize_speech(SpeechRequest(text)) for text in texts}
    results: list[tuple[str, object]] = []

    def work(text: str) -> None:
        results.append((text, synthesize_speech(SpeechRequest(text))))

    threads = [threading.Thread(target=work, args=(text,)) for text in texts * 3]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 12
    for text, speech in results:
        # Interleaved callbacks would mix samples and events of different texts. Without
        # them, only espeak-ng's carried-over signal state moves timings by a few milliseconds.
        reference = expected[text]
        assert [p.label for p in speech.phones] == [p.label for p in reference.phones]
        assert [w.label for w in speech.words] == text.split()
        assert abs(speech.duration_s - reference.duration_s) < 0.05
        assert max(abs(a.start_s - b.start_s) for a, b in zip(speech.phones, reference.phones, strict=False)) < 0.05


def test_custom_vocabulary_is_checked(tmp_path):
    classes = [
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
    ]
    tiny = tmp_path / "tiny.txt"
    tiny.write_text("# one word per class\n" + "".join(f"[{c}]\n{c}word\n" for c in classes))
    vocabulary = load_vocabulary(str(tiny))
    assert vocabulary.classes["noun"] == ("nounword",)
    with pytest.raises(SpecError, match="distinct sentences"):
        generate_sentences(1000, seed=0, vocabulary=vocabulary)
    tiny.write_text("[noun]\ncat\n")
    with pytest.raises(SpecError, match="needs non-empty classes"):
        load_vocabulary(str(tiny))
    tiny.write_text("stray\n[noun]\ncat\n")
    with pytest.raises(SpecError, match="before any"):
        load_vocabulary(str(tiny))
    with pytest.raises(SpecError, match="not found"):
        load_vocabulary(str(tmp_path / "absent.txt"))
