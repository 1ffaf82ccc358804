"""Forced-aligner TextGrids as ground truth: round trips of the format, the directory index, and
an ingest whose phonemes come from MFA-style TextGrids of the synthetic corpus's own timings,
equal to the ingest that reads those timings directly."""

from __future__ import annotations

import pytest

from neurolake.corpora.records import Alignment, Interval
from neurolake.corpora.sidecars import read_textgrid_alignment, textgrid_index, write_textgrid
from neurolake.errors import InputError


def test_a_written_textgrid_reads_back_without_its_silences(tmp_path):
    alignment = Alignment(
        "1-2-0003",
        phones=(Interval(0.1, 0.2, "DH"), Interval(0.2, 0.35, "AH0"), Interval(0.5, 0.6, "K")),
        words=(Interval(0.1, 0.35, "THE"), Interval(0.5, 0.6, "K'S")),
    )
    text = write_textgrid(alignment, 1.0)
    assert text.count('text = ""') == 6  # gaps 0-0.1, 0.35-0.5 and 0.6-1.0 in each of the two tiers
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "1-2-0003.TextGrid").write_text(text.replace('"K\'S"', '"k\'s"'))
    (tmp_path / "1" / "1-2-0004.TextGrid").write_text(text.replace('"K"', '"spn"'))
    back = read_textgrid_alignment(str(tmp_path / "1" / "1-2-0003.TextGrid"), "1-2-0003")
    assert back == alignment  # words upper-cased, empty intervals dropped
    noisy = read_textgrid_alignment(str(tmp_path / "1" / "1-2-0004.TextGrid"), "1-2-0004")
    assert [p.label for p in noisy.phones] == ["DH", "AH0"]  # spn is not a phone
    index = textgrid_index(str(tmp_path))
    assert index == {u: str(tmp_path / "1" / f"{u}.TextGrid") for u in ("1-2-0003", "1-2-0004")}
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "1-2-0003.TextGrid").write_text(text)
    with pytest.raises(InputError, match="two alignments for '1-2-0003'"):
        textgrid_index(str(tmp_path))
    with pytest.raises(InputError, match="not a directory"):
        textgrid_index(str(tmp_path / "none"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no"):
        textgrid_index(str(tmp_path / "empty"))
    (tmp_path / "bad.TextGrid").write_text("not a grid")
    with pytest.raises(InputError, match="bad.TextGrid: not a TextGrid"):
        read_textgrid_alignment(str(tmp_path / "bad.TextGrid"), "bad")


@pytest.mark.slow
def test_ingest_takes_its_phonemes_from_the_aligners_textgrids(tmp_path, capsys):
    import ray

    from neurolake.cli import main
    from neurolake.corpora.synth import export_textgrids, synthesize_corpus
    from neurolake.ingest.pipeline import ingest
    from neurolake.query.engine import QueryEngine
    from neurolake.store import Lake
    from tests.ingest import assert_words_follow_timings

    synthesize_corpus(str(tmp_path / "c"), n_utterances=6, seed=5, holdout_accent=None, test_fraction=0.0)
    assert main(["corpus", "textgrids", str(tmp_path / "c"), str(tmp_path / "mfa")]) == 0
    assert "wrote 6 TextGrids" in capsys.readouterr().out
    assert export_textgrids(str(tmp_path / "c"), str(tmp_path / "again")) == 6
    first = sorted((tmp_path / "mfa").rglob("*.TextGrid"))[0]
    assert "AH0" not in first.read_text() or "1" in first.read_text()  # vowels carry a stress digit
    unaligned = first.stem
    first.unlink()  # this one keeps the corpus's own timings
    lake = str(tmp_path / "lake")
    if ray.is_initialized():
        ray.shutdown()
    corpus = str(tmp_path / "c" / "train")
    ingest(lake, corpus, "demo", layers=["conv7"], run_id="sidecar", progress=False)
    ingest(lake, corpus, "demo", layers=["conv7"], run_id="mfa", alignments=str(tmp_path / "mfa"), progress=False)
    ray.shutdown()
    assert Lake.open(lake).run("mfa").manifest["corpus"]["alignments"] == str(tmp_path / "mfa")
    with QueryEngine(Lake.open(lake)) as q:
        rows = q.sql("SELECT utterance_id, phoneme_source FROM utterances WHERE run_id = 'mfa'").to_pylist()
        sources = {r["utterance_id"]: r["phoneme_source"] for r in rows}
        assert sources.pop(unaligned) == "sidecar" and set(sources.values()) == {"alignments"}
        frames = q.sql(
            "SELECT m.phoneme_source AS source, m.phoneme = s.phoneme AS same, count(*) AS n FROM frames m "
            "JOIN frames s ON m.frame_id = s.frame_id AND s.run_id = 'sidecar' WHERE m.run_id = 'mfa' "
            "AND m.utterance_id <> ? GROUP BY 1, 2",
            [unaligned],
        ).to_pylist()
        sidecar_sources = q.sql("SELECT DISTINCT phoneme_source FROM frames WHERE run_id = 'sidecar'").column(0)
        # the aligner's word tier gives the frames' words (the sidecar run keeps the model's alignment)
        worded = assert_words_follow_timings(q, "mfa", tmp_path / "c", skip=(unaligned,))
        assert worded > 0.5 * sum(r["n"] for r in frames)
    # the same timings, through the aligner's format: the same phoneme on (almost) every frame
    same = sum(r["n"] for r in frames if r["same"])
    assert {r["source"] for r in frames} == {"alignments"} and same >= 0.99 * sum(r["n"] for r in frames)
    assert sidecar_sources.to_pylist() == ["sidecar"]
    assert (
        main(
            [
                "ingest",
                "--lake",
                lake,
                "--corpus",
                corpus,
                "--model",
                "demo",
                "--dry-run",
                "--alignments",
                str(tmp_path / "nowhere"),
            ]
        )
        == 2
    )
    assert "is not a directory" in capsys.readouterr().err
