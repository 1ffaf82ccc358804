"""Hugging Face ``datasets`` audio datasets as corpora, built with ``datasets``' own API: a
``save_to_disk`` directory and Parquet shards read like the audio files they were made from (ids,
transcripts, sample counts and samples), one row at a time, with one error per bad row."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from neurolake.corpora import open_corpus, read_hf_dataset
from neurolake.corpora.audio import audio_info, load_audio
from neurolake.corpora.hf_datasets import parse_row_address, read_row_audio
from neurolake.errors import InputError, SpecError

SECONDS = (0.25, 0.5, 0.3, 0.45, 0.2)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Five FLAC files of different lengths and tones, as a LibriSpeech-style dataset's rows."""
    root = tmp_path_factory.mktemp("hf")
    for n, seconds in enumerate(SECONDS):
        t = np.arange(int(16_000 * seconds)) / 16_000
        sf.write(root / f"19-198-{n:04d}.flac", (0.2 * np.sin(2 * np.pi * (200 + 50 * n) * t)), 16_000)
    return root


def _dataset(source: Path, texts=None, audio=None, ids=None):
    from datasets import Audio, Dataset

    files = [str(source / f"19-198-{n:04d}.flac") for n in range(len(SECONDS))]
    return Dataset.from_dict(
        {
            "file": files,
            "audio": audio or files,
            "text": texts or [f"WORDS OF ROW {n}" for n in range(len(SECONDS))],
            "speaker_id": [19] * len(SECONDS),
            "chapter_id": [198] * len(SECONDS),
            "id": ids or [f"19-198-{n:04d}" for n in range(len(SECONDS))],
        }
    ).cast_column("audio", Audio(sampling_rate=16_000))


def _check_rows_match_files(corpus, source: Path, split: str) -> None:
    assert [u.utterance_id for u in corpus] == [f"19-198-{n:04d}" for n in range(len(SECONDS))]
    assert [u.transcript for u in corpus] == [f"WORDS OF ROW {n}" for n in range(len(SECONDS))]
    assert {(u.speaker_id, u.chapter_id, u.split) for u in corpus} == {("19", "198", split)}
    assert corpus.format == "hf-datasets" and corpus.errors == ()
    for n, utt in enumerate(corpus):
        assert parse_row_address(utt.audio_uri) is not None
        flac = str(source / f"19-198-{n:04d}.flac")
        assert utt.extra["file"] == flac
        assert audio_info(utt.audio_uri).num_samples == audio_info(flac).num_samples == int(16_000 * SECONDS[n])
        assert np.array_equal(load_audio(utt.audio_uri), load_audio(flac))


def test_a_saved_dataset_dict_reads_like_its_files(source: Path, tmp_path: Path):
    from datasets import DatasetDict

    DatasetDict({"validation": _dataset(source)}).save_to_disk(str(tmp_path / "saved"))
    corpus = open_corpus(str(tmp_path / "saved"))
    _check_rows_match_files(corpus, source, "validation")
    assert corpus.utterances[2].audio_uri.endswith("/validation/data-00000-of-00001.arrow#audio=2")
    # one Dataset saved on its own: the directory is the split
    _dataset(source).save_to_disk(str(tmp_path / "dev"))
    _check_rows_match_files(read_hf_dataset(str(tmp_path / "dev")), source, "dev")


def test_parquet_shards_are_read_one_row_group_at_a_time(source: Path, tmp_path: Path, monkeypatch):
    from datasets import load_from_disk

    _dataset(source).save_to_disk(str(tmp_path / "saved"))
    embedded = load_from_disk(str(tmp_path / "saved"))
    # Hub layout: data/<split>-NNNNN-of-NNNNN.parquet, row groups of two rows
    embedded.to_parquet(str(tmp_path / "pq" / "data" / "test-00000-of-00001.parquet"), batch_size=2)
    shard = tmp_path / "pq" / "data" / "test-00000-of-00001.parquet"
    assert pq.ParquetFile(shard).metadata.num_row_groups == 3
    reads: list[int] = []
    original = pq.ParquetFile.read_row_group

    def counted(self, i, *args, **kwargs):
        reads.append(i)
        return original(self, i, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", counted)
    corpus = open_corpus(str(tmp_path / "pq"))
    assert reads == []  # the reader needs the paths and the null counts, not the audio
    _check_rows_match_files(corpus, source, "test")
    assert reads == [0, 1, 2]  # headers and samples of five rows: each row group read once

    with pytest.raises(InputError, match="has no row 5"):
        read_row_audio(f"{shard}#audio=5")
    with pytest.raises(InputError, match="has no column 'sound'"):
        audio_info(f"{shard}#sound=0")
    with pytest.raises(InputError, match="dataset shard not found"):
        load_audio(f"{tmp_path}/none.parquet#audio=0")


def test_rows_with_only_a_path_bad_rows_and_unreadable_shards(source: Path, tmp_path: Path, monkeypatch):
    # Not embedded: a dataset cast from paths keeps them (relative here, from the working directory).
    monkeypatch.chdir(source)
    texts = ["ONE", "  ", "THREE", "FOUR", "FIVE"]
    names = [f"19-198-{n:04d}.flac" for n in range(len(SECONDS))]
    ids = [name[:-5].replace("0003", "0002") for name in names]
    plain = _dataset(source, texts, audio=names, ids=ids)
    plain.to_parquet(str(tmp_path / "paths" / "train.parquet"))
    (tmp_path / "paths" / "broken.parquet").write_bytes(b"PAR1 not really")
    corpus = open_corpus(str(tmp_path / "paths"))
    assert [(u.utterance_id, u.audio_uri, u.split) for u in corpus] == [
        ("19-198-0000", str(source / "19-198-0000.flac"), None),
        ("19-198-0002", str(source / "19-198-0002.flac"), None),
        ("19-198-0004", str(source / "19-198-0004.flac"), None),
    ]
    errors = {(e.source_uri.rsplit("/", 1)[-1], e.line): e.message for e in corpus.errors}
    assert len(errors) == 3
    assert errors[("broken.parquet", None)].startswith("cannot read this shard: unreadable shard")
    assert errors[("train.parquet", 2)] == "row 1 (19-198-0001) has an empty transcript"
    assert errors[("train.parquet", 4)].startswith("row 3: utterance id '19-198-0002' appears more than once")

    (tmp_path / "nothing").mkdir()
    (tmp_path / "nothing" / "x.parquet").write_bytes(b"junk")
    with pytest.raises(SpecError, match="no shard of .* can be read"):
        read_hf_dataset(str(tmp_path / "nothing"))
