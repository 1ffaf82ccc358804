"""Scan: a planted confusion is found without being told where to look, ranked first, reproduced
with groups and mining, and proved in the model by ablation; a clean model is the control. Blocks:
a fault planted across two layers is traced down to the layer it was planted in."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurolake.errors import SpecError
from neurolake.introspect.scan import _absorb, _lit, candidate_slices, get_finding, scan
from neurolake.query.engine import QueryEngine
from neurolake.query.groups import group_frame_ids
from neurolake.store import Lake
from tests.introspect import faulty_demo

CONFUSION = "python:tests.introspect.faulty_demo:build_confusion"
BLOCK = "python:tests.introspect.faulty_demo:build_block"
PLANTED = {f"conv7:{u}" for u in faulty_demo.CONFUSION_UNITS}


def test_sql_literals_and_absorption_by_hand():
    assert _lit("E") == "'E'" and _lit("'") == "''''" and _lit(3) == "3" and _lit(0.5) == "0.5"
    with pytest.raises(SpecError):
        _lit(None)
    # {0,1} (excess 10) gives way to {0,1,2} (9.5 >= 0.9 * 10) but not to {0,1,3} (8);
    # {0,1,2} is kept, and {4} has no superset; {0,1,3} stays too (no superset of it).
    itemsets = [(0, 1), (0, 1, 2), (0, 1, 3), (4,)]
    excess = np.array([10.0, 9.5, 8.0, 3.0])
    keep = _absorb(itemsets, excess, np.ones(4, bool))
    assert keep.tolist() == [False, True, True, True]
    # a pattern not kept (not significant) absorbs nothing
    assert _absorb(itemsets, excess, np.array([True, False, True, True])).tolist() == [True, False, True, True]


def test_a_run_without_segment_labels_is_one_clear_error(tmp_path):
    from tests.store.partdata import create_run, write_part

    lake = Lake.create(str(tmp_path / "lake"))
    run = create_run(lake)
    for part in run.plan.parts:
        write_part(run, part.part_id)
    with pytest.raises(SpecError, match="no segment labels"):
        scan(lake, "r1")
    with pytest.raises(SpecError, match="SCAN_ID/FINDING_ID"):
        get_finding(lake, "nope")
    with pytest.raises(SpecError, match="no finding 'abc/1'"):
        get_finding(lake, "abc/1")


@pytest.mark.slow
def test_the_scan_ranks_the_planted_confusion_first(scanned_lake):
    result = scan(scanned_lake, "z", progress=False)
    top = result.findings.slice(0, 1).to_pylist()[0]
    # Nobody said "E read as Z": the scan proposed the slice and the planted units single it out.
    assert top["kind"] == "confusion" and top["slice"] in ("E -> Z", "A -> Z")
    assert set(top["items"]) <= PLANTED and len(top["items"]) >= 3
    assert top["p_value"] < 1e-6 and top["support_target"] > 0.8 * top["n_target"]
    assert top["support_background"] <= 0.05 * top["n_background"]
    # Holm over every test of the scan: the smallest raw p-value is multiplied by all of them.
    rows = result.findings.to_pylist()
    best = min(rows, key=lambda r: r["p_value_raw"])
    assert best["p_value"] == pytest.approx(min(1.0, best["p_value_raw"] * result.n_tests))
    assert result.n_tests > result.findings.num_rows > 0
    assert [r["finding_id"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(a["excess_frames"] >= b["excess_frames"] for a, b in zip(rows, rows[1:], strict=False))


@pytest.mark.slow
def test_a_clean_model_has_no_planted_finding(scanned_lake):
    result = scan(scanned_lake, "clean", progress=False)
    assert "E -> Z" not in result.slices.column("slice").to_pylist()
    assert all(len(PLANTED & set(items)) <= 1 for items in result.findings.column("items").to_pylist())


@pytest.mark.slow
def test_findings_are_stored_queryable_and_reproducible_with_groups_and_mining(scanned_lake):
    from neurolake.mining.mine import mine
    from neurolake.query.groups import create_group

    result = scan(scanned_lake, "z", progress=False)
    again = scan(scanned_lake, "z", progress=False)
    assert again.reused and again.scan_id == result.scan_id and again.findings.equals(result.findings)
    with QueryEngine(scanned_lake) as q:
        stored = q.sql("SELECT * FROM findings WHERE scan_id = ? ORDER BY finding_id", [result.scan_id])
        slices = q.sql("SELECT * FROM slices WHERE scan_id = ? ORDER BY slice_id", [result.scan_id])
    assert stored.to_pylist() == result.findings.to_pylist()
    assert slices.num_rows == result.slices.num_rows
    top = get_finding(scanned_lake, f"{result.scan_id}/1")
    create_group(scanned_lake, "top_t", "z", top["target"])
    create_group(scanned_lake, "top_b", "z", top["background"])
    mined = mine(scanned_lake, "top_t", "top_b", layers=["conv6", "conv7"], min_support=0.2, max_size=4)
    same = [p for p in mined.patterns.to_pylist() if sorted(p["items"]) == sorted(top["items"])]
    assert len(same) == 1
    assert (same[0]["support_target"], same[0]["support_background"]) == (
        top["support_target"],
        top["support_background"],
    )
    assert mined.n_target == top["n_target"] and mined.n_background == top["n_background"]


@pytest.mark.slow
def test_ablating_the_top_finding_removes_its_slice_and_random_units_do_not(scanned_lake):
    from neurolake.introspect.ablation import ablate

    result = scan(scanned_lake, "z", progress=False)
    top = result.findings.slice(0, 1).to_pylist()[0]
    ablation = ablate(scanned_lake, "z", top["items"], slice=top["target"], controls=3, seed=2)
    # The base decoding labelled again counts exactly the frames the scan saw.
    assert ablation.base.slice_frames == top["n_target"]
    assert ablation.ablated.slice_frames <= 0.1 * top["n_target"]
    assert all(c.slice_frames >= 0.8 * top["n_target"] for c in ablation.controls)
    assert ablation.cer_change < min(ablation.control_cer_changes) - 0.02


@pytest.mark.slow
def test_scan_on_ray_workers_equals_the_scan_in_process(scanned_lake):
    from neurolake.store.derived import list_derived

    kinds = ("confusion", "deletion")
    local = scan(scanned_lake, "z", kinds=kinds, progress=False)
    for d in list_derived(scanned_lake.run("z").loc.child("derived"), "scans"):
        if d.spec_hash == local.scan_id:
            d.loc.remove_tree()
    remote = scan(scanned_lake, "z", kinds=kinds, workers=2)
    assert not remote.reused and remote.findings.equals(local.findings)


@pytest.mark.slow
def test_diffnorm_over_all_slices_finds_the_planted_units(scanned_lake):
    result = scan(scanned_lake, "z", algo="diffnorm", kinds=("confusion",), progress=False)
    planted = [r for r in result.findings.to_pylist() if len(PLANTED & set(r["items"])) >= 2]
    assert planted and planted[0]["slice"] in ("E -> Z", "A -> Z")


@pytest.mark.slow
def test_candidate_slices_and_bad_requests(scanned_lake):
    with QueryEngine(scanned_lake) as engine:
        slices = candidate_slices(engine, "z", min_frames=10)
        assert [s.n_frames for s in slices] == sorted((s.n_frames for s in slices), reverse=True)
        names = {s.name for s in slices}
        assert "E -> Z" in names and any(s.kind == "phoneme" for s in slices)
        for s in slices:  # every slice's predicate selects the frames it counted
            assert group_frame_ids(engine, "z", s.target).size == s.n_frames, s
        with pytest.raises(SpecError, match="unknown slice kind"):
            candidate_slices(engine, "z", kinds=("nope",))
        with pytest.raises(SpecError, match="utterance column 'accent' unknown"):
            candidate_slices(engine, "z", columns=("accent",))
    with pytest.raises(SpecError, match="unknown mining algorithm"):
        scan(scanned_lake, "z", algo="apriori")


@pytest.mark.slow
def test_scan_and_ablate_cli(scanned_lake, capsys):
    from neurolake.cli import main

    lake = str(scanned_lake.loc.url)
    assert main(["scan", "--lake", lake, "--run", "z", "--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "E -> Z" in out and "neurolake ablate --finding" in out
    scan_id = out.split("scan ", 1)[1].split()[0]
    assert main(["ablate", "--lake", lake, "--finding", f"{scan_id}/1", "--controls", "1", "--utterances", "4"]) == 0
    out = capsys.readouterr().out
    assert "slice frames" in out and "slice's frames" in out
    for argv, message in (
        (["ablate", "--lake", lake, "--finding", f"{scan_id}/9999"], "no finding"),
        (["ablate", "--lake", lake, "--finding", f"{scan_id}/1", "--run", "clean"], "belongs to run 'z'"),
        (["scan", "--lake", lake, "--run", "z", "--layers", "conv3"], "conv3"),
        (["scan", "--lake", lake, "--run", "nope"], "no run 'nope'"),
        (["scan", "--lake", lake, "--run", "z", "--confident", "2"], "probabilities in [0, 1]"),
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


@pytest.mark.slow
def test_a_scan_that_mines_no_slice_says_why(scanned_lake, capsys):
    """No background is large enough (frames right and confident), or no kind of error has enough
    frames: the scan says which, with the run's own figures and the option to change, not "no
    pattern"."""
    from neurolake.cli import main
    from neurolake.render import format_scan

    with QueryEngine(scanned_lake) as engine:
        good, largest, errors = (
            engine.sql(
                "WITH g AS (SELECT phoneme, count(*) AS n FROM frames WHERE run_id = 'z' AND NOT segment_error "
                "AND pred_prob >= 1.0 AND phoneme IS NOT NULL GROUP BY phoneme) "
                "SELECT (SELECT count(*) FROM frames WHERE run_id = 'z' AND NOT segment_error AND pred_prob >= 1.0), "
                "(SELECT max(n) FROM g), (SELECT count(*) FROM frames WHERE run_id = 'z' AND segment_error)"
            )
            .to_pylist()[0]
            .values()
        )
        # Phonemes' error slices with more frames than any phoneme has right at probability 1.
        candidates = candidate_slices(engine, "z", min_frames=largest + 1, confident=1.0, kinds=("phoneme",))
    assert len(candidates) >= 3
    result = scan(scanned_lake, "z", confident=1.0, min_frames=largest + 1, kinds=("phoneme",))
    assert result.slices.num_rows == 0
    assert result.no_slices == (
        f"no slice: {len(candidates)} of the {len(candidates)} candidate slices have fewer than {largest + 1} frames "
        "in their background, drawn from the frames the model got right with greedy-token probability >= 1; "
        f"the run has {good:,} such frames (its frames' highest is 1.00); lower --confident"
    )
    assert result.no_slices in format_scan(result) and "no pattern" not in format_scan(result)
    lake = str(scanned_lake.loc.url)
    for reused in (False, True):
        assert main(["scan", "--lake", lake, "--run", "z", "--min-frames", "20000"]) == 0
        out = capsys.readouterr().out
        assert ("[reused]" in out) == reused and "0 slices mined" in out
        assert f"no slice: no kind of error reaches 20000 frames (the run has {errors:,} frames in errors)" in out


