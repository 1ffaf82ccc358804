"""Ablation: unit edits in the forward pass, and a planted fault that ablation proves."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurolake.errors import SpecError
from neurolake.introspect.ablation import ablate, parse_units
from neurolake.models import UnitEdit, load_model
from tests.introspect import faulty_demo, synthetic_lake

SMALL = "python:tests.models.demo_factory:build"
FAULTY = "python:tests.introspect.faulty_demo:build"


def _wave(seconds: float = 1.3, seed: int = 0) -> torch.Tensor:
    return 0.1 * torch.randn(1, int(16_000 * seconds), generator=torch.Generator().manual_seed(seed))


def test_zeroed_units_are_what_the_rest_of_the_network_sees():
    adapter = load_model(SMALL)
    wave = _wave()
    plain = adapter.forward(wave, [wave.shape[1]], ["conv3"])
    edited = adapter.forward(wave, [wave.shape[1]], ["conv3"], edits={"conv3": UnitEdit((1, 5, 7))})
    captured = edited.captured["conv3"][0]  # [T, units]
    assert torch.count_nonzero(captured[:, [1, 5, 7]]) == 0
    assert torch.count_nonzero(plain.captured["conv3"][0][:, [1, 5, 7]]) > 0
    keep = [u for u in range(captured.shape[1]) if u not in (1, 5, 7)]
    torch.testing.assert_close(captured[:, keep], plain.captured["conv3"][0][:, keep])
    # the head is a 1x1 convolution on conv3: the output follows from the edited activations
    head = adapter.module.head
    with torch.no_grad():
        expected = torch.log_softmax(head(captured.T[None]).transpose(1, 2), dim=-1)
    torch.testing.assert_close(edited.log_probs, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(edited.log_probs, plain.log_probs)


def test_units_can_be_held_at_given_values():
    adapter = load_model(SMALL)
    wave = _wave(seed=1)
    out = adapter.forward(wave, [wave.shape[1]], ["conv3"], edits={"conv3": UnitEdit((0, 2), (0.5, -1.25))})
    captured = out.captured["conv3"][0]
    assert torch.all(captured[:, 0] == 0.5) and torch.all(captured[:, 2] == -1.25)


@pytest.mark.parametrize(
    "edits,message",
    [
        ({"conv3": UnitEdit((10_000,))}, "out of range"),
        ({"nope": UnitEdit((0,))}, "not a capturable layer"),
        ({"conv3": UnitEdit((0, 1), (1.0,))}, "2 units but 1 values"),
    ],
)
def test_bad_edits_are_one_line(edits, message):
    adapter = load_model(SMALL)
    wave = _wave()
    with pytest.raises(SpecError, match=message):
        adapter.forward(wave, [wave.shape[1]], edits=edits)


@pytest.fixture(scope="module")
def faulty_run(tmp_path_factory):
    return synthetic_lake(tmp_path_factory.mktemp("ablation"), 12, {"f": FAULTY}, ["conv7"])


@pytest.mark.slow
def test_ablating_the_planted_units_restores_the_model_and_random_units_do_not(faulty_run):
    planted = faulty_demo.planted_units(load_model(FAULTY).module)
    units = ",".join(f"conv7:{u}" for u in planted)
    result = ablate(faulty_run, "f", units, controls=3, seed=1)
    assert len(result.utterances) == 12
    assert result.base.cer > 0.5  # the fault deletes letters wherever the units fire
    assert result.ablated.cer < 0.3 and result.cer_change < -0.3  # the clean model's rate is about 0.2
    assert len(result.controls) == 3 and all(c.cer > 0.5 for c in result.controls)
    assert min(result.control_cer_changes) > result.cer_change + 0.3
    assert result.units == [f"conv7:{u}" for u in planted]


@pytest.mark.slow
def test_bad_ablation_requests_are_one_line(faulty_run):
    run = faulty_run.run("f")
    with pytest.raises(SpecError, match="did not capture layer 'conv3'"):
        parse_units("conv3:1", run)
    with pytest.raises(SpecError, match="units 0..255"):
        parse_units("conv7:256", run)
    with pytest.raises(SpecError, match="LAYER:UNIT"):
        parse_units("conv7", run)
    with pytest.raises(SpecError, match="ablation mode"):
        ablate(faulty_run, "f", "conv7:1", mode="shuffle")
    with pytest.raises(SpecError, match="other weights"):
        ablate(faulty_run, "f", "conv7:1", adapter=load_model("demo"))
    assert np.isfinite(ablate(faulty_run, "f", "conv7:1", mode="mean", controls=0, max_utterances=2).ablated.cer)


@pytest.mark.slow
def test_ablate_cli(faulty_run, capsys):
    from neurolake.cli import main

    lake = str(faulty_run.loc.url)
    planted = faulty_demo.planted_units(load_model(FAULTY).module)
    units = ",".join(f"conv7:{u}" for u in planted)
    assert main(["ablate", "--lake", lake, "--run", "f", "--units", units, "--controls", "2", "--utterances", "6"]) == 0
    out = capsys.readouterr().out
    assert "4 units, zero" in out and "random units #2" in out and "(below every random set)" in out
    assert main(["ablate", "--lake", lake, "--run", "f", "--units", "conv7:999"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "layer 'conv7' has units 0..255" in err


@pytest.mark.slow
def test_an_ablation_is_stored_queryable_and_reused(faulty_run):
    from neurolake.query.engine import QueryEngine

    first = ablate(faulty_run, "f", "conv7:3,conv7:4", controls=2, max_utterances=3, seed=7)
    assert not first.reused
    with QueryEngine(faulty_run) as q:
        rows = q.sql(
            "SELECT condition, draw, units, cer, cer_change FROM ablations WHERE ablation_id = ? ORDER BY condition, draw",
            [first.ablation_id],
        ).to_pylist()
    assert [(r["condition"], r["draw"]) for r in rows] == [("ablated", 0), ("base", 0), ("control", 1), ("control", 2)]
    assert rows[0]["units"] == ["conv7:3", "conv7:4"] and rows[0]["cer"] == first.ablated.cer
    assert rows[1]["cer_change"] == 0.0 and rows[2]["cer"] == first.controls[0].cer
    assert all(len(r["units"]) == 2 and not {"conv7:3", "conv7:4"} & set(r["units"]) for r in rows[2:])
    again = ablate(faulty_run, "f", "conv7:3,conv7:4", controls=2, max_utterances=3, seed=7)
    assert again.reused and again.ablation_id == first.ablation_id
    assert (again.base, again.ablated, again.controls, again.control_units) == (
        first.base,
        first.ablated,
        first.controls,
        first.control_units,
    )


@pytest.mark.slow
def test_a_mined_pattern_is_ablated_by_its_id(faulty_run, capsys):
    from neurolake.cli import main
    from neurolake.introspect.ablation import pattern_units
    from neurolake.mining.mine import mine
    from neurolake.query.groups import create_group

    create_group(faulty_run, "err", "f", "word_error")
    create_group(faulty_run, "ok", "f", "NOT word_error")
    mined = mine(faulty_run, "err", "ok", binarization="topk:8", min_support=0.2, max_size=2)
    assert mined.patterns.num_rows > 0
    items = mined.patterns.column("items")[0].as_py()
    assert pattern_units(faulty_run, f"{mined.mining_id}/0") == ("f", items)
    lake = str(faulty_run.loc.url)
    args = ["ablate", "--lake", lake, "--pattern", f"{mined.mining_id}/0", "--controls", "1", "--utterances", "2"]
    assert main(args) == 0
    assert f"ablation of {', '.join(items)} in run f" in capsys.readouterr().out
    for bad, message in (
        ([f"{mined.mining_id}/999"], "no pattern"),
        (["nonsense"], "MINING_ID/PATTERN_ID"),
    ):
        assert main(["ablate", "--lake", lake, "--pattern", *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err
    assert main(["ablate", "--lake", lake, "--run", "f"]) == 2
    assert "one of --units L:U,.., --pattern MINING_ID/PATTERN_ID or --finding" in capsys.readouterr().err


@pytest.mark.slow
def test_patching_holds_the_units_at_their_mean_over_a_group(faulty_run):
    from neurolake.introspect.ablation import _group_means
    from neurolake.query.gather import gather_activations
    from neurolake.query.groups import create_group

    create_group(faulty_run, "clean-frames", "f", "NOT word_error AND pred_prob > 0.9")
    means = _group_means(faulty_run, "f", "clean-frames", ["conv7"])
    frames = gather_activations(faulty_run, ["conv7"], group="clean-frames").layers["conv7"]
    np.testing.assert_allclose(means["conv7"], np.asarray(frames, np.float64).mean(axis=0))
    assert means["conv7"].shape == (256,) and means["conv7"].max() > 0
    patched = ablate(faulty_run, "f", "conv7:1", mode="patch", patch_group="clean-frames", controls=0, max_utterances=2)
    zeroed = ablate(faulty_run, "f", "conv7:1", controls=0, max_utterances=2)
    assert patched.ablation_id != zeroed.ablation_id and patched.mode == "patch"
    with pytest.raises(SpecError, match="--patch-group"):
        ablate(faulty_run, "f", "conv7:1", mode="patch")
    with pytest.raises(SpecError, match="--patch-group"):
        ablate(faulty_run, "f", "conv7:1", patch_group="clean-frames")


def test_the_summary_weighs_the_effect_against_the_random_sets():
    from neurolake.introspect.ablation import AblationResult, Scores
    from neurolake.render import format_ablation

    def result(ablated_cer, slice_frames=None):
        return AblationResult(
            run_id="r",
            ablation_id="a",
            units=["conv7:1"],
            mode="zero",
            utterances=["u"],
            base=Scores(0.30, 0.5, 100 if slice_frames is not None else None),
            ablated=Scores(ablated_cer, 0.5, slice_frames),
            controls=[
                Scores(0.30, 0.5, 98 if slice_frames is not None else None),
                Scores(0.31, 0.5, 101 if slice_frames is not None else None),
            ],
            control_units=[["conv7:2"], ["conv7:3"]],
            slice="x" if slice_frames is not None else None,
        )

    # controls change the CER by +0.000 .. +0.010 (spread 0.01)
    assert "-0.100 (below every random set)" in format_ablation(result(0.20))
    assert "-0.005 (below every random set, by less than the random sets' spread: weak evidence)" in format_ablation(
        result(0.295)
    )
    assert "within the random sets' range" in format_ablation(result(0.305))
    text = format_ablation(result(0.20, slice_frames=3))
    assert "slice frames" in text and "slice: x" in text
    assert "slice's frames by -2% .. +1%; these units by -97% (below every random set)" in text
