"""The report: a section per kind of result the lake holds, every figure a real image with its
command, a finding's own ablation beside it, and the page checked in a real browser."""

from __future__ import annotations

import html
import io
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from neurolake.errors import SpecError
from neurolake.query.engine import QueryEngine
from neurolake.report import report
from neurolake.store import Lake
from tests.browser import check_in_browser
from tests.store.partdata import create_run, write_part


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sections: list[str] = []
        self.images: list[str] = []
        self.audio: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section":
            self.sections.append(a["id"])
        elif tag == "img":
            self.images.append(a["src"])
        elif tag == "audio":
            self.audio.append(a["src"])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def _assert_images_drawn(root: Path, sources: list[str]) -> None:
    from matplotlib.image import imread

    for src in sources:
        pixels = imread(root / src)
        assert pixels.shape[0] > 100 and pixels.std() > 0.01, src  # not blank


def test_a_run_without_analyses_gets_its_run_section_only(tmp_path, monkeypatch):
    from tests.store import partdata

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    with pytest.raises(SpecError, match="no committed part"):
        report(lake, "r1", tmp_path / "empty")

    def unbroken(run, part):
        """The part's tables, each hypothesis 300 letters without a space (a model early in training)."""
        utterances, frames = tables(run, part)
        return {**utterances, "hypothesis": ["QX" * 150] * len(utterances["hypothesis"])}, frames

    tables = partdata.part_tables
    monkeypatch.setattr(partdata, "part_tables", unbroken)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    result = report(lake, "r1", tmp_path / "out")
    page = _parse(result.path)
    assert result.sections == page.sections == ["run"]
    assert page.images == ["figures/error-rates.png"] and page.audio == []  # the audio is not on disk
    _assert_images_drawn(tmp_path / "out", page.images)
    text = result.path.read_text()
    assert "30" in text and "SELECT speaker_id, avg(wer)" in text
    # the run's facts, each against the lake's own tables
    facts = dict(
        re.findall(r"<tr><td>([^<]*)</td><td>([^<]*)</td></tr>", text.split('class="facts"')[1].split("</table>")[0])
    )
    with QueryEngine(lake) as q:
        table = q.sql("SELECT count(*), sum(duration_s) FROM utterances")
    utterances = [table.column(i)[0].as_py() for i in range(2)]
    assert utterances[0] > 0 and utterances[1] > 60
    assert facts["utterances"] == f"{utterances[0]:,}" and facts["audio"] == f"{utterances[1] / 60:.1f} min"
    assert facts["frames"] == f"{run.info().frames_committed:,}" and facts["utterances that failed"] == "0"
    assert set(facts) == {
        "model",
        "corpus",
        "utterances",
        "audio",
        "frames",
        "layers",
        "utterances that failed",
        "created",
    }
    embedded = report(lake, "r1", tmp_path / "one", embed=True)
    assert _parse(embedded.path).images[0].startswith("data:image/png;base64,")
    assert not (tmp_path / "one" / "figures" / "error-rates.png").exists()
    assert "QX" * 150 in text  # the worst utterances' hypotheses, wrapped inside the window:
    check_in_browser(result.path, page.sections, len(page.images), tmp_path)


def _committed_scan(run, label, items, slice_text):
    """A scan result of ``run`` (its spec named by ``label``) holding one finding: ``items`` in
    ``slice_text``; committed, and returned."""
    import pyarrow as pa

    from neurolake.schemas import FINDINGS, SLICES
    from neurolake.store.tables import encode_parquet

    scan = run.derived("scans", {"label": label})
    finding = {name: None for name in FINDINGS.names}
    finding.update(run_id=run.run_id, scan_id=scan.spec_hash, finding_id=1, kind="utterance", slice=slice_text)
    finding.update(items=items, support_target=3, n_target=9, support_background=1, n_background=9)
    finding.update(effect=0.2, p_value=0.01)
    scan.write_bytes(encode_parquet(pa.Table.from_pylist([finding], schema=FINDINGS)), "findings.parquet")
    scan.write_bytes(encode_parquet(SLICES.empty_table()), "slices.parquet")
    scan.commit()
    return scan


def test_the_report_shows_the_scan_and_the_naps_committed_last(tmp_path):
    """Of several scans (and NAPs), the report shows the one committed last, whatever its id."""
    import pyarrow as pa

    from neurolake.schemas import NAPS
    from neurolake.store.tables import encode_parquet

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    layer = run.layers[0]
    results = {}
    for label in ("a", "b", "c"):
        scan = _committed_scan(run, label, [f"{layer.name}:1"], f"slice {label}")
        naps = run.derived("naps", {"by": f"column_{label}", "layers": [layer.name]})
        rows = [
            dict(run_id="r1", nap_id=naps.spec_hash, measure="activation", layer=layer.name, group=f"{label}{g}")
            | dict(offset=0, unit=u, mean=float(g + u), contrastive=float(g - u), n_frames=5)
            for g in range(3)
            for u in range(layer.units)
        ]
        naps.write_bytes(encode_parquet(pa.Table.from_pylist(rows, schema=NAPS)), "naps.parquet")
        naps.commit()
        results[label] = scan, naps
    # Committed in the order of their ids, the last one last (ids first in order were shown before).
    newest = []
    for kind in range(2):
        by_id = sorted(results, key=lambda label: results[label][kind].spec_hash)
        for when, label in enumerate(by_id, start=1):
            os.utime(results[label][kind].loc.join("spec.json"), (1000 * when, 1000 * when))
        assert results[by_id[-1]][kind].committed_at().timestamp() == 3000
        newest.append(by_id[-1])
    text = report(lake, "r1", tmp_path / "out").path.read_text()
    assert [label for label in results if f"slice {label}<" in text] == [newest[0]]
    assert [label for label in results if f"--by column_{label} --layers {layer.name}<" in text] == [
        newest[1]
    ]  # the NAP figures' command