def test_attribution_through_a_linear_map_is_weights_times_activations():
    from neurolake.models import load_model

    adapter = load_model("python:tests.models.demo_factory:build")
    wave = 0.1 * torch.randn(16_000, generator=torch.Generator().manual_seed(0))
    captured = adapter.forward(wave[None], [wave.numel()], ["conv3"]).captured["conv3"][0]  # [T, units]
    frames = [3, 4, 5, 8]
    # head is a 1x1 convolution on conv3: unit i's share of head unit 2 is a_i(t) * W[2, i], summed
    weight = adapter.module.head.weight[:, :, 0].detach()
    expected = (captured[frames] * weight[2]).sum(dim=0).double()
    got = adapter.attribution(wave, "conv3", "head", [2], frames)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(SpecError, match="not a capturable layer"):
        adapter.attribution(wave, "nope", "head", [2], frames)


@pytest.mark.slow
def test_the_block_reaches_down_to_the_planted_drivers_and_not_in_a_model_without_them(scanned_lake):
    from neurolake.introspect.blocks import blocks

    drivers = set(faulty_demo.BLOCK_DRIVERS)
    found = {}
    for run_id in ("b", "z"):
        result = scan(scanned_lake, run_id, progress=False)
        top = result.findings.slice(0, 1).to_pylist()[0]
        assert top["slice"] == "E -> Z" and set(top["items"]) <= PLANTED
        found[run_id] = blocks(scanned_lake, f"{result.scan_id}/1", controls=2, with_ablation=run_id == "b")
    block = found["b"]
    assert block.layers == ["conv6", "conv7"]  # the layers the fault was planted in
    conv6 = dict(zip(block.units["conv6"], block.scores["conv6"], strict=True))
    strongest = max(conv6, key=conv6.get)
    assert strongest in drivers and conv6[strongest] > 1.5 * sorted(conv6.values())[-2]
    assert not drivers & set(found["z"].units.get("conv6", []))  # the same fault without the wiring
    # Zeroing the whole block removes the slice; random units of the same size per layer do not.
    assert block.ablation.ablated.slice_frames == 0
    assert all(c.slice_frames >= 0.8 * block.ablation.base.slice_frames for c in block.ablation.controls)
    assert 0 < block.layer_share["conv7"] <= 1 and 0 <= block.active_share <= block.layer_share["conv6"]
    # Stored: asked again, it is read back whole, and the blocks view holds it.
    again = blocks(scanned_lake, block.finding, controls=2)
    assert again.reused and not block.reused and again.block_id == block.block_id
    assert again.units == block.units and again.seeds == block.seeds and again.active_share == block.active_share
    np.testing.assert_array_equal(again.scores["conv6"], block.scores["conv6"])
    assert again.ablation is not None and again.ablation.ablated.slice_frames == 0
    assert [c.slice_frames for c in again.ablation.controls] == [c.slice_frames for c in block.ablation.controls]
    with QueryEngine(scanned_lake) as q:
        rows = q.sql(
            "SELECT layer, count(*) AS n, count(*) FILTER (WHERE seed) AS seeds FROM blocks WHERE block_id = ? "
            "GROUP BY 1 ORDER BY 1",
            [block.block_id],
        ).to_pylist()
    assert rows == [
        {"layer": layer, "n": len(block.units[layer]), "seeds": len(block.seeds.get(layer, []))}
        for layer in ("conv6", "conv7")
    ]


