"""lhotse manifests as corpora: manifests written by lhotse's own classes, with the damage and the
items neurolake cannot ingest yet (segments, several channels, sources without a URL), read one
error per item and everything else kept; the dispatch that recognises them."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from lhotse import AudioSource, CutSet, Recording, RecordingSet, SupervisionSegment, SupervisionSet
from lhotse.supervision import AlignmentItem

from neurolake.corpora import Alignment, Interval, open_corpus, read_lhotse, read_manifest
from neurolake.errors import SpecError


def _recording(rid: str, *, channels: int = 1, kind: str = "file", source: str | None = None) -> Recording:
    return Recording(
        id=rid,
        sources=[AudioSource(type=kind, channels=list(range(channels)), source=source or f"/audio/{rid}.flac")],
        sampling_rate=16_000,
        num_samples=32_000,
        duration=2.0,
    )


def _supervision(sid: str, rid: str, *, start: float = 0.0, duration: float = 2.0, text: str = "HELLO THERE", **kw):
    return SupervisionSegment(
        id=sid, recording_id=rid, start=start, duration=duration, channel=0, text=text, speaker="spk", **kw
    )


ALIGNED = {
    # MFA's ARPAbet with stress digits and its silences, as lhotse's MFA-based recipes store them
    "phone": [
        AlignmentItem("sil", 0.0, 0.1),
        AlignmentItem("HH", 0.1, 0.1),
        AlignmentItem("AH0", 0.2, 0.15),
        AlignmentItem("L", 0.35, 0.1),
        AlignmentItem("OW1", 0.45, 0.2),
        AlignmentItem("", 0.65, 0.1),
    ],
    "word": [AlignmentItem("<eps>", 0.0, 0.1), AlignmentItem("hello", 0.1, 0.55), AlignmentItem("there", 0.75, 1.0)],
}


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    """A recordings/supervisions pair with one item of every kind, good and bad."""
    recordings = RecordingSet.from_recordings(
        [
            _recording("good"),
            _recording("remote", kind="url", source="s3://bucket/remote.flac"),
            _recording("stereo", channels=2),
            _recording("piped", kind="command", source="sox in.wav -t wav -"),
            _recording("long"),
            _recording("fast").perturb_speed(1.1),
            _recording("silent"),  # no supervision names it
            _recording("relative", source="audio/rel.flac"),
        ]
    )
    supervisions = SupervisionSet.from_segments(
        [
            _supervision("good-0", "good", alignment=ALIGNED),
            _supervision("remote-0", "remote", text="  SPACED   OUT "),
            _supervision("stereo-0", "stereo"),
            _supervision("piped-0", "piped"),
            _supervision("long-0", "long", start=0.5, duration=1.0),  # a segment
            _supervision("fast-0", "fast_sp1.1", duration=1.818),
            _supervision("empty-0", "good", text=""),
            _supervision("orphan-0", "nowhere"),
            _supervision("good-0", "good"),  # the id again
            _supervision("relative-0", "relative", duration=1.995),  # within the tolerance
        ]
    )
    recordings.to_file(tmp_path / "corpus_recordings_dev.jsonl.gz")
    supervisions.to_file(tmp_path / "corpus_supervisions_dev.jsonl.gz")
    # Damage a line of each file: a broken JSON line and a line of the wrong kind.
    path = tmp_path / "corpus_supervisions_dev.jsonl.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    lines.insert(3, '{"id": "broken-0", "recording_id": "good", ')
    lines.append(json.dumps(_recording("misplaced").to_dict()))
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return tmp_path


def test_a_pair_reads_every_good_supervision_and_one_error_per_bad_one(manifests: Path, monkeypatch):
    monkeypatch.chdir(manifests)
    corpus = read_lhotse(str(manifests))
    assert corpus.format == "lhotse"
    assert [u.utterance_id for u in corpus] == ["good-0", "remote-0", "relative-0"]
    good, remote, relative = corpus.utterances
    assert (good.audio_uri, good.transcript, good.speaker_id, good.split) == (
        "/audio/good.flac",
        "HELLO THERE",
        "spk",
        "dev",
    )
    assert remote.audio_uri == "s3://bucket/remote.flac" and remote.transcript == "SPACED OUT"
    assert relative.audio_uri == str(manifests / "audio" / "rel.flac")  # lhotse's rule: the working directory
    # silences dropped, words upper-cased, times as written
    assert good.alignment == Alignment(
        "good-0",
        phones=(
            Interval(0.1, 0.2, "HH"),
            Interval(0.2, 0.35, "AH0"),
            Interval(0.35, 0.45, "L"),
            Interval(0.45, 0.65, "OW1"),
        ),
        words=(Interval(0.1, 0.65, "HELLO"), Interval(0.75, 1.75, "THERE")),
    )
    assert remote.alignment is None and good.extra["recording_id"] == "good"

    source = str(manifests / "corpus_supervisions_dev.jsonl.gz")
    found = {(e.utterance_id, e.line): e.message for e in corpus.errors}
    assert all(e.source_uri == source for e in corpus.errors)
    expected = {
        ("stereo-0", 3): "multi-channel recordings are not supported yet",
        ("piped-0", 5): "has a 'command' audio source",
        ("long-0", 6): "covers 0.500-1.500 s of its 2.000 s recording 'long'; segments of a recording are not",
        ("fast-0", 7): "has transforms (Speed)",
        ("empty-0", 8): "has an empty transcript",
        ("orphan-0", 9): "names recording 'nowhere', which corpus_recordings_dev.jsonl.gz does not hold",
        (None, 10): "utterance id 'good-0' appears more than once",
    }
    broken = [e for e in corpus.errors if e.line == 4 and e.utterance_id is None]
    assert len(broken) == 1 and "line 4 is not valid JSON" in broken[0].message
    misplaced = [e for e in corpus.errors if e.line == 12]
    assert len(misplaced) == 1 and "is a lhotse recording, expected a supervision" in misplaced[0].message
    for key, message in expected.items():
        assert message in found[key], (key, found.get(key))
    assert len(corpus.errors) == len(expected) + 2
    assert corpus.untranscribed_audio == ("/audio/silent.flac",)


def test_the_pair_is_found_from_either_file_and_a_cut_manifest_reads_the_same(manifests: Path, monkeypatch):
    monkeypatch.chdir(manifests)
    pair = read_lhotse(str(manifests))
    for name in ("corpus_recordings_dev.jsonl.gz", "corpus_supervisions_dev.jsonl.gz"):
        again = open_corpus(str(manifests / name))
        assert again.utterances == pair.utterances and again.errors == pair.errors

    # The same good items as cuts (lhotse's own join), written uncompressed: the plain .jsonl
    # suffix of neurolake's manifests, told apart by its first line.
    recordings = RecordingSet.from_recordings([_recording("good"), _recording("remote", kind="url", source="s3://b/r")])
    supervisions = SupervisionSet.from_segments(
        [_supervision("good-0", "good", alignment=ALIGNED), _supervision("remote-0", "remote")]
    )
    cuts = CutSet.from_manifests(recordings=recordings, supervisions=supervisions)
    first = cuts[0]
    trimmed = first.truncate(offset=0.5, duration=1.0)  # a segment of its recording
    mixed = first.append(first)  # a MixedCut
    (manifests / "cuts").mkdir()
    CutSet.from_cuts([*cuts, trimmed.with_id("trimmed"), mixed.with_id("mixed")]).to_file(
        manifests / "cuts" / "x_cuts_test.jsonl"
    )
    read = open_corpus(str(manifests / "cuts" / "x_cuts_test.jsonl"))
    assert [(u.utterance_id, u.audio_uri, u.transcript, u.split) for u in read] == [
        ("good-0", "/audio/good.flac", "HELLO THERE", "test"),
        ("remote-0", "s3://b/r", "HELLO THERE", "test"),
    ]
    assert read.utterances[0].alignment == pair.utterances[0].alignment
    messages = {e.line: e.message for e in read.errors}
    assert len(read.errors) == 2
    assert "segments of a recording are not supported yet" in messages[3]
    assert read.errors[0].utterance_id == "good-0"  # the trimmed cut's supervision
    assert "is a MixedCut; only MonoCuts" in messages[4]
    # a directory of cuts and of pairs alike
    assert open_corpus(str(manifests / "cuts")).utterances == read.utterances


def test_a_truncated_manifest_keeps_the_lines_before_the_break(tmp_path: Path):
    recordings = RecordingSet.from_recordings([_recording(f"r{n}") for n in range(40)])
    supervisions = SupervisionSet.from_segments([_supervision(f"s{n}", f"r{n}", text=f"WORD {n}") for n in range(40)])
    recordings.to_file(tmp_path / "c_recordings.jsonl.gz")
    supervisions.to_file(tmp_path / "c_supervisions.jsonl.gz")
    whole = (tmp_path / "c_supervisions.jsonl.gz").read_bytes()
    (tmp_path / "c_supervisions.jsonl.gz").write_bytes(whole[: len(whole) * 2 // 3])
    corpus = read_lhotse(str(tmp_path / "c_supervisions.jsonl.gz"))
    n = len(corpus.utterances)
    assert 0 < n < 40 and [u.utterance_id for u in corpus] == [f"s{k}" for k in range(n)]
    (error,) = corpus.errors
    assert error.message.startswith(f"the gzip stream is truncated after line {n}")
    # the recordings whose supervisions were lost are not silently dropped either
    assert corpus.untranscribed_audio == tuple(f"/audio/r{k}.flac" for k in range(n, 40))


def test_dispatch_and_whole_file_errors(tmp_path: Path):
    plain = tmp_path / "plain.jsonl"
    plain.write_text(json.dumps({"audio": "a.flac", "text": "HI", "id": "u1"}) + "\n")
    assert open_corpus(str(plain)).utterances == read_manifest(str(plain)).utterances
    assert open_corpus(str(plain)).format == "manifest"

    RecordingSet.from_recordings([_recording("r")]).to_file(tmp_path / "lonely_recordings_x.jsonl.gz")
    with pytest.raises(SpecError, match="has no supervisions next to it"):
        open_corpus(str(tmp_path / "lonely_recordings_x.jsonl.gz"))
    (tmp_path / "other.jsonl.gz").write_bytes(gzip.compress(b'{"hello": 1}\n'))
    with pytest.raises(SpecError, match="is not a lhotse manifest"):
        open_corpus(str(tmp_path / "other.jsonl.gz"))
    with pytest.raises(SpecError, match="not found"):
        open_corpus(str(tmp_path / "missing.jsonl.gz"))
    SupervisionSet.from_segments([_supervision("s", "r")]).to_file(tmp_path / "unnamed.jsonl.gz")
    with pytest.raises(SpecError, match="its name does not say where the recordings are"):
        open_corpus(str(tmp_path / "unnamed.jsonl.gz"))
