"""TextGrid sidecars: both Praat formats, point tiers, the phones tier, frame phonemes from it."""

from __future__ import annotations

import pytest

from neurolake.corpora.sidecars import TextGridTier, find_phones_tier, read_textgrid
from neurolake.errors import InputError
from neurolake.labels.lexicon import frame_phonemes_from_intervals

MFA_TEXTGRID = """File type = "ooTextFile"
Object class = "TextGrid"

xmin = 0 
xmax = 1.02 
tiers? <exists> 
size = 2 
item []: 
    item [1]:
        class = "IntervalTier" 
        name = "words" 
        xmin = 0 
        xmax = 1.02 
        intervals: size = 3 
        intervals [1]:
            xmin = 0 
            xmax = 0.21 
            text = "" 
        intervals [2]:
            xmin = 0.21 
            xmax = 0.6 
            text = "hello" 
        intervals [3]:
            xmin = 0.6 
            xmax = 1.02 
            text = "" 
    item [2]:
        class = "IntervalTier" 
        name = "phones" 
        xmin = 0 
        xmax = 1.02 
        intervals: size = 6 
        intervals [1]:
            xmin = 0 
            xmax = 0.21 
            text = "" 
        intervals [2]:
            xmin = 0.21 
            xmax = 0.3 
            text = "HH" 
        intervals [3]:
            xmin = 0.3 
            xmax = 0.38 
            text = "AH0" 
        intervals [4]:
            xmin = 0.38 
            xmax = 0.47 
            text = "L" 
        intervals [5]:
            xmin = 0.47 
            xmax = 0.6 
            text = "OW1" 
        intervals [6]:
            xmin = 0.6 
            xmax = 1.02 
            text = "" 
"""

SHORT_TEXTGRID = """File type = "ooTextFile"
Object class = "TextGrid"

0
1.02
<exists>
2
"IntervalTier"
"words"
0
1.02
3
0
0.21
""
0.21
0.6
"hello"
0.6
1.02
""
"IntervalTier"
"phones"
0
1.02
6
0
0.21
""
0.21
0.3
"HH"
0.3
0.38
"AH0"
0.38
0.47
"L"
0.47
0.6
"OW1"
0.6
1.02
""
"""

EXPECTED_TIERS = [
    TextGridTier("words", "IntervalTier", [(0.0, 0.21, ""), (0.21, 0.6, "hello"), (0.6, 1.02, "")]),
    TextGridTier(
        "phones",
        "IntervalTier",
        [
            (0.0, 0.21, ""),
            (0.21, 0.3, "HH"),
            (0.3, 0.38, "AH0"),
            (0.38, 0.47, "L"),
            (0.47, 0.6, "OW1"),
            (0.6, 1.02, ""),
        ],
    ),
]


def test_read_textgrid_long_format():
    assert read_textgrid(MFA_TEXTGRID) == EXPECTED_TIERS


def test_read_textgrid_short_format_and_encodings():
    assert read_textgrid(SHORT_TEXTGRID) == EXPECTED_TIERS
    assert read_textgrid(MFA_TEXTGRID.encode("utf-16")) == EXPECTED_TIERS
    assert read_textgrid(MFA_TEXTGRID.encode("utf-8")) == EXPECTED_TIERS


def test_read_textgrid_point_tier_and_quote_escape():
    text = '''File type = "ooTextFile"
Object class = "TextGrid"
xmin = 0
xmax = 2
tiers? <exists>
size = 1
item []:
    item [1]:
        class = "TextTier"
        name = "events"
        xmin = 0
        xmax = 2
        points: size = 1
        points [1]:
            number = 1.5
            mark = "say ""hi"""
'''
    assert read_textgrid(text) == [TextGridTier("events", "TextTier", [(1.5, 1.5, 'say "hi"')])]


def test_read_textgrid_rejects_garbage_and_truncation():
    with pytest.raises(InputError, match="not a TextGrid"):
        read_textgrid("hello world")
    with pytest.raises(InputError, match="truncated"):
        read_textgrid(MFA_TEXTGRID[: MFA_TEXTGRID.index("intervals [4]")])


def test_find_phones_tier():
    assert find_phones_tier(EXPECTED_TIERS) is EXPECTED_TIERS[1]
    speaker = TextGridTier("1089 - phones", "IntervalTier", [])
    assert find_phones_tier([EXPECTED_TIERS[0], speaker]) is speaker
    with pytest.raises(InputError, match="'words'"):
        find_phones_tier(EXPECTED_TIERS[:1])


def test_frame_phonemes_from_textgrid_tier():
    # 10 frames of 0.1 s: centres 0.05, 0.15, ..., 0.95.
    #   0.05, 0.15 in [0, 0.21) "" -> None; 0.25 HH; 0.35 AH0 -> AH; 0.45 L; 0.55 OW1 -> OW;
    #   0.65 .. 0.95 in [0.6, 1.02) "" -> None.
    phones = find_phones_tier(read_textgrid(MFA_TEXTGRID)).intervals
    assert frame_phonemes_from_intervals(phones, 10, 0.1).tolist() == [
        None,
        None,
        "HH",
        "AH",
        "L",
        "OW",
        None,
        None,
        None,
        None,
    ]