@pytest.mark.slow
def test_blocks_cli(scanned_lake, capsys):
    from neurolake.cli import main

    lake = str(scanned_lake.loc.url)
    scan_id = scan(scanned_lake, "b", progress=False).scan_id
    assert main(["blocks", "--lake", lake, "--finding", f"{scan_id}/1", "--controls", "1", "--utterances", "5"]) == 0
    out = capsys.readouterr().out
    assert "2 layers (conv6, conv7)" in out and "the whole block, zeroed in the model" in out
    assert main(["blocks", "--lake", lake, "--finding", f"{scan_id}/999"]) == 2
    assert "no finding" in capsys.readouterr().err


@pytest.mark.slow
def test_an_ablation_on_ray_model_actors_equals_the_one_in_process(scanned_lake):
    from neurolake.introspect.ablation import ablate
    from neurolake.store.derived import list_derived

    top = scan(scanned_lake, "z", progress=False).findings.slice(0, 1).to_pylist()[0]
    kwargs = {"slice": top["target"], "controls": 2, "seed": 3, "max_utterances": 5}
    local = ablate(scanned_lake, "z", top["items"], **kwargs)
    for d in list_derived(scanned_lake.run("z").loc.child("derived"), "ablations"):
        if d.spec_hash == local.ablation_id:
            d.loc.remove_tree()
    remote = ablate(scanned_lake, "z", top["items"], workers=2, **kwargs)
    assert not remote.reused and remote.ablation_id == local.ablation_id
    assert (remote.base, remote.ablated, remote.controls) == (local.base, local.ablated, local.controls)
    assert remote.control_units == local.control_units and remote.ablated.slice_frames < remote.base.slice_frames


