"""Corpus readers on hand-made messy trees, manifests in three formats, and a real S3 endpoint."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import boto3
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
from moto.server import ThreadedMotoServer

from neurolake.corpora import (
    Interval,
    Utterance,
    open_corpus,
    parse_transcript_line,
    read_alignments,
    read_librispeech,
    read_manifest,
    read_phone_intervals,
)
from neurolake.corpora.audio import audio_info, load_audio
from neurolake.errors import InputError, SpecError


def _write_audio(path: Path, seconds: float = 0.1, frequency_hz: float = 440.0) -> np.ndarray:
    """Write a 16 kHz 16-bit tone (FLAC or WAV by suffix) and return its samples as float32."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(16_000 * seconds)) / 16_000
    pcm = (0.3 * np.sin(2 * np.pi * frequency_hz * t) * 32767).astype(np.int16)
    sf.write(path, pcm, 16_000, subtype="PCM_16")
    return pcm / 32768.0


PHONES_LINE = {"id": "84-121-0000", "phones": [[0.01, 0.05, "h"], [0.05, 0.09, "ə"]], "words": [[0.01, 0.09, "HELLO"]]}


@pytest.fixture
def messy_tree(tmp_path: Path) -> Path:
    """A LibriSpeech parent directory with the damage real trees have."""
    root = tmp_path / "LibriSpeech"
    (root).mkdir()
    (root / "SPEAKERS.TXT").write_text(";ID |SEX| SUBSET |MINUTES| NAME\n19 | F | train-clean-5 | 1 | A\n")

    chapter = root / "train-clean-5" / "19" / "198"
    for n in ("0000", "0001", "0002", "0004", "0006", "0007"):
        _write_audio(chapter / f"19-198-{n}.flac")
    _write_audio(chapter / "19-198-0001.wav")  # FLAC is preferred over a converted copy
    (chapter / "notes.txt").write_text("not part of the corpus\n")
    (chapter / "19-198.trans.txt").write_bytes(
        b"19-198-0000 NORTHANGER ABBEY\r\n"  # 1
        b"\r\n"  # 2 blank
        b"19-198-0001   THIS  LITTLE\tWORK  \r\n"  # 3 extra whitespace
        b"19-198-0002 WAS FINISHED IN\xff THE YEAR\r\n"  # 4 not UTF-8
        b"19-198-0003 AUDIO IS MISSING\r\n"  # 5 no audio file
        b"19-198-0004\r\n"  # 6 empty transcript
        b"\r\n"  # 7 blank
        b"   \r\n"  # 8 spaces only
        b"20-198-0005 WRONG CHAPTER\r\n"  # 9 id of another chapter
        b"19-198-0000 SAID TWICE\r\n"  # 10 duplicate id
        b"19-198-0006 LAST LINE WITHOUT NEWLINE"  # 11
    )
    # Speaker 103 must sort after speaker 19 (numerically, not as text).
    _write_audio(root / "train-clean-5" / "103" / "1240" / "103-1240-0000.flac")
    (root / "train-clean-5" / "103" / "1240" / "103-1240.trans.txt").write_text("103-1240-0000 CHAPTER ONE\n")

    dev = root / "dev-clean-2" / "84" / "121"
    _write_audio(dev / "84-121-0000.flac")
    _write_audio(dev / "84-121-0001.flac")
    (dev / "84-121.trans.txt").write_text("84-121-0000 HELLO\n84-121-0001 WORLD AGAIN\n")
    (dev / "84-121.phones.jsonl").write_text(json.dumps(PHONES_LINE, ensure_ascii=False) + "\n")
    return root


