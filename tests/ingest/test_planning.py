"""Parallel planning: headers read by Ray tasks over batches of whole chapters give the plan that
one process gives, byte for byte, on local files and on S3, bad files included."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from neurolake.corpora import open_corpus
from neurolake.ingest import planning
from neurolake.ingest.pipeline import plan_ingest
from neurolake.ingest.planning import chapter_batches
from neurolake.store.location import canonical_json

MODEL = "python:tests.models.demo_factory:build"


def write_chapters(root: Path, chapters: int = 5, per_chapter: int = 7) -> dict[str, str]:
    """A LibriSpeech tree of FLAC and WAV files of random lengths, and what is wrong with the bad
    ones, by utterance id: an empty file, one that is not audio, a WAV cut short, one at 8 kHz."""
    rng = np.random.default_rng(3)
    bad: dict[str, str] = {}
    for c in range(chapters):
        speaker, chapter = 100 + c // 2, 10 + c
        folder = root / str(speaker) / str(chapter)
        folder.mkdir(parents=True)
        lines = []
        for k in range(per_chapter):
            uid = f"{speaker}-{chapter}-{k:04d}"
            lines.append(f"{uid} WORDS OF LINE {k}\n")
            samples = (rng.normal(0, 0.1, int(rng.integers(1_600, 30_000))) * 32767).astype(np.int16)
            if k % 2:
                sf.write(folder / f"{uid}.flac", samples, 16_000)
            else:
                sf.write(folder / f"{uid}.wav", samples, 16_000, subtype="PCM_16")
        lines.append(f"{speaker}-{chapter}-{per_chapter:04d} A LINE WITHOUT AUDIO\n")
        (folder / f"{speaker}-{chapter}.trans.txt").write_text("".join(lines))
    first = root / "100" / "10"
    (first / "100-10-0001.flac").write_bytes(b"")
    bad["100-10-0001"] = "audio file is empty"
    (first / "100-10-0003.flac").write_bytes(b"not audio at all" * 10)
    bad["100-10-0003"] = "not a readable audio file"
    cut = root / "101" / "12" / "101-12-0002.wav"
    cut.write_bytes(cut.read_bytes()[:2_000])
    bad["101-12-0002"] = "truncated"
    with wave.open(str(root / "102" / "14" / "102-14-0004.wav"), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8_000)
        w.writeframes(b"\0\0" * 8_000)
    bad["102-14-0004"] = "sample rate 8000 Hz"
    return bad


def plan_bytes(planned, root: str) -> str:
    """Everything a run keeps of its plan, as bytes, with the corpus's place (``root``) left out."""
    return canonical_json(
        {
            "plan": planned.plan.to_dict(),
            "corpus": {k: v for k, v in planned.corpus_manifest().items() if k != "spec"},
            "num_samples": planned.num_samples,
            "utterances": list(planned.utterances),
            "errors": [{k: v.replace(root, "CORPUS") for k, v in e.items()} for e in planned.errors],
        }
    )


def test_chapter_batches_keep_chapters_whole():
    uris = ["a/1/x1", "a/1/x2", "a/1/x3", "a/2/y1", "a/3/z1", "a/3/z2", "b/4/w1"]
    assert chapter_batches(uris, size=2) == [range(0, 3), range(3, 6), range(6, 7)]  # a/2 joins a/3
    assert chapter_batches(uris, size=1) == [range(0, 3), range(3, 4), range(4, 6), range(6, 7)]
    assert chapter_batches(uris, size=100) == [range(0, 7)]
    assert chapter_batches([], size=3) == []


def test_ray_tasks_plan_what_one_process_plans(ray_session, tmp_path, monkeypatch, s3_bucket):
    import boto3

    bad = write_chapters(tmp_path / "tree")
    corpus = str(tmp_path / "tree")
    _, serial = plan_ingest(corpus, MODEL, ["conv1"], workers=1)
    # 35 utterances, 31 of them planned, 4 bad files and 5 lines without audio as errors rows
    assert serial.plan.n_utterances == 31 and len(serial.errors) == 9
    for uid, reason in bad.items():
        assert [reason in e["message"] for e in serial.errors if e["utterance_id"] == uid] == [True], uid
    # at least 12 files a task: tasks of two chapters (14 files), two chapters, one; bad files in
    # two of them
    monkeypatch.setattr(planning, "HEADER_BATCH_UTTERANCES", 12)
    uris = [u.audio_uri for u in open_corpus(corpus).utterances]
    assert [len(b) for b in chapter_batches(uris, 12)] == [14, 14, 7]
    _, parallel = plan_ingest(corpus, MODEL, ["conv1"], workers=2)
    assert plan_bytes(parallel, corpus) == plan_bytes(serial, corpus)
    assert parallel.errors == serial.errors  # audio URIs too: the same files
    _, threads_only = plan_ingest(corpus, MODEL, ["conv1"], workers=1)
    assert plan_bytes(threads_only, corpus) == plan_bytes(serial, corpus)

    # the same tree on S3 (the moto server), read by Ray tasks and by one process
    bucket, options = s3_bucket
    client = boto3.client("s3", endpoint_url=options["client_kwargs"]["endpoint_url"], region_name="us-east-1")
    for path in (tmp_path / "tree").rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, f"train/{path.relative_to(tmp_path / 'tree')}")
    url = f"s3://{bucket}/train"
    _, s3_serial = plan_ingest(url, MODEL, ["conv1"], storage_options=options, workers=1)
    _, s3_parallel = plan_ingest(url, MODEL, ["conv1"], storage_options=options, workers=2)
    expected = plan_bytes(serial, corpus)
    assert plan_bytes(s3_parallel, url) == plan_bytes(s3_serial, url) == expected and "CORPUS/100/10" in expected
    assert s3_parallel.errors == s3_serial.errors
    assert all(e["audio_uri"].startswith(f"s3://{bucket}/train/") for e in s3_parallel.errors)
    assert json.loads(expected)["plan"]["parts"][0]["utterances"]  # a real plan


def test_planning_workers_below_one_are_refused(tmp_path):
    from neurolake.errors import SpecError

    write_chapters(tmp_path / "tree")
    with pytest.raises(SpecError, match="planning workers must be at least 1, got 0"):
        plan_ingest(str(tmp_path / "tree"), MODEL, ["conv1"], workers=0)
