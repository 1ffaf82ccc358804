"""Whisper through ``hf:PATH``: a small checkpoint built from a config with random weights, saved
and loaded back through the spec; frame counts, captured encoder layers and transcripts checked
against the model's own feature extractor, hidden states and ``generate``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neurolake.errors import InputError, SpecError
from neurolake.models import UnitEdit, load_model
from tests.models.whisper_tiny import save_tiny_whisper


@pytest.fixture(scope="module")
def whisper(tmp_path_factory):
    path = tmp_path_factory.mktemp("whisper") / "tiny"
    model = save_tiny_whisper(path)
    return model, path, load_model(f"hf:{path}")


def test_frame_counts_follow_the_feature_extractors_own_mask(whisper):
    _, path, adapter = whisper
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor.from_pretrained(path)
    assert adapter.kind == "hf-whisper" and adapter.transcribes and adapter.tokens == []
    assert adapter.frame_rate_hz == 50 and adapter.max_samples == 30 * 16_000
    for n in (1, 159, 160, 161, 319, 320, 321, 16_000, 24_321, 480_000):
        mask = extractor([np.zeros(n, np.float32)], sampling_rate=16_000, return_attention_mask=True).attention_mask
        mel = int(np.asarray(mask).sum())
        assert mel == math.ceil(n / 160)
        assert adapter.num_frames(n) == math.ceil(mel / 2), n
    spec = adapter.spec
    assert spec["transcribes"] is True and spec["tokens"] == [] and spec["config"]["window_s"] == 30


def test_captured_layers_are_the_encoders_hidden_states_trimmed_to_the_audio(whisper):
    model, _, adapter = whisper
    lengths = [24_321, 16_000, 7_777]
    waves = torch.zeros(3, max(lengths))
    rng = torch.Generator().manual_seed(1)
    for i, n in enumerate(lengths):
        waves[i, :n] = 0.1 * torch.randn(n, generator=rng)
    names = [layer.name for layer in adapter.capturable_layers()]
    assert "model.encoder.layers.2" in names and "model.encoder.conv1" in names
    assert not any(".decoder." in name for name in names)  # text positions are not frames
    layers = ["model.encoder.layers.0", "model.encoder.layers.1", "model.encoder.layer_norm", "model.encoder.conv1"]
    out = adapter.forward(waves, lengths, layers)
    counts = [adapter.num_frames(n) for n in lengths]
    assert out.frame_lengths.tolist() == counts and out.log_probs.shape == (3, max(counts), 0)
    features = adapter.features(waves, torch.tensor(lengths))
    with torch.no_grad():
        own = model.get_encoder()(features, output_hidden_states=True)
        conv1 = model.get_encoder().conv1(features)  # [B, d, 3000]: on mel frames, before its GELU
    hidden = own.hidden_states  # [input, after layer 0, after layer 1, final layer norm]
    for b, n in enumerate(counts):
        for name, expected in (
            ("model.encoder.layers.0", hidden[1][b]),
            ("model.encoder.layers.1", hidden[2][b]),
            ("model.encoder.layer_norm", hidden[3][b]),
        ):
            got = out.captured[name][b]
            assert got.shape == (max(counts), 32)
            torch.testing.assert_close(got[:n], expected[:n], atol=1e-5, rtol=1e-5)
            assert not got[n:].any()  # nothing past the audio's frames: the 30 s padding is never kept
        # two mel frames per encoder frame, averaged
        pooled = conv1[b].T[: 2 * n].reshape(n, 2, 32).mean(dim=1)
        torch.testing.assert_close(out.captured["model.encoder.conv1"][b, :n], pooled, atol=1e-5, rtol=1e-5)


def test_transcripts_are_what_generate_gives_and_do_not_depend_on_the_batch(whisper):
    model, path, adapter = whisper
    from transformers import WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(path)
    lengths = [20_000, 11_000]
    waves = torch.zeros(2, 20_000)
    rng = torch.Generator().manual_seed(2)
    for i, n in enumerate(lengths):
        waves[i, :n] = 0.1 * torch.randn(n, generator=rng)
    out = adapter.forward(waves, lengths)
    with torch.no_grad():
        generated = model.generate(adapter.features(waves, torch.tensor(lengths)))
    expected = [t.strip() for t in tokenizer.batch_decode(generated, skip_special_tokens=True)]
    assert out.hypotheses == expected and all(expected)
    alone = [adapter.forward(waves[i : i + 1, :n], [n]).hypotheses[0] for i, n in enumerate(lengths)]
    assert alone == expected


def test_edits_reach_the_encoder_and_long_or_unknown_inputs_are_refused(whisper):
    _, path, adapter = whisper
    wave = 0.1 * torch.randn(1, 16_000, generator=torch.Generator().manual_seed(3))
    plain = adapter.forward(wave, [16_000], ["model.encoder.layers.0", "model.encoder.layers.1"])
    edited = adapter.forward(
        wave,
        [16_000],
        ["model.encoder.layers.0", "model.encoder.layers.1"],
        edits={"model.encoder.layers.0": UnitEdit(units=(0, 5, 9))},
    )
    assert not edited.captured["model.encoder.layers.0"][0, :, [0, 5, 9]].any()
    torch.testing.assert_close(
        edited.captured["model.encoder.layers.0"][0, :, 1:5], plain.captured["model.encoder.layers.0"][0, :, 1:5]
    )
    assert not torch.allclose(edited.captured["model.encoder.layers.1"], plain.captured["model.encoder.layers.1"])
    with pytest.raises(InputError, match="longer than the 30 s window"):
        adapter.forward(torch.zeros(1, 480_001), [480_001])
    with pytest.raises(SpecError, match="not a capturable layer"):
        adapter.forward(wave, [16_000], ["model.decoder.layers.0"])
    with pytest.raises(SpecError, match="no per-frame token posteriors"):
        adapter.relevances(wave[0], ["model.encoder.layers.0"])
    with pytest.raises(SpecError, match="unknown option"):
        load_model(f"hf:{path}?beam=5")
    assert load_model(f"hf:{path}?language=en").spec["config"]["language"] == "en"


@pytest.mark.slow
def test_ingest_through_whisper_stores_trimmed_frames_transcripts_and_timed_labels(tmp_path, whisper):
    """The synthetic corpus through the tiny Whisper: frames trimmed to each utterance, the
    transcript ``generate`` gives, phonemes and words placed by the corpus's own timings, token
    columns null; an utterance longer than the window is an ``errors`` row and the rest goes on."""
    import ray
    import soundfile as sf

    from neurolake.corpora import read_alignments
    from neurolake.corpora.audio import load_audio
    from neurolake.corpora.synth import synthesize_corpus
    from neurolake.ingest.pipeline import ingest
    from neurolake.labels.frames import POSTERIOR_COLUMNS, normalise_transcript
    from neurolake.labels.lexicon import frame_phonemes_from_intervals, intervals_to_arpabet
    from neurolake.query.engine import QueryEngine
    from neurolake.store import Lake

    _, path, adapter = whisper
    synthesize_corpus(str(tmp_path / "c"), n_utterances=3, seed=5, holdout_accent=None, test_fraction=0.0)
    chapter = tmp_path / "c" / "train" / "1000" / "1"
    long = np.random.default_rng(0).normal(0, 0.05, 31 * 16_000).astype(np.float32)
    sf.write(chapter / "1000-1-0001.flac", long, 16_000)
    with open(chapter / "1000-1.trans.txt", "a") as handle:
        handle.write("1000-1-0001 A VERY LONG RECORDING\n")
    if ray.is_initialized():
        ray.shutdown()
    try:
        ingest(
            str(tmp_path / "lake"),
            str(tmp_path / "c" / "train"),
            f"hf:{path}",
            run_id="w",
            progress=False,
        )
    finally:
        ray.shutdown()
    run = Lake.open(str(tmp_path / "lake")).run("w")
    assert run.manifest["model"]["kind"] == "hf-whisper" and run.manifest["model"]["transcribes"] is True
    assert run.layer_names == [f"model.encoder.layers.{i}" for i in range(3)]  # the default: the encoder's layers
    with QueryEngine(Lake.open(str(tmp_path / "lake"))) as q:
        utterances = q.sql("SELECT * FROM utterances WHERE run_id = 'w' ORDER BY utterance_id").to_pylist()
        frames = q.sql("SELECT * FROM frames WHERE run_id = 'w' ORDER BY frame_id").to_pylist()
        errors = q.sql("SELECT utterance_id, stage, message FROM errors WHERE run_id = 'w'").to_pylist()
    assert [e["utterance_id"] for e in errors] == ["1000-1-0001"] and "longer than the 30 s" in errors[0]["message"]
    assert len(utterances) == 3
    timings = {}
    for sidecar in (tmp_path / "c" / "train").rglob("*.phones.jsonl"):
        timings.update(read_alignments(str(sidecar)))
    for u in utterances:
        audio = load_audio(u["audio_uri"])
        assert u["n_frames"] == adapter.num_frames(audio.shape[0]) == math.ceil(audio.shape[0] / 320)
        wave = torch.from_numpy(audio)[None, :]
        stored = run.read_rows("model.encoder.layers.2", np.arange(u["first_frame_id"], u["first_frame_id"] + 5))
        own = adapter.forward(wave, [audio.shape[0]], ["model.encoder.layers.2"])
        np.testing.assert_allclose(stored, own.captured["model.encoder.layers.2"][0, :5].numpy(), atol=2e-3, rtol=2e-3)
        assert u["hypothesis"] == normalise_transcript(own.hypotheses[0]) != ""
        assert u["phoneme_source"] == "sidecar"
        mine = [f for f in frames if f["utterance_id"] == u["utterance_id"]]
        assert len(mine) == u["n_frames"]
        for name in POSTERIOR_COLUMNS:
            assert all(f[name] is None for f in mine), name
        alignment = timings[u["utterance_id"]]
        expected = frame_phonemes_from_intervals(intervals_to_arpabet(alignment.phones), len(mine), 0.02)
        assert [f["phoneme"] for f in mine] == expected.tolist()
        words = u["reference"].split()
        for f in mine:  # each frame's word is the timed word that covers its centre
            centre = (f["frame_index"] + 0.5) * 0.02
            covering = [w for w in alignment.words if w.start_s <= centre < w.end_s]
            assert f["word"] == (normalise_transcript(covering[0].label) if covering else None)
            if f["word"] is not None:
                assert words[f["word_index"]] == f["word"] and f["word_error"] is not None

    # An ablation decodes again through generate: the model as it is gives the stored
    # transcripts, the ablated one what generate gives from the edited encoder.
    from neurolake.introspect.ablation import ablate
    from neurolake.labels.wer import align_sequences

    units = [f"model.encoder.layers.2:{i}" for i in range(16)]
    result = ablate(Lake.open(str(tmp_path / "lake")), "w", units, controls=1, adapter=adapter)
    assert sorted(result.utterances) == [u["utterance_id"] for u in utterances]

    def pooled_cer(hypotheses):
        edits = sum(align_sequences(u["reference"], hypotheses[u["utterance_id"]]).distance for u in utterances)
        return edits / sum(len(u["reference"]) for u in utterances)

    assert result.base.cer == pytest.approx(pooled_cer({u["utterance_id"]: u["hypothesis"] for u in utterances}))
    edit = {"model.encoder.layers.2": UnitEdit(units=tuple(range(16)))}
    ablated = {}
    for u in utterances:
        audio = load_audio(u["audio_uri"])
        out = adapter.forward(torch.from_numpy(audio)[None, :], [audio.shape[0]], edits=edit)
        ablated[u["utterance_id"]] = normalise_transcript(out.hypotheses[0])
    assert result.ablated.cer == pytest.approx(pooled_cer(ablated))

    # A scan needs frames that emit tokens: one line that says so, not "ingest it again".
    from neurolake.errors import SpecError
    from neurolake.introspect.scan import scan

    with pytest.raises(SpecError, match=r"its model transcribes with a decoder \(Whisper\).*scan needs a CTC model"):
        scan(Lake.open(str(tmp_path / "lake")), "w")