def test_librispeech_messy_tree_gives_exact_records_and_errors(messy_tree, caplog):
    with caplog.at_level(logging.WARNING, logger="neurolake.corpora"):
        corpus = read_librispeech(str(messy_tree))

    train = messy_tree / "train-clean-5"
    dev = messy_tree / "dev-clean-2"
    assert [(u.split, u.utterance_id, u.speaker_id, u.chapter_id, u.transcript, u.audio_uri) for u in corpus] == [
        ("dev-clean-2", "84-121-0000", "84", "121", "HELLO", f"{dev}/84/121/84-121-0000.flac"),
        ("dev-clean-2", "84-121-0001", "84", "121", "WORLD AGAIN", f"{dev}/84/121/84-121-0001.flac"),
        ("train-clean-5", "19-198-0000", "19", "198", "NORTHANGER ABBEY", f"{train}/19/198/19-198-0000.flac"),
        ("train-clean-5", "19-198-0001", "19", "198", "THIS LITTLE WORK", f"{train}/19/198/19-198-0001.flac"),
        ("train-clean-5", "19-198-0006", "19", "198", "LAST LINE WITHOUT NEWLINE", f"{train}/19/198/19-198-0006.flac"),
        ("train-clean-5", "103-1240-0000", "103", "1240", "CHAPTER ONE", f"{train}/103/1240/103-1240-0000.flac"),
    ]
    transcript = f"{train}/19/198/19-198.trans.txt"
    assert [(e.source_uri, e.line, e.utterance_id) for e in corpus.errors] == [
        (transcript, 4, "19-198-0002"),
        (transcript, 5, "19-198-0003"),
        (transcript, 6, "19-198-0004"),
        (transcript, 9, "20-198-0005"),
        (transcript, 10, None),  # a duplicate: the id is the ingested line's, not the error's
    ]
    messages = [e.message for e in corpus.errors]
    assert "not valid UTF-8" in messages[0]
    assert "missing" in messages[1] and corpus.errors[1].audio_uri == f"{train}/19/198/19-198-0003.flac"
    assert "empty transcript" in messages[2]
    assert "does not belong to chapter 19/198" in messages[3]
    assert "more than once" in messages[4]
    # 0002 and 0004 have (broken) transcript lines: they are errors, not untranscribed audio.
    assert corpus.untranscribed_audio == (f"{train}/19/198/19-198-0007.flac",)
    assert "skipped 1 audio file" in caplog.text
    assert corpus.utterances[0].phones_uri == f"{dev}/84/121/84-121.phones.jsonl"
    assert corpus.utterances[2].phones_uri is None


def test_librispeech_split_directory_is_detected(messy_tree):
    corpus = read_librispeech(str(messy_tree / "train-clean-5"))
    assert [u.utterance_id for u in corpus] == ["19-198-0000", "19-198-0001", "19-198-0006", "103-1240-0000"]
    assert {u.split for u in corpus} == {"train-clean-5"}
    assert len(corpus.errors) == 5


def test_librispeech_rejects_what_is_not_a_corpus(tmp_path, messy_tree):
    with pytest.raises(SpecError, match="not a directory"):
        read_librispeech(str(tmp_path / "absent"))
    with pytest.raises(SpecError, match="no LibriSpeech transcripts"):
        read_librispeech(str(messy_tree / "train-clean-5" / "19"))


def test_parse_transcript_line():
    assert parse_transcript_line("1-2-0003  A  B\tC \r") == ("1-2-0003", "A B C")
    with pytest.raises(ValueError, match="empty transcript"):
        parse_transcript_line("1-2-0003   ")


def test_phone_intervals_from_sidecar(messy_tree, tmp_path):
    corpus = read_librispeech(str(messy_tree / "dev-clean-2"))
    first, second = corpus.utterances
    assert read_phone_intervals(first) == (Interval(0.01, 0.05, "h"), Interval(0.05, 0.09, "ə"))
    assert read_phone_intervals(second) is None  # the sidecar has no line for it
    no_sidecar = Utterance("x", None, None, "x.flac", "X")
    assert read_phone_intervals(no_sidecar) is None
    assert read_alignments(first.phones_uri)["84-121-0000"].words == (Interval(0.01, 0.09, "HELLO"),)

    broken = tmp_path / "broken.phones.jsonl"
    broken.write_text('{"id": "a", "phones": [[0.1, "x"]]}\n')
    with pytest.raises(InputError, match="line 1"):
        read_alignments(str(broken))


# ------------------------------------------------------------------- manifests