def test_the_maps_of_the_top_findings_layer_come_first(tmp_path, monkeypatch):
    """Of more layouts than the report shows (three), those of the layer holding the latest
    scan's top finding come first, its units circled; of more groups than a figure's 18 panels
    (30 utterances), those with the most frames, in name order."""
    import neurolake.introspect.topomap as topomap_module
    from neurolake.introspect.topomap import topomap

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    first, second = (layer.name for layer in run.layers)
    topomap(lake, "r1", first, by="speaker_id", methods=["pca", "force", "som"], progress=False)
    topomap(lake, "r1", second, by="utterance_id", methods=["pca"], progress=False)
    _committed_scan(run, "one", [f"{second}:3"], "a slice")
    panels = {}
    render = topomap_module._render_maps

    def noted(maps, groups, path, layer, *args):
        panels[layer, path.name] = groups
        return render(maps, groups, path, layer, *args)

    monkeypatch.setattr(topomap_module, "_render_maps", noted)
    page = _parse(report(lake, "r1", tmp_path / "out").path)
    maps = [src for src in page.images if "topomap-" in src]
    with QueryEngine(lake) as q:
        counts = q.sql("SELECT utterance_id, count(*) AS n FROM frames GROUP BY 1 ORDER BY n DESC, 1").to_pylist()
    assert len(counts) == 30 and counts[17]["n"] > counts[18]["n"]  # no tie at the cut
    assert panels[second, f"topomap-{second}-pca.png"] == sorted(r["utterance_id"] for r in counts[:18])
    assert panels[first, f"topomap-{first}-pca.png"] == ["spk0", "spk1", "spk2"]
    assert maps == [
        f"figures/topomap-{second}-pca.png",
        f"figures/topomap-{first}-force.png",
        f"figures/topomap-{first}-pca.png",
    ]
    text = html.unescape((tmp_path / "out" / "index.html").read_text())
    assert f"{second}: units laid out by their profiles (pca, smoothness" in text
    assert text.count("(the 18 of 30 groups with the most frames)") == 2
    assert text.count("circled: the top finding's units") == 2  # its figure's alt text and caption


def test_audio_in_object_storage_is_decoded_beside_the_report(s3_bucket, tmp_path, monkeypatch):
    """A run whose corpus is in S3 (a real endpoint on loopback): the worst utterances' players
    play WAV files written beside the page, holding the stored audio's samples; an utterance
    whose audio is gone gets no player and the report is still written."""
    import fsspec
    import numpy as np
    import soundfile as sf

    from tests.store import partdata

    bucket, options = s3_bucket
    lake = Lake.create(f"s3://{bucket}/lake", options)
    run = create_run(lake)
    fs = fsspec.filesystem("s3", **options)
    rng = np.random.default_rng(0)
    stored = {}
    for part in run.plan.parts:
        for u in part.utterances:
            stored[u.utterance_id] = (rng.integers(-20000, 20000, 8000) / 32768).astype(np.float32)
            encoded = io.BytesIO()
            sf.write(encoded, stored[u.utterance_id], 16000, format="FLAC", subtype="PCM_16")
            fs.pipe(f"{bucket}/corpus/{u.utterance_id}.flac", encoded.getvalue())
    gone = sorted(stored)[0]
    fs.rm(f"{bucket}/corpus/{gone}.flac")
    tables = partdata.part_tables

    def in_s3(run, part):
        utterances, frames = tables(run, part)
        ids = utterances["utterance_id"]
        return {**utterances, "audio_uri": [f"s3://{bucket}/corpus/{u}.flac" for u in ids]}, frames

    monkeypatch.setattr(partdata, "part_tables", in_s3)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    out = tmp_path / "out"
    result = report(Lake.open(f"s3://{bucket}/lake", options), "r1", out)
    with QueryEngine(lake) as q:
        worst = q.sql("SELECT utterance_id FROM utterances ORDER BY wer DESC, utterance_id LIMIT 10")
    shown = worst.column(0).to_pylist()
    page = _parse(result.path)
    want = [f"audio/{u}.wav" for u in shown if u != gone]
    assert sorted(page.audio) == sorted(want) and len(want) >= 9
    for src in page.audio:
        samples, rate = sf.read(out / src, dtype="float32")
        assert rate == 16000
        np.testing.assert_array_equal(samples, stored[Path(src).stem])  # 16-bit samples, kept exactly


