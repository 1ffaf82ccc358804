"""Per-frame and per-utterance labels: a hand-built utterance written out frame by frame,
token-list variants, error cases and invariants on random utterances."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from neurolake.errors import InputError, SpecError
from neurolake.labels.frames import (
    FRAME_SCHEMA,
    UTTERANCE_SCHEMA,
    frames_table_of,
    label_utterance,
    normalise_transcript,
    spread_segments,
)
from neurolake.labels.wer import wer

TOKENS = ["-", "|", "A", "B", "C", "E", "H", "T"]


def _posteriors(tokens: list[str], frames: list[dict[str, float]]) -> np.ndarray:
    """Log-probabilities where each frame gives the listed tokens their probability and
    shares what is left equally among the others."""
    out = np.empty((len(frames), len(tokens)))
    for t, given in enumerate(frames):
        rest = (1.0 - sum(given.values())) / (len(tokens) - len(given))
        out[t] = [given.get(tok, rest) for tok in tokens]
    return np.log(out).astype(np.float32)


# Reference "THE CAT"; the model says "THE BAT". Frame by frame, the greedy token has 0.9
# except frame 8, where B has 0.6 and C 0.3 (the others share 0.1: 1/60 each).
#   frame   0  1  2  3  4  5  6  7  8  9  10 11 12
#   greedy  -  T  H  -  E  -  |  -  B  -  A  T  -
GREEDY = list("-TH-E-|-B-AT-")
FRAMES = [{tok: 0.9} for tok in GREEDY]
FRAMES[8] = {"B": 0.6, "C": 0.3}
LOG_PROBS = _posteriors(TOKENS, FRAMES)

# Forced alignment of T H E | C A T: every reference token but C is the greedy token of a
# frame with probability 0.9, so those frames keep it. C must sit between | (frame 6) and
# A (frame 10): on frame 8 the path scores 0.9 (blank) * 0.3 (C) * 0.9 (blank); on frame 7
# or 9 it would pay C = 1/70 there and blank = 1/60 on frame 8, far less. So the aligned
# path equals the greedy one with C in place of B.
EXPECTED_REF = list("-TH-E-|-C-AT-")
EXPECTED_PRED = GREEDY
EXPECTED_TOKEN_ERROR = [False] * 8 + [True] + [False] * 4
# THE: first aligned frame 1 (T), last 4 (E); CAT: 8 (C) to 11 (T). Frames 0, 5-7
# (blank, |, blank) and 12 belong to no word.
EXPECTED_WORD_INDEX = [-1, 0, 0, 0, 0, -1, -1, -1, 1, 1, 1, 1, -1]
EXPECTED_WORD = [None, *["THE"] * 4, None, None, None, *["CAT"] * 4, None]
# Hypothesis THE BAT: CAT is substituted, THE correct.
EXPECTED_WORD_ERROR = [False] * 8 + [True] * 4 + [False]
# CMUdict: THE -> DH AH, letters T/DH, H silent (repeats DH), E/AH; CAT -> K AE T.
# Frame 3 is a blank after H and takes H's phone; frame 9 a blank after C takes K.
EXPECTED_PHONEME = [None, "DH", "DH", "DH", "AH", None, None, None, "K", "K", "AE", "T", None]


def test_hand_built_utterance():
    labels = label_utterance(LOG_PROBS, TOKENS, "the cat", frame_rate_hz=50, utterance_id="u-1", first_frame_id=1000)
    f = labels.frames
    assert f["frame_id"].tolist() == list(range(1000, 1013))
    assert f["frame_index"].tolist() == list(range(13))
    np.testing.assert_allclose(f["start_s"], np.arange(13) * 0.02)
    np.testing.assert_allclose(f["end_s"], np.arange(1, 14) * 0.02)
    assert f["utterance_id"].tolist() == ["u-1"] * 13
    assert f["ref_token"].tolist() == EXPECTED_REF
    assert f["pred_token"].tolist() == EXPECTED_PRED
    np.testing.assert_allclose(f["pred_prob"], [0.9] * 8 + [0.6] + [0.9] * 4, rtol=1e-5)
    assert f["token_error"].tolist() == EXPECTED_TOKEN_ERROR
    assert f["word_index"].tolist() == EXPECTED_WORD_INDEX
    assert f["word"].tolist() == EXPECTED_WORD
    assert f["word_error"].tolist() == EXPECTED_WORD_ERROR
    assert f["phoneme"].tolist() == EXPECTED_PHONEME
    # Segments: blanks between two emissions go to the nearer one (frame 3 to H, 5 to E,
    # 7 to |, 9 to C or B); the blanks at the ends to none. C -> B is the one substitution.
    assert f["ref_segment"].tolist() == [None, *"THHEE||CCAT", None]
    assert f["pred_segment"].tolist() == [None, *"THHEE||BBAT", None]
    assert f["segment_error"].tolist() == [False] * 8 + [True, True] + [False] * 3
    assert f["confusion"].tolist() == [None] * 8 + ["B", "B"] + [None] * 3
    assert labels.utterance == {
        "utterance_id": "u-1",
        "first_frame_id": 1000,
        "n_frames": 13,
        "reference": "THE CAT",
        "hypothesis": "THE BAT",
        "wer": 0.5,  # 1 substitution / 2 words
        "cer": 1 / 7,  # C -> B over 7 characters "THE CAT"
        "n_word_errors": 1,
        "n_reference_words": 2,
        "phoneme_source": "lexicon",
    }


def test_space_boundary_and_lower_case_tokens_give_the_same_labels():
    # The same posteriors under a Wav2Letter-style list: blank "<b>", " " for the boundary
    # and lower-case letters. Only the token strings change.
    tokens = ["<b>", " ", "a", "b", "c", "e", "h", "t"]
    labels = label_utterance(LOG_PROBS, tokens, "THE CAT", frame_shift_s=0.02)
    as_list = {"-": "<b>", "|": " "}
    assert labels.frames["ref_token"].tolist() == [as_list.get(t, t.lower()) for t in EXPECTED_REF]
    assert labels.frames["word"].tolist() == EXPECTED_WORD
    assert labels.frames["token_error"].tolist() == EXPECTED_TOKEN_ERROR
    assert labels.utterance["hypothesis"] == "THE BAT"


def test_ground_truth_intervals_replace_the_lexicon():
    # Frame centres 0.01, 0.03, ..., 0.25 s: 0.01-0.09 (frames 0-4) in [0, 0.1) DH;
    # 0.11-0.15 (5-7) in [0.1, 0.16) AH0 -> AH; 0.17-0.25 (8-12) in [0.16, 0.26) K.
    intervals = [(0.0, 0.1, "DH"), (0.1, 0.16, "AH0"), (0.16, 0.26, "K")]
    labels = label_utterance(LOG_PROBS, TOKENS, "THE CAT", frame_rate_hz=50, phone_intervals=intervals)
    assert labels.frames["phoneme"].tolist() == ["DH"] * 5 + ["AH"] * 3 + ["K"] * 5
    assert labels.utterance["phoneme_source"] == "intervals"


def test_deleted_word_still_gets_frames_and_an_error():
    # The model says only "THE" (frames 6-12 blank); the reference "THE CAT" still has to
    # place | C A T somewhere in frames 5-12, and CAT is a deletion.
    frames = [{tok: 0.9} for tok in "-TH-E--------"]
    labels = label_utterance(_posteriors(TOKENS, frames), TOKENS, "THE CAT", frame_rate_hz=50)
    word_index = labels.frames["word_index"]
    assert (word_index == 1).sum() >= 3  # C, A, T each need a frame
    assert labels.frames["word_error"][word_index == 1].all()
    assert not labels.frames["word_error"][word_index != 1].any()
    assert labels.utterance["hypothesis"] == "THE"
    assert labels.utterance["wer"] == 0.5


def test_deleted_letters_are_segment_errors_whenever_either_path_emits():
    # The same deletion, segment by segment: the forced path puts | C A T on frames 5-8, one
    # frame each (the greedy blanks cost the same everywhere, the earliest place wins), the
    # greedy path ends with E on frame 4. Those four reference tokens are deletions;
    # token_error, comparing the paths frame by frame, sees the same four frames here but
    # would see none for a deleted letter aligned to a blank-aligned stretch.
    frames = [{tok: 0.9} for tok in "-TH-E--------"]
    f = label_utterance(_posteriors(TOKENS, frames), TOKENS, "THE CAT", frame_rate_hz=50).frames
    assert f["ref_token"].tolist() == list("-TH-E|CAT----")
    assert f["ref_segment"].tolist() == [None, *"THHE|CAT", *[None] * 4]
    assert f["pred_segment"].tolist() == [None, *"THHE", *[None] * 8]
    assert f["segment_error"].tolist() == [False] * 5 + [True] * 4 + [False] * 4
    assert f["confusion"].tolist() == [None] * 5 + ["<del>"] * 4 + [None] * 4


def test_a_late_letter_is_no_segment_error_but_an_inserted_one_is():
    # Greedy "-TH-EE-A|-CAT-" says THE A CAT... without the boundary before A: "THEA CAT".
    # The A on frame 7 is an insertion; its greedy segment is frame 7 alone (frame 6 is
    # nearer E, 8 is |). Everything else is spelt right, even where the paths emit at
    # different frames (frame 7 is | on the forced path and A on the greedy one).
    frames = [{tok: 0.9} for tok in "-TH-EE-A|-CAT-"]
    labels = label_utterance(_posteriors(TOKENS, frames), TOKENS, "THE CAT", frame_rate_hz=50)
    f = labels.frames
    assert labels.utterance["hypothesis"] == "THEA CAT"
    assert f["ref_token"].tolist() == list("-TH-EE-||-CAT-")
    assert f["pred_segment"].tolist() == [None, *"THHEEEA||CAT", None]
    assert f["segment_error"].tolist() == [False] * 7 + [True] + [False] * 6
    assert f["confusion"].tolist() == [None] * 7 + ["<ins>"] + [None] * 6
    # token_error, frame by frame: only where the paths disagree, frame 7 (| against A).
    assert f["token_error"].tolist() == [False] * 7 + [True] + [False] * 6


@pytest.mark.parametrize(
    "index,expected",
    [
        ([-1, 0, -1, -1, 1, -1], [-1, 0, 0, 1, 1, -1]),
        ([0, -1, -1, -1, 1], [0, 0, 0, 1, 1]),  # an odd gap: the middle frame to the earlier
        ([-1, -1], [-1, -1]),
        ([], []),
        ([-1, 3, 3, -1], [-1, 3, 3, -1]),
        ([0, 1, -1, -1, -1, -1, 2], [0, 1, 1, 1, 2, 2, 2]),
    ],
)
def test_spread_segments(index, expected):
    assert spread_segments(np.array(index, dtype=np.int64)).tolist() == expected


def test_arrow_tables_follow_the_schemas():
    labels = label_utterance(LOG_PROBS, TOKENS, "THE CAT", frame_rate_hz=50, utterance_id="u")
    frames = labels.frames_table()
    assert frames.schema == FRAME_SCHEMA
    assert frames.num_rows == 13
    assert frames.column("word").to_pylist() == EXPECTED_WORD
    utterance = labels.utterance_table()
    assert utterance.schema == UTTERANCE_SCHEMA
    assert utterance.column("hypothesis").to_pylist() == ["THE BAT"]


def test_one_table_for_many_utterances_equals_the_concatenation():
    rng = np.random.default_rng(3)
    many = []
    for i in range(5):
        log_probs, reference = _random_utterance(rng, 100 + 10 * i, mistakes=0.3)
        many.append(
            label_utterance(
                log_probs, WAV2VEC2_TOKENS, reference, frame_rate_hz=50, utterance_id=f"u{i}", first_frame_id=1000 * i
            )
        )
    table = frames_table_of(many)
    assert table.equals(pa.concat_tables([item.frames_table() for item in many]))
    assert table.num_rows == sum(100 + 10 * i for i in range(5))
    assert frames_table_of([]).schema == FRAME_SCHEMA and frames_table_of([]).num_rows == 0


def test_empty_reference():
    labels = label_utterance(_posteriors(TOKENS, [{"-": 0.9}] * 4), TOKENS, "", frame_rate_hz=50)
    assert labels.frames["word_index"].tolist() == [-1] * 4
    assert labels.frames["phoneme"].tolist() == [None] * 4
    assert labels.utterance["wer"] == 0.0
    assert labels.utterance["n_reference_words"] == 0


def test_normalise_transcript():
    assert normalise_transcript("Don\u2019t  stop-now!") == "DON'T STOP NOW"
    assert normalise_transcript("  'TIS the season, 1999 ") == "'TIS THE SEASON"


def test_errors_are_clear():
    with pytest.raises(InputError, match="needs at least"):
        label_utterance(LOG_PROBS[:3], TOKENS, "THE CAT", frame_rate_hz=50)
    with pytest.raises(InputError, match="'Z'"):
        label_utterance(LOG_PROBS, TOKENS, "THE ZAT", frame_rate_hz=50)
    with pytest.raises(SpecError, match="word-boundary"):
        label_utterance(LOG_PROBS, ["-", "x", "A", "B", "C", "E", "H", "T"], "A", frame_rate_hz=50)
    with pytest.raises(SpecError, match="do not match"):
        label_utterance(LOG_PROBS, TOKENS[:-1], "THE", frame_rate_hz=50)
    with pytest.raises(SpecError, match="log_softmax"):
        label_utterance(LOG_PROBS + 1.0, TOKENS, "THE CAT", frame_rate_hz=50)
    with pytest.raises(SpecError, match="exactly one"):
        label_utterance(LOG_PROBS, TOKENS, "THE CAT", frame_rate_hz=50, frame_shift_s=0.02)
    with pytest.raises(SpecError, match="exactly one"):
        label_utterance(LOG_PROBS, TOKENS, "THE CAT")


LETTERS = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
WAV2VEC2_TOKENS = ["-", "|", "'", *LETTERS]


def _random_utterance(rng: np.random.Generator, n_frames: int, mistakes: float):
    """Peaky posteriors whose greedy path spells a random reference, with a fraction of
    its letters replaced by other letters."""
    words = ["".join(rng.choice(LETTERS, size=int(rng.integers(1, 7)))) for _ in range(6)]
    reference = " ".join(words)
    path = np.zeros(n_frames, dtype=np.int64)
    starts = np.sort(rng.choice(np.arange(0, n_frames - 2, 2), size=len(reference), replace=False))
    for start, char in zip(starts, reference, strict=True):
        token = WAV2VEC2_TOKENS.index("|" if char == " " else char)
        if char != " " and rng.random() < mistakes:
            token = int(rng.integers(3, len(WAV2VEC2_TOKENS)))
        path[start] = token
    probs = rng.dirichlet(np.full(len(WAV2VEC2_TOKENS), 0.5), size=n_frames) * 0.2
    probs[np.arange(n_frames), path] += 0.8
    return np.log(probs).astype(np.float32), reference


@pytest.mark.parametrize("seed", range(6))
def test_correct_greedy_path_means_no_errors(seed):
    log_probs, reference = _random_utterance(np.random.default_rng(seed), 120, mistakes=0.0)
    labels = label_utterance(log_probs, WAV2VEC2_TOKENS, reference, frame_rate_hz=50)
    # When the greedy path spells the reference, it is also the best path that does.
    assert labels.utterance["hypothesis"] == reference
    assert not labels.frames["token_error"].any()
    assert not labels.frames["word_error"].any()
    assert not labels.frames["segment_error"].any()
    assert labels.utterance["wer"] == 0.0


@pytest.mark.parametrize("seed", range(10))
def test_invariants_on_random_utterances(seed):
    rng = np.random.default_rng(seed)
    log_probs, reference = _random_utterance(rng, 150, mistakes=0.3)
    labels = label_utterance(log_probs, WAV2VEC2_TOKENS, reference, frame_rate_hz=50)
    f, u = labels.frames, labels.utterance
    words = reference.split()
    word_index = f["word_index"]

    assert u["wer"] == wer(reference, u["hypothesis"])
    assert math.isclose(u["wer"] * len(words), u["n_word_errors"])
    # Each word owns one non-empty run of frames, in order, and its aligned letters are
    # exactly the word.
    inside = word_index[word_index >= 0]
    assert inside.tolist() == sorted(inside.tolist())
    for w, word in enumerate(words):
        frames = np.flatnonzero(word_index == w)
        assert frames.size and np.all(np.diff(frames) == 1)
        assert set(f["word"][frames]) == {word}
        path = f["ref_token"][frames].tolist()
        collapsed = [t for i, t in enumerate(path) if t != "-" and (i == 0 or t != path[i - 1])]
        assert "".join(collapsed) == word
        assert all(f["phoneme"][frames])  # every frame of a word gets a phoneme
    outside = word_index < 0
    assert set(f["ref_token"][outside]) <= {"-", "|"}
    assert all(p is None for p in f["phoneme"][outside])
    assert not f["word_error"][outside].any()
    assert np.array_equal(f["token_error"], f["ref_token"] != f["pred_token"])
    # Segments: a frame aligned to a token is in that token's segment, every character error
    # has frames, and a frame's confusion is given exactly on segment errors.
    aligned = f["ref_token"] != "-"
    assert np.array_equal(f["ref_segment"][aligned], f["ref_token"][aligned])
    assert np.array_equal(f["pred_segment"][f["pred_token"] != "-"], f["pred_token"][f["pred_token"] != "-"])
    if u["cer"] > 0:
        assert f["segment_error"].any()
    assert np.array_equal(f["segment_error"], np.array([c is not None for c in f["confusion"]]))
    substituted = f["segment_error"] & ~np.isin(f["confusion"], ["<del>", "<ins>"])
    assert not np.any(f["confusion"][substituted] == f["ref_segment"][substituted])


def test_ipa_intervals_are_mapped_to_arpabet_and_split():
    # The frames of the test above under espeak-ng IPA labels. "ɔːɹ" is two phones, AO R,
    # sharing [0.16, 0.28) equally: AO up to 0.22, R after it. Frame centres 0.17, 0.19,
    # 0.21 (frames 8-10) fall in AO, 0.23 and 0.25 (11-12) in R.
    intervals = [(0.0, 0.1, "ð"), (0.1, 0.16, "ə"), (0.16, 0.28, "ɔːɹ")]
    labels = label_utterance(LOG_PROBS, TOKENS, "THE CAT", frame_rate_hz=50, phone_intervals=intervals)
    assert labels.frames["phoneme"].tolist() == (["DH"] * 5 + ["AH"] * 3 + ["AO"] * 3 + ["R"] * 2)
    assert labels.utterance["phoneme_source"] == "intervals"


def test_arpabet_intervals_keep_their_phones_and_silences():
    # An ARPAbet TextGrid: stress digits go, silence labels stay ("" leaves no phoneme).
    # "sil" and "" are not ARPAbet, but they do not make the labels count as IPA.
    intervals = [(0.0, 0.04, ""), (0.04, 0.1, "DH"), (0.1, 0.16, "AH0"), (0.16, 0.22, "sil"), (0.22, 0.26, "T")]
    labels = label_utterance(LOG_PROBS, TOKENS, "THE CAT", frame_rate_hz=50, phone_intervals=intervals)
    assert labels.frames["phoneme"].tolist() == ([None] * 2 + ["DH"] * 3 + ["AH"] * 3 + ["sil"] * 3 + ["T"] * 2)


def test_synthetic_utterance_frames_get_arpabet_phonemes():
    from neurolake.corpora.espeak import SpeechRequest, synthesize_in_subprocess
    from neurolake.labels.lexicon import ARPABET, pronounce

    # British voices: "chair" and "fire" are non-rhotic centring diphthongs (eə, aɪə), each
    # one IPA label that becomes two ARPAbet phones.
    text = "the chair by the fire"
    (speech,) = synthesize_in_subprocess([SpeechRequest(text, accent="en-gb-x-rp")])
    n_frames = int(speech.duration_s * 50)
    tokens = ["-", "|", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ'"]
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(n_frames, len(tokens)))
    log_probs = (logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))).astype(np.float32)

    labels = label_utterance(log_probs, tokens, text, frame_rate_hz=50, phone_intervals=speech.phones)
    phonemes = [p for p in labels.frames["phoneme"].tolist() if p is not None]
    assert phonemes and set(phonemes) <= ARPABET
    # Every phone of the words' CMUdict pronunciations but the last ER of "fire" (the
    # voice says a schwa there, AH) labels some frame.
    expected = {p for word in text.split() for p in pronounce(word)} - {"ER"}
    assert expected <= set(phonemes)
    assert labels.utterance["phoneme_source"] == "intervals"


def test_a_transcribed_utterance_gets_words_and_phonemes_from_its_intervals_only():
    from neurolake.labels.frames import POSTERIOR_COLUMNS, label_transcribed

    # 10 frames of 0.1 s; "the cat sat", the hypothesis drops "cat" and changes "sat".
    words = [(0.0, 0.3, "the"), (0.3, 0.6, "cat"), (0.6, 0.9, "sat")]
    phones = [(0.0, 0.15, "DH"), (0.15, 0.3, "AH0"), (0.3, 0.6, "K"), (0.6, 0.9, "S")]
    labels = label_transcribed(
        10,
        "The cat sat.",
        "the mat",
        frame_shift_s=0.1,
        phone_intervals=phones,
        word_intervals=words,
        utterance_id="u",
        first_frame_id=100,
        phone_source="sidecar",
    )
    f = labels.frames
    assert f["frame_id"].tolist() == list(range(100, 110))
    assert f["word_index"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, -1]
    assert f["word"].tolist() == ["THE"] * 3 + ["CAT"] * 3 + ["SAT"] * 3 + [None]
    # THE matches; CAT -> MAT is a substitution; SAT is deleted
    assert f["word_error"].tolist() == [False] * 3 + [True] * 6 + [False]
    assert f["phoneme"].tolist() == ["DH", "AH", "AH", "K", "K", "K", "S", "S", "S", None]
    for name in POSTERIOR_COLUMNS:
        assert all(v is None for v in f[name]), name
    u = labels.utterance
    assert u["hypothesis"] == "THE MAT" and u["wer"] == pytest.approx(2 / 3) and u["n_word_errors"] == 2
    assert u["phoneme_source"] == "sidecar"
    table = labels.frames_table()
    assert table.column("pred_token").null_count == 10 and table.column("word_error").null_count == 0

    # An interval word the reference lacks gets no word; without intervals nothing is placed.
    extra = label_transcribed(
        4, "a b", "a b", frame_shift_s=0.5, word_intervals=[(0.0, 0.5, "a"), (0.5, 1.0, "um"), (1.0, 1.5, "b")]
    )
    assert extra.frames["word_index"].tolist() == [0, -1, 1, -1]
    bare = label_transcribed(3, "a b", "a c", frame_shift_s=0.02)
    assert bare.frames["word_index"].tolist() == [-1, -1, -1]
    assert all(v is None for v in bare.frames["word_error"]) and all(v is None for v in bare.frames["phoneme"])
    assert bare.utterance["phoneme_source"] is None and bare.utterance["wer"] == 0.5
    assert bare.frames_table().column("word_error").null_count == 3
