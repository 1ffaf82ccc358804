"""Hugging Face CTC models through ``hf:PATH``: small models built from configs with random
weights, saved with ``save_pretrained`` and loaded back through the spec, checked against the
model's own outputs, hidden states and frame counts."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from neurolake.errors import SpecError
from neurolake.models import load_model

VOCAB = ["<pad>", "<s>", "</s>", "<unk>", "|", *"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "'"]


def _save(tmp_path, *, stable: bool, name: str = "m"):
    """A two-layer wav2vec 2.0 CTC model: layer-normalised feature encoder with attention masks
    (``stable``), or group-normalised without, as the base checkpoints are."""
    from transformers import Wav2Vec2Config, Wav2Vec2CTCTokenizer, Wav2Vec2FeatureExtractor, Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = Wav2Vec2Config(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        conv_dim=(16, 16, 16),
        conv_stride=(5, 4, 2),
        conv_kernel=(10, 4, 2),
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4,
        feat_extract_norm="layer" if stable else "group",
        do_stable_layer_norm=stable,
        pad_token_id=0,
        ctc_loss_reduction="mean",
    )
    model = Wav2Vec2ForCTC(config).eval()
    path = tmp_path / name
    path.mkdir()
    (tmp_path / f"{name}-vocab.json").write_text(json.dumps({t: i for i, t in enumerate(VOCAB)}))
    Wav2Vec2CTCTokenizer(str(tmp_path / f"{name}-vocab.json"), word_delimiter_token="|").save_pretrained(path)
    Wav2Vec2FeatureExtractor(
        feature_size=1, sampling_rate=16_000, do_normalize=True, return_attention_mask=stable
    ).save_pretrained(path)
    model.save_pretrained(path)
    return model, path


@pytest.mark.parametrize("stable", [True, False])
def test_a_saved_model_loads_through_the_spec_and_matches_its_own_outputs(tmp_path, stable):
    model, path = _save(tmp_path, stable=stable)
    adapter = load_model(f"hf:{path}")
    assert adapter.kind == "hf" and adapter.tokens[0] == "<pad>" and adapter.word_boundary == "|"
    assert adapter.tokens == VOCAB  # the pad token is already first
    for n in (400, 4_000, 16_000, 16_123):
        expected = int(model._get_feat_extract_output_lengths(torch.tensor([n]))[0])
        # 40 samples per frame: (n - 10) // 5 + 1, then (- 4) // 4 + 1, then (- 2) // 2 + 1
        by_hand = (((n - 10) // 5 + 1 - 4) // 4 + 1 - 2) // 2 + 1
        assert adapter.num_frames(n) == expected == by_hand
    assert adapter.frame_rate_hz == pytest.approx(400.0)

    layers = [f"wav2vec2.encoder.layers.{i}" for i in range(2)]
    assert {layer.name for layer in adapter.select_layers(["wav2vec2.encoder.layers.*"])} >= set(layers)
    rng = np.random.default_rng(1)
    waves = [torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1) for n in (16_000, 11_000)]
    batch = torch.zeros(2, 16_000)
    batch[0], batch[1, :11_000] = waves[0], waves[1]
    out = adapter.forward(batch, [16_000, 11_000], layers)
    for i, wave in enumerate(waves):
        normed = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
        with torch.no_grad():
            own = model(normed[None], output_hidden_states=True)
        frames = adapter.num_frames(wave.numel())
        torch.testing.assert_close(
            out.log_probs[i, :frames], torch.log_softmax(own.logits[0], -1), atol=1e-4, rtol=1e-4
        )
        # the first layer's output is hidden state 1; the last one's has the final norm applied
        # after it in the stable-layer-norm variant, so it equals hidden state 2 only without it
        torch.testing.assert_close(out.captured[layers[0]][i, :frames], own.hidden_states[1][0], atol=1e-4, rtol=1e-4)
        if not stable:
            torch.testing.assert_close(
                out.captured[layers[1]][i, :frames], own.hidden_states[2][0], atol=1e-4, rtol=1e-4
            )
    assert out.captured[layers[0]].shape == (2, adapter.num_frames(16_000), 32)


def test_the_blank_moves_first_and_bad_directories_are_one_line(tmp_path):
    from transformers import Wav2Vec2CTCTokenizer

    model, path = _save(tmp_path, stable=True)
    vocab = VOCAB[1:4] + ["<pad>"] + VOCAB[4:]  # pad is id 3 here
    (tmp_path / "v2.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    Wav2Vec2CTCTokenizer(str(tmp_path / "v2.json"), word_delimiter_token="|").save_pretrained(path)
    adapter = load_model(f"hf:{path}")
    assert adapter.tokens == ["<pad>", *VOCAB[1:4], *VOCAB[4:]]
    wave = torch.from_numpy(np.random.default_rng(2).standard_normal(8_000).astype(np.float32))
    normed = (wave - wave.mean()) / torch.sqrt(wave.var(unbiased=False) + 1e-7)
    with torch.no_grad():
        logits = model(normed[None]).logits[0]
    out = adapter.forward(wave[None], [8_000])
    order = [3, 0, 1, 2, *range(4, len(VOCAB))]
    torch.testing.assert_close(out.log_probs[0], torch.log_softmax(logits, -1)[:, order], atol=1e-4, rtol=1e-4)
    with pytest.raises(SpecError, match="no model directory"):
        load_model(f"hf:{tmp_path / 'nothing-here'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SpecError, match="cannot load a CTC (or Whisper )?model"):
        load_model(f"hf:{tmp_path / 'empty'}")


@pytest.mark.slow
def test_ingest_through_a_hugging_face_model_captures_its_encoder_layers(tmp_path):
    from neurolake.query.engine import QueryEngine
    from tests.introspect import synthetic_lake

    _, path = _save(tmp_path, stable=True)
    lake = synthetic_lake(tmp_path, 4, {"h": f"hf:{path}"}, ["wav2vec2.encoder.layers.[0-9]"])
    run = lake.run("h")
    assert run.layer_names == ["wav2vec2.encoder.layers.0", "wav2vec2.encoder.layers.1"]
    assert run.manifest["model"]["kind"] == "hf" and run.manifest["model"]["tokens"][0] == "<pad>"
    adapter = load_model(f"hf:{path}")
    with QueryEngine(lake) as q:
        rows = q.sql("SELECT n_frames, duration_s FROM utterances WHERE run_id = 'h'").to_pylist()
    assert len(rows) == 4
    for r in rows:
        assert r["n_frames"] == adapter.num_frames(round(r["duration_s"] * 16_000))
    assert run.read_rows("wav2vec2.encoder.layers.1", np.arange(10)).shape == (10, 32)