@pytest.mark.slow
def test_the_report_of_an_analysed_run_shows_every_section_in_a_browser(own_scanned_lake, tmp_path):
    from neurolake.cli import main
    from neurolake.introspect.ablation import ablate
    from neurolake.introspect.blocks import blocks
    from neurolake.introspect.naps import naps
    from neurolake.introspect.phonetics import phonetic_layers
    from neurolake.introspect.probe import probe
    from neurolake.introspect.ranking import rank_neurons
    from neurolake.introspect.scan import scan
    from neurolake.introspect.topomap import topomap

    found = scan(own_scanned_lake, "z", progress=False).findings.to_pylist()
    first = found[0]
    ablate(own_scanned_lake, "z", first["items"], slice=first["target"], controls=2, max_utterances=6)
    blocks(own_scanned_lake, f"{first['scan_id']}/1", controls=2, with_ablation=False)
    # every analysis on a sample of frames: the report's sections are under test, not their figures
    probe(own_scanned_lake, "z", "phoneme", layers=["conv6", "conv7"], max_frames=2000, min_per_class=5, progress=False)
    naps(own_scanned_lake, "z", by="phoneme", layers=["conv7"], progress=False)
    rank_neurons(own_scanned_lake, "z", "phoneme", layers=["conv7"], max_frames=800, draws=1, min_per_class=5)
    phonetic_layers(own_scanned_lake, "z", permutations=49)
    topomap(own_scanned_lake, "z", "conv7", by="phoneme", methods=["pca"], progress=False)

    out = tmp_path / "report"
    lake_url = str(own_scanned_lake.loc.url)
    assert main(["report", "--lake", lake_url, "--run", "z", "--out", str(out)]) == 0
    page = _parse(out / "index.html")
    assert page.sections == ["run", "phonemes", "findings", "naps", "maps", "probes"]
    _assert_images_drawn(out, page.images)
    expected = {"error-rates", "phoneme-errors", "confusions", "ablations", "naps-conv7", "probe-phoneme-frame"}
    expected |= {"phonetics", "topomap-conv7-pca"}
    assert {f"figures/{name}.png" for name in {*expected, "ranking-phoneme-conv7"}} <= set(page.images)
    assert len(page.audio) == 10 and all((out / a).stat().st_size > 1000 for a in page.audio)
    html = (out / "index.html").read_text()
    # the first finding shows its own ablation, a finding with other units none
    rows = re.findall(r"<tr><td>[0-9a-f]+/(\d+)</td>(.*?)</tr>", html)
    assert "circled: the top finding&#x27;s units" in html  # on the stored map
    assert rows[0][0] == "1" and "slice frames" in rows[0][1] and "conv7 (" in rows[0][1]
    assert "of the slice" in rows[0][1]  # its block across layers
    assert all("slice frames" not in r[1] for r in rows[1:])
    for verb, args in (("probe", "--target phoneme"), ("rank", "--target phoneme"), ("naps", "--by phoneme")):
        assert f"neurolake {verb} --lake {lake_url} --run z {args}" in html

    check_in_browser(out / "index.html", page.sections, len(page.images), tmp_path)


def test_notebook_summaries_and_the_whole_api_from_one_import(tmp_path):
    import neurolake

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    nl = neurolake.open(str(tmp_path / "lake"))
    assert nl.runs().column("run_id").to_pylist() == ["r1"]
    assert "run r1" in nl.run("r1")._repr_html_() and "complete" in nl.run("r1")._repr_html_()
    group = nl.group("odd", "r1", "frame_index % 2 = 1")
    assert nl.group("odd").n_frames == group.n_frames > 0
    assert "frame_index % 2 = 1" in group._repr_html_() and f"{group.n_frames:,}" in group._repr_html_()
    html = nl._repr_html_()
    assert "r1" in html and "<table>" in html
    assert nl.sql("SELECT count(*) AS n FROM frames WHERE run_id = ?", ["r1"]).column("n")[0].as_py() == sum(
        u.n_frames for part in run.plan.parts for u in part.utterances
    )


@pytest.mark.slow
def test_the_example_notebook_runs_from_a_lake_to_a_finding_and_its_map(scanned_lake, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(Path(__file__).parents[2] / "docs" / "examples" / "lake-to-finding.ipynb", as_version=4)
    monkeypatch.setenv("NEUROLAKE_LAKE", str(scanned_lake.loc.url))
    monkeypatch.setenv("NEUROLAKE_RUN", "z")
    repo = str(Path(__file__).parents[2])  # the kernel imports the faulty model from the tests
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p))
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [cell.get("outputs", []) for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in outputs for o in cell if o.output_type == "error"]
    html = ["".join(o["data"].get("text/html", "")) for cell in outputs for o in cell if "data" in o]
    assert "run z" in html[1] and "<b>scan " in html[3] and "<b>ablation " in html[4]
    assert "image/png" in outputs[-1][0]["data"]  # the map, with the finding's units circled
    assert (tmp_path / "maps").is_dir()