@pytest.mark.slow
def test_phoneme_profiles_of_the_demo_model_follow_phonetics(scanned_lake, tmp_path, capsys):
    from neurolake.cli import main
    from neurolake.introspect.phonetics import phonetic_layers

    rows = phonetic_layers(scanned_lake, "clean", permutations=199, out_dir=tmp_path)
    assert [r["layer"] for r in rows] == ["conv6", "conv7"] and rows[0]["n_phones"] >= 10
    assert any(r["p_value"] < 0.05 and r["r"] > 0.3 for r in rows), rows
    assert all(0 < r["eta2_phoneme"] < 1 and 0 < r["eta2_grapheme"] < 1 for r in rows)
    for name in ("phonetic-agreement.png", "dendrogram-conv6.png", "dendrogram-conv7.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # stored: asked again, read back (the same r, p and eta squared), and in the phonetics view
    assert phonetic_layers(scanned_lake, "clean", permutations=199) == [
        {k: v for k, v in r.items() if k != "figure"} for r in rows
    ]
    with QueryEngine(scanned_lake) as q:
        stored = q.sql(
            "SELECT layer, r, p_value FROM phonetics WHERE run_id = 'clean' AND phonetics_id IN "
            "(SELECT phonetics_id FROM phonetics WHERE run_id = 'clean' GROUP BY 1 HAVING count(*) = 2) "
            "ORDER BY layer"
        ).to_pylist()
    assert {(s["layer"], s["r"], s["p_value"]) for s in stored} >= {(r["layer"], r["r"], r["p_value"]) for r in rows}
    argv = ["phonetics", "--lake", str(scanned_lake.loc.url), "--run", "clean", "--permutations", "99"]
    assert main([*argv, "--out", str(tmp_path / "svg"), "--format", "svg"]) == 0
    assert "cophenetic r" in capsys.readouterr().out
    assert (tmp_path / "svg" / "dendrogram-conv7.svg").read_text().lstrip().startswith("<?xml")
    assert main(["phonetics", "--lake", str(scanned_lake.loc.url), "--run", "clean", "--min-frames", "100000"]) == 2
    assert "need at least 4" in capsys.readouterr().err


def test_relevance_through_a_linear_head_by_hand():
    from neurolake.models import load_model

    adapter = load_model("python:tests.models.demo_factory:build")
    wave = 0.1 * torch.randn(16_000, generator=torch.Generator().manual_seed(1))
    out = adapter.forward(wave[None], [wave.numel()], ["conv3"])
    a = out.captured["conv3"][0].double()  # [T, units]
    p = out.log_probs[0].double().exp()  # [T, tokens]
    targets = out.log_probs[0].argmax(dim=-1).tolist()
    # head: logits = W a + b, log p = log_softmax: d log p_y / d a = W[y] - sum_v p_v W[v]
    weight = adapter.module.head.weight[:, :, 0].detach().double()
    expected = a * (weight[targets] - p @ weight)
    torch.testing.assert_close(adapter.relevance(wave, "conv3", targets), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(SpecError, match="targets for an utterance"):
        adapter.relevance(wave, "conv3", targets[:-1])


def test_relevance_of_several_layers_at_once_equals_one_layer_at_a_time():
    from neurolake.models import load_model

    adapter = load_model("python:tests.models.demo_factory:build")
    wave = 0.1 * torch.randn(8_000, generator=torch.Generator().manual_seed(2))
    predicted = adapter.forward(wave[None], [wave.numel()]).log_probs[0].argmax(dim=-1).tolist()
    targets, found = adapter.relevances(wave, ["conv2", "conv3", "head"])
    assert targets == predicted  # without targets, the tokens this forward predicts
    for layer in ("conv2", "conv3", "head"):
        torch.testing.assert_close(found[layer], adapter.relevance(wave, layer, predicted), rtol=1e-6, atol=1e-9)
    # the head's relevance by hand: log p_y = z_y - logsumexp(z), so d/dz_i = [i = y] - p_i
    out = adapter.forward(wave[None], [wave.numel()], ["head"])
    z, p = out.captured["head"][0].double(), out.log_probs[0].double().exp()
    onehot = torch.nn.functional.one_hot(torch.tensor(predicted), z.shape[1]).double()
    torch.testing.assert_close(found["head"], z * (onehot - p), rtol=1e-4, atol=1e-5)
    assert not adapter.on_output_grid("conv1") and adapter.on_output_grid("conv3")
    with pytest.raises(SpecError, match="not on the output frame grid"):
        adapter.relevances(wave, ["conv1"])


@pytest.mark.slow
def test_gradnaps_are_the_mean_relevance_of_the_predicted_tokens(scanned_lake):
    from neurolake.corpora.audio import load_audio
    from neurolake.introspect.naps import gradnaps
    from neurolake.models import load_model
    from neurolake.query.groups import create_group

    run = scanned_lake.run("clean")
    first = sorted(run.read_table("utterances").to_pylist(), key=lambda r: r["utterance_id"])[:2]
    create_group(
        scanned_lake, "two", "clean", f"utterance_id IN ('{first[0]['utterance_id']}', '{first[1]['utterance_id']}')"
    )
    create_group(scanned_lake, "two_errors", "clean", f"utterance_id = '{first[0]['utterance_id']}' AND segment_error")
    result = gradnaps(scanned_lake, "clean", groups=["two", "two_errors"], layers=["conv7"], progress=False)
    adapter = load_model("demo")
    rows = []
    for r in first:
        wave = torch.from_numpy(load_audio(r["audio_uri"], adapter.sample_rate))
        targets = adapter.forward(wave[None], [wave.numel()]).log_probs[0].argmax(dim=-1).tolist()
        rows.append(adapter.relevance(wave, "conv7", targets).numpy())
    np.testing.assert_allclose(result.mean["conv7"][0, 0], np.concatenate(rows).mean(axis=0), rtol=1e-6, atol=1e-9)
    with QueryEngine(scanned_lake) as q:
        errors = (
            q.sql(
                "SELECT frame_index FROM frames WHERE run_id = 'clean' AND utterance_id = ? AND segment_error ORDER BY 1",
                [first[0]["utterance_id"]],
            )
            .column("frame_index")
            .to_numpy()
        )
        measure = q.sql("SELECT DISTINCT measure FROM naps WHERE nap_id = ?", [result.nap_id]).column(0).to_pylist()
    np.testing.assert_allclose(result.mean["conv7"][1, 0], rows[0][errors].mean(axis=0), rtol=1e-6, atol=1e-9)
    assert measure == ["relevance"] and result.counts[:, 0].tolist() == [sum(len(r) for r in rows), errors.size]
    # of the reference token instead: the forced alignment's token of each frame
    reference = gradnaps(scanned_lake, "clean", groups=["two"], layers=["conv7"], token="reference", progress=False)
    expected = []
    with QueryEngine(scanned_lake) as q:
        for r in first:
            ref = q.sql(
                "SELECT ref_token FROM frames WHERE run_id = 'clean' AND utterance_id = ? ORDER BY frame_index",
                [r["utterance_id"]],
            ).column(0)
            wave = torch.from_numpy(load_audio(r["audio_uri"], adapter.sample_rate))
            targets = [adapter.tokens.index(t) for t in ref.to_pylist()]
            expected.append(adapter.relevance(wave, "conv7", targets).numpy())
    mean = np.concatenate(expected).mean(axis=0)
    np.testing.assert_allclose(reference.mean["conv7"][0, 0], mean, rtol=1e-6, atol=1e-9)
    assert reference.nap_id != result.nap_id and not np.allclose(mean, result.mean["conv7"][0, 0])
    with pytest.raises(SpecError, match="predicted or reference"):
        gradnaps(scanned_lake, "clean", groups=["two"], layers=["conv7"], token="gold")


@pytest.mark.slow
def test_phoneme_probes_of_the_demo_model_beat_the_baseline_and_the_control_task(scanned_lake, capsys):
    from neurolake.cli import main
    from neurolake.introspect.probe import probe

    result = probe(scanned_lake, "clean", "phoneme", layers=["conv7"], min_per_class=5, progress=False)
    row = result.table.to_pylist()[0]
    assert row["accuracy"] > 3 * row["baseline"] and row["selectivity"] > 0.1, row
    with QueryEngine(scanned_lake) as q:
        stored = q.sql("SELECT accuracy FROM probes WHERE probe_id = ?", [result.probe_id]).column(0).to_pylist()
    assert stored == [row["accuracy"]]
    lake = str(scanned_lake.loc.url)
    # one utterance per speaker here: the speaker is probed from frames, split at random
    argv = ["probe", "--lake", lake, "--run", "clean", "--target", "speaker_id", "--layers", "conv7"]
    assert main([*argv, "--min-per-class", "5"]) == 0
    assert "split random (the target is the speaker, some with one utterance)" in capsys.readouterr().out


@pytest.mark.slow
def test_ablating_the_units_ranked_for_a_token_removes_it_and_random_units_do_not(scanned_lake, capsys):
    from neurolake.cli import main
    from neurolake.introspect.ranking import rank_neurons

    # Which conv7 units tell the frames the faulty model reads as Z? The planted ones; zeroing
    # them in the model takes the planted errors away, random sets of as many units do not.
    result = rank_neurons(
        scanned_lake,
        "z",
        "pred_token",
        layers=["conv7"],
        max_frames=2000,
        min_per_class=5,
        draws=1,
        ablate=4,
        ablate_class="Z",
        controls=3,
        max_utterances=24,
        progress=False,
    )
    top = set(result.order("conv7", "probe", "Z")[:4])
    assert len(top & set(faulty_demo.CONFUSION_UNITS)) >= 3, top
    ablation = result.layers[0]["ablation"]
    assert ablation["cer_change"] < -0.05 and ablation["cer_change"] < min(ablation["control_cer_changes"]) - 0.05
    argv = ["rank", "--lake", str(scanned_lake.loc.url), "--run", "z", "--target", "pred_token", "--layers", "conv7"]
    options = ["--max-frames", "2000", "--min-per-class", "5", "--draws", "1", "--ablate", "4", "--ablate-class"]
    assert main([*argv, *options, "Z", "--controls", "3", "--max-utterances", "24"]) == 0
    out = capsys.readouterr().out
    assert "(reused)" in out and "below every random set" in out
    assert main([*argv, *options, "nope"]) == 2
    assert "is not a class of 'pred_token'" in capsys.readouterr().err