@pytest.fixture
def manifest_dir(tmp_path: Path) -> tuple[Path, list[dict], Path]:
    """Audio next to where the manifests go, the rows every format carries, and an outside file."""
    base = tmp_path / "manifests"
    _write_audio(base / "a.flac")
    _write_audio(base / "sub" / "b.wav")
    outside = tmp_path / "elsewhere" / "c.flac"
    _write_audio(outside)
    rows = [
        {"id": "u1", "audio_path": "a.flac", "text": "hello  world", "speaker": "7", "duration": "0.1"},
        {"id": "", "audio_path": "sub/b.wav", "text": "second one", "speaker": "s2", "duration": ""},
        {"id": "u3", "audio_path": str(outside), "text": "third", "speaker": "s3", "duration": ""},
        {"id": "u4", "audio_path": "a.flac", "text": "", "speaker": "s4", "duration": ""},
        {"id": "u1", "audio_path": "sub/b.wav", "text": "again", "speaker": "s5", "duration": ""},
        {"id": "u6", "audio_path": "s3://bucket/x.flac", "text": "remote", "speaker": "", "duration": ""},
    ]
    return base, rows, outside


def _write_manifest(base: Path, rows: list[dict], suffix: str) -> Path:
    path = base / f"manifest{suffix}"
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif suffix == ".csv":
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_manifest_in_every_format(manifest_dir, suffix):
    base, rows, outside = manifest_dir
    corpus = read_manifest(str(_write_manifest(base, rows, suffix)))
    assert [(u.utterance_id, u.speaker_id, u.audio_uri, u.transcript) for u in corpus] == [
        ("u1", "7", f"{base}/a.flac", "hello world"),
        ("b", "s2", f"{base}/sub/b.wav", "second one"),
        ("u3", "s3", str(outside), "third"),
        ("u6", None, "s3://bucket/x.flac", "remote"),
    ]
    assert corpus.utterances[0].extra == {"duration": "0.1"}
    manifest = f"{base}/manifest{suffix}"
    expected_lines = [5, 6] if suffix == ".csv" else [4, 5]  # CSV counts its header line
    assert [(e.source_uri, e.line, e.utterance_id) for e in corpus.errors] == [
        (manifest, expected_lines[0], "u4"),
        (manifest, expected_lines[1], None),
    ]
    assert "empty transcript" in corpus.errors[0].message
    assert "more than once" in corpus.errors[1].message
    # Resolved paths point at real audio.
    assert audio_info(corpus.utterances[1].audio_uri).num_samples == 1600


def test_manifest_column_aliases_and_bad_json_lines(tmp_path):
    _write_audio(tmp_path / "x.flac")
    path = tmp_path / "m.jsonl"
    path.write_text(
        "\n".join(
            [
                json.dumps(
                    {
                        "audio_uri": "x.flac",
                        "transcript": "one",
                        "utterance_id": "a",
                        "speaker_id": 3,
                        "chapter_id": 9,
                        "phones_uri": "x.phones.jsonl",
                    }
                ),
                json.dumps({"path": "x.flac", "text": "two", "id": "b", "gender": "f"}),
                "{not json",
                json.dumps(["a", "list"]),
                json.dumps({"audio": "", "text": "no audio", "id": "c"}),
            ]
        )
    )
    corpus = read_manifest(str(path))
    first, second = corpus.utterances
    assert (first.utterance_id, first.speaker_id, first.chapter_id, first.transcript) == ("a", "3", "9", "one")
    assert first.phones_uri == f"{tmp_path}/x.phones.jsonl"
    assert (second.utterance_id, second.speaker_id, second.extra) == ("b", None, {"gender": "f"})
    assert [(e.line, e.utterance_id) for e in corpus.errors] == [(3, None), (4, None), (5, "c")]
    assert "not valid JSON" in corpus.errors[0].message
    assert "expected an object" in corpus.errors[1].message
    assert "no audio path" in corpus.errors[2].message


def test_manifest_without_needed_columns_is_a_spec_error(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("file,words\nx.flac,hello\n")
    with pytest.raises(SpecError, match="audio column"):
        read_manifest(str(path))
    path.write_text("audio,words\nx.flac,hello\n")
    with pytest.raises(SpecError, match="transcript column"):
        read_manifest(str(path))
    with pytest.raises(SpecError, match="not found"):
        read_manifest(str(tmp_path / "absent.jsonl"))
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(SpecError, match="Parquet"):
        read_manifest(str(tmp_path / "bad.parquet"))


def test_open_corpus_dispatches_on_the_spec(messy_tree, manifest_dir, tmp_path):
    assert len(open_corpus(messy_tree / "dev-clean-2")) == 2
    base, rows, _ = manifest_dir
    assert len(open_corpus(str(_write_manifest(base, rows, ".csv")))) == 4
    (tmp_path / "notes.txt").write_text("hello")
    for spec, message in [
        (str(tmp_path / "notes.txt"), "not a manifest"),
        (str(tmp_path / "absent"), "not found"),
        ("nosuchprotocol://bucket/corpus", "cannot open"),
        ("  ", "empty corpus spec"),
    ]:
        with pytest.raises(SpecError, match=message):
            open_corpus(spec)


# ------------------------------------------------------------------------- S3


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def test_librispeech_and_audio_from_s3(s3_endpoint, messy_tree):
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket="corpora")
    for path in sorted((messy_tree / "dev-clean-2").rglob("*")):
        if path.is_file():
            key = "LibriSpeech/" + path.relative_to(messy_tree).as_posix()
            client.put_object(Bucket="corpora", Key=key, Body=path.read_bytes())
    client.put_object(
        Bucket="corpora",
        Key="LibriSpeech/manifest.jsonl",
        Body=json.dumps({"audio": "dev-clean-2/84/121/84-121-0001.flac", "text": "world again"}).encode(),
    )
    options = {"client_kwargs": {"endpoint_url": s3_endpoint}, "key": "testing", "secret": "testing"}

    corpus = read_librispeech("s3://corpora/LibriSpeech", storage_options=options)
    assert [(u.split, u.utterance_id, u.transcript) for u in corpus] == [
        ("dev-clean-2", "84-121-0000", "HELLO"),
        ("dev-clean-2", "84-121-0001", "WORLD AGAIN"),
    ]
    assert corpus.errors == () and corpus.untranscribed_audio == ()
    first = corpus.utterances[0]
    assert first.audio_uri == "s3://corpora/LibriSpeech/dev-clean-2/84/121/84-121-0000.flac"
    local = load_audio(str(messy_tree / "dev-clean-2" / "84" / "121" / "84-121-0000.flac"))
    np.testing.assert_array_equal(load_audio(first.audio_uri, storage_options=options), local)
    assert audio_info(first.audio_uri, storage_options=options).num_samples == len(local)
    assert read_phone_intervals(first, storage_options=options)[1] == Interval(0.05, 0.09, "ə")

    split = open_corpus("s3://corpora/LibriSpeech/dev-clean-2", storage_options=options)
    assert [u.utterance_id for u in split] == ["84-121-0000", "84-121-0001"]
    manifest = open_corpus("s3://corpora/LibriSpeech/manifest.jsonl", storage_options=options)
    assert manifest.utterances[0].audio_uri == corpus.utterances[1].audio_uri
    with pytest.raises(InputError, match="not found"):
        load_audio("s3://corpora/LibriSpeech/absent.flac", storage_options=options)


def test_an_audio_file_with_a_space_in_its_name_is_named_as_such(tmp_path):
    import numpy as np
    import soundfile as sf

    from neurolake.corpora import read_librispeech

    chapter = tmp_path / "dev-clean" / "1" / "2"
    chapter.mkdir(parents=True)
    sf.write(chapter / "1-2-0000.flac", np.zeros(1600, np.float32), 16000)
    sf.write(chapter / "1-2-0001 copy.flac", np.zeros(1600, np.float32), 16000)
    (chapter / "1-2.trans.txt").write_text("1-2-0000 HELLO\n1-2-0001 WORLD\n")
    corpus = read_librispeech(str(tmp_path))
    assert [u.utterance_id for u in corpus.utterances] == ["1-2-0000"]
    (error,) = corpus.errors
    assert error.utterance_id == "1-2-0001" and "has a space in its name" in error.message
    assert "rename it to 1-2-0001.flac" in error.message and "missing" not in error.message
