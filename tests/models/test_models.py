"""Model adapters: exact frame counts, captured values against hand-run layer stacks,
padded batches against one-by-one runs, layer selection and spec errors.

Every adapter runs its real architecture: the demo network, torchaudio's Wav2Letter
(waveform and MFCC inputs) and wav2vec2 (tiny widths, the real seven-layer feature
extractor) saved to local checkpoints and loaded through ``load_model``, and a
``python:`` factory model. Weights are random; what is tested does not depend on them.
"""

from __future__ import annotations

import hashlib
import json
import random
import urllib.error

import pytest
import torch
import torchaudio

from neurolake.errors import InputError, SpecError
from neurolake.models import DemoAdapter, LayerInfo, load_model
from neurolake.models.demo import (
    DEMO_TOKENS,
    DemoModelConfig,
    build_demo_model,
    read_demo_checkpoint,
    save_demo_checkpoint,
)

FACTORY_SPEC = "python:tests.models.toy_factory:build"
WAV2VEC2_TOKENS = ["-", "|", "E", "T", "A", "O", "'"]


def _wav2vec2_config(extractor_mode: str, layer_norm_first: bool) -> dict:
    # The real feature extractor geometry (strides 5, 2 x 6: 320 samples per frame),
    # with 8 channels instead of 512 so that it runs in milliseconds.
    return dict(
        extractor_mode=extractor_mode,
        extractor_conv_layer_config=[(8, 10, 5)] + [(8, 3, 2)] * 4 + [(8, 2, 2)] * 2,
        extractor_conv_bias=extractor_mode == "layer_norm",
        encoder_embed_dim=16,
        encoder_projection_dropout=0.1,
        encoder_pos_conv_kernel=8,
        encoder_pos_conv_groups=2,
        encoder_num_layers=2,
        encoder_num_heads=2,
        encoder_attention_dropout=0.1,
        encoder_ff_interm_features=32,
        encoder_ff_interm_dropout=0.1,
        encoder_dropout=0.1,
        encoder_layer_norm_first=layer_norm_first,
        encoder_layer_drop=0.0,
        aux_num_out=len(WAV2VEC2_TOKENS),
    )


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Locally saved checkpoints of the real architectures: name -> path."""
    root = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    paths = {}
    for name, input_type, num_features in (("w2l_wave", "waveform", 1), ("w2l_mfcc", "mfcc", 13)):
        model = torchaudio.models.Wav2Letter(len(DEMO_TOKENS), input_type, num_features)
        config = {"num_classes": len(DEMO_TOKENS), "input_type": input_type, "num_features": num_features}
        if input_type == "mfcc":
            config["features"] = {"n_mels": 40}
        paths[name] = root / f"{name}.pt"
        torch.save({"config": config, "tokens": list(DEMO_TOKENS), "state_dict": model.state_dict()}, paths[name])
    for name, mode, first, normalize in (
        ("w2v_group", "group_norm", False, False),
        ("w2v_layer", "layer_norm", True, True),
    ):
        config = _wav2vec2_config(mode, first)
        model = torchaudio.models.wav2vec2_model(**config)
        paths[name] = root / f"{name}.pt"
        torch.save(
            {
                "config": config,
                "tokens": WAV2VEC2_TOKENS,
                "state_dict": model.state_dict(),
                "normalize_waveform": normalize,
            },
            paths[name],
        )
    return paths


@pytest.fixture(scope="module")
def adapters(checkpoints):
    """Every adapter under test, by short name."""
    return {
        "demo": DemoAdapter(build_demo_model(seed=0)),
        "w2l_wave": load_model(f"wav2letter:{checkpoints['w2l_wave']}"),
        "w2l_mfcc": load_model(f"wav2letter:{checkpoints['w2l_mfcc']}"),
        "w2v_group": load_model(f"wav2vec2:{checkpoints['w2v_group']}"),
        "w2v_layer": load_model(f"wav2vec2:{checkpoints['w2v_layer']}"),
        "python": load_model(FACTORY_SPEC),
    }


ADAPTERS = ["demo", "w2l_wave", "w2l_mfcc", "w2v_group", "w2v_layer", "python"]


def _speech_like(n: int, seed: int) -> torch.Tensor:
    """``[n]`` float32: a random-pitch tone in noise, loud enough to drive every layer."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16_000
    pitch = 100 + 200 * torch.rand(1, generator=generator)
    return (0.3 * torch.sin(2 * torch.pi * pitch * t) + 0.05 * torch.randn(n, generator=generator)).float()


def _batch(lengths: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    waveforms = torch.zeros(len(lengths), max(lengths) + 37)  # extra padding past the longest, too
    for row, n in enumerate(lengths):
        waveforms[row, :n] = _speech_like(n, seed + row)
    return waveforms, torch.tensor(lengths)


def _on_grid(layer: torch.Tensor, pool: int, frames: int) -> torch.Tensor:
    """``[B, L, U]`` -> ``[B, frames, U]``: mean over windows of ``pool`` frames, zeros past the end."""
    padded = torch.nn.functional.pad(layer, (0, 0, 0, max(0, frames * pool - layer.shape[1])))[:, : frames * pool]
    return padded.reshape(layer.shape[0], frames, pool, layer.shape[2]).mean(dim=2)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    # Float32 rounding differs between batch shapes; scale the absolute slack to the layer's range.
    scale = max(1.0, float(expected.detach().abs().max())) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5 * scale)


# ------------------------------------------------------------------ frame counts


@pytest.mark.parametrize("name", ADAPTERS)
def test_num_frames_equals_the_real_output_length(adapters, name):
    adapter = adapters[name]
    rng = random.Random(name)
    lengths = [rng.randint(adapter.min_samples, 3_000) for _ in range(97)]
    lengths += [rng.randint(3_000, 24_000) for _ in range(3)]
    for n in lengths:
        out = adapter.forward(_speech_like(n, n)[None], [n])
        # log_probs is the network's own output, not cut to num_frames.
        assert out.log_probs.shape[1] == adapter.num_frames(n) >= 1, n
    assert adapter.num_frames(adapter.min_samples - 1) == 0
    with pytest.raises(InputError, match="too short"):
        adapter.forward(torch.zeros(1, adapter.min_samples - 1), [adapter.min_samples - 1])


@pytest.mark.parametrize("name", ADAPTERS)
def test_frame_rate_is_50_hz_and_spec_is_json(adapters, name):
    adapter = adapters[name]
    assert adapter.frame_shift_s == pytest.approx(0.02)
    assert adapter.sample_rate == 16_000
    spec = json.loads(json.dumps(adapter.spec))
    assert spec["tokens"] == adapter.tokens and spec["frame_rate_hz"] == pytest.approx(50.0)
    assert spec["kind"] == adapter.kind and len(spec["weights_sha256"]) == 64
    assert adapter.tokens[0] in ("-",) and adapter.word_boundary in (" ", "|")


def test_weights_hash_is_the_checkpoint_files(adapters, checkpoints):
    assert adapters["w2l_wave"].weights_sha256 == hashlib.sha256(checkpoints["w2l_wave"].read_bytes()).hexdigest()
    assert adapters["w2v_group"].spec["spec"] == f"wav2vec2:{checkpoints['w2v_group']}"


# ------------------------------------------------------- padded batch = one by one


@pytest.mark.parametrize("name", ADAPTERS)
def test_padded_batch_equals_one_by_one_on_valid_frames(adapters, name):
    adapter = adapters[name]
    layers = adapter.capturable_layers()
    lengths = [9_001, 3_333, adapter.min_samples + 5, 6_400]
    waveforms, lens = _batch(lengths)
    batch = adapter.forward(waveforms, lens, layers)
    assert batch.frame_lengths.tolist() == [adapter.num_frames(n) for n in lengths]
    for row, n in enumerate(lengths):
        alone = adapter.forward(waveforms[row : row + 1, :n], [n], layers)
        frames = alone.log_probs.shape[1]
        _assert_close(batch.log_probs[row, :frames], alone.log_probs[0])
        for layer in layers:
            captured = batch.captured[layer.name]
            assert captured.shape == (len(lengths), max(batch.frame_lengths), layer.units)
            _assert_close(captured[row, :frames], alone.captured[layer.name][0])
            assert not captured[row, frames:].any()  # padding frames are zero


@pytest.mark.parametrize("name", ADAPTERS)
def test_float16_capture_is_the_float32_capture_converted(adapters, name):
    """What the lake stores: each layer recorded in float16 where its frames are not pooled
    (one copy), else pooled in float32 first, equals the float32 capture converted, bit for
    bit; C order, zero past every utterance's frames."""
    adapter = adapters[name]
    layers = adapter.capturable_layers()
    lengths = [9_001, 3_333, adapter.min_samples + 5, 6_400]
    waveforms, lens = _batch(lengths)
    wide = adapter.forward(waveforms, lens, layers)
    half = adapter.forward(waveforms, lens, layers, capture_dtype=torch.float16)
    for layer in layers:
        got, want = half.captured[layer.name], wide.captured[layer.name].to(torch.float16)
        assert got.dtype == torch.float16 and got.is_contiguous() and torch.equal(got, want), layer.name
        for row, frames in enumerate(half.frame_lengths.tolist()):
            assert not got[row, frames:].any()


# ------------------------------------------------------ captured = manual forward


def test_demo_captures_equal_a_hand_run_layer_stack(adapters):
    adapter = adapters["demo"]
    model = adapter.module
    n = 12_345
    waveform = _speech_like(n, 1)[None]
    names = ["frontend", "conv1.conv", "conv1", "conv2.conv", "conv5", "head"]
    out = adapter.forward(waveform, [n], names)
    frames = adapter.num_frames(n)
    with torch.no_grad():
        features = torch.log1p(model.frontend.mel(waveform) / model.config.log_floor)
        conv1_pre = model.conv1.conv(features)
        x = torch.relu(conv1_pre)
        conv2_pre = model.conv2.conv(x)
        x = torch.relu(conv2_pre)
        for block in (model.conv3, model.conv4, model.conv5):
            x = torch.relu(block.conv(x))
        conv5 = x
        for block in model.blocks[5:]:
            x = torch.relu(block.conv(x))
        logits = model.head(x)
    # The 100 frames/s layers are averaged in pairs onto the 50 frames/s grid.
    _assert_close(out.captured["frontend"], _on_grid(features.transpose(1, 2), 2, frames))
    _assert_close(out.captured["conv1.conv"], _on_grid(conv1_pre.transpose(1, 2), 2, frames))
    _assert_close(out.captured["conv1"], _on_grid(torch.relu(conv1_pre).transpose(1, 2), 2, frames))
    _assert_close(out.captured["conv2.conv"], conv2_pre.transpose(1, 2))
    _assert_close(out.captured["conv5"], conv5.transpose(1, 2))
    _assert_close(out.captured["head"], logits.transpose(1, 2))
    _assert_close(out.log_probs, torch.log_softmax(logits, dim=1).transpose(1, 2))


def test_wav2letter_captures_survive_in_place_relu(adapters):
    adapter = adapters["w2l_wave"]
    acoustic = adapter.module.acoustic_model
    n = 8_000
    waveform = _speech_like(n, 2)[None]
    out = adapter.forward(
        waveform, [n], ["acoustic_model.0.0", "acoustic_model.1.0", "acoustic_model.1.1", "acoustic_model.1.2"]
    )
    frames = adapter.num_frames(n)
    with torch.no_grad():
        first = acoustic[0][0](waveform[:, None])  # 100 frames/s
        second = acoustic[1][0](torch.relu(first))  # 50 frames/s, one frame short of the output
        third = acoustic[1][2](torch.relu(second))
    assert second.shape[2] == frames - 1
    # The hook on the Conv1d runs before ReLU(inplace=True) overwrites its output.
    assert (out.captured["acoustic_model.1.0"] < 0).any()
    _assert_close(out.captured["acoustic_model.0.0"], _on_grid(first.transpose(1, 2), 2, frames))
    _assert_close(out.captured["acoustic_model.1.0"][:, :-1], second.transpose(1, 2))
    _assert_close(out.captured["acoustic_model.1.1"][:, :-1], torch.relu(second).transpose(1, 2))
    _assert_close(out.captured["acoustic_model.1.2"][:, :-1], third.transpose(1, 2))
    assert not out.captured["acoustic_model.1.0"][:, -1].any()  # the layer has no last frame: zero-filled
    with torch.no_grad():
        reference = adapter.module(waveform[:, None]).transpose(1, 2)
    _assert_close(out.log_probs, reference)


def test_wav2letter_mfcc_front_end_and_captures(adapters):
    adapter = adapters["w2l_mfcc"]
    assert adapter.features == {"n_fft": 400, "hop_length": 160, "n_mels": 40}
    assert adapter.spec["config"]["features"] == adapter.features
    n = 7_777
    waveform = _speech_like(n, 3)[None]
    out = adapter.forward(waveform, [n], ["acoustic_model.0", "acoustic_model.2"])
    mfcc = torchaudio.transforms.MFCC(
        16_000,
        n_mfcc=13,
        log_mels=True,
        melkwargs={"n_fft": 400, "hop_length": 160, "n_mels": 40, "center": True, "pad_mode": "constant"},
    )
    with torch.no_grad():
        features = mfcc(waveform)
        assert features.shape[2] == n // 160 + 1
        first = adapter.module.acoustic_model[0](features)
        second = adapter.module.acoustic_model[2](torch.relu(first))
        reference = adapter.module(features).transpose(1, 2)
    _assert_close(out.captured["acoustic_model.0"][:, :-1], first.transpose(1, 2))
    _assert_close(out.captured["acoustic_model.2"][:, :-1], second.transpose(1, 2))
    _assert_close(out.log_probs, reference)


@pytest.mark.parametrize("name", ["w2v_group", "w2v_layer"])
def test_wav2vec2_captures_equal_the_model_internals(adapters, name):
    adapter = adapters[name]
    model = adapter.module
    n = 10_000
    waveform = _speech_like(n, 4)[None]
    layers = [
        "feature_extractor.conv_layers.0",
        "feature_extractor.conv_layers.5",
        "encoder.feature_projection",
        "encoder.transformer.layers.0",
        "encoder.transformer.layers.1",
    ]
    out = adapter.forward(waveform, [n], layers)
    frames = adapter.num_frames(n)
    with torch.no_grad():
        x = torch.nn.functional.layer_norm(waveform, waveform.shape) if adapter.normalize_waveform else waveform
        conv0 = model.feature_extractor.conv_layers[0](x[:, None], None)[0]
        features, _ = model.feature_extractor(x, None)
        projection = model.encoder.feature_projection(features)
        transformer, _ = model.extract_features(x)
        emissions, _ = model(x)
    geometry = {layer.name: layer.units for layer in adapter.capturable_layers()}
    assert geometry["feature_extractor.conv_layers.0"] == 8 and geometry["encoder.transformer.layers.1"] == 16
    # 3200 frames/s pooled by 64 onto 50 frames/s; the layer covers every window in full.
    assert conv0.shape[2] >= 64 * frames
    _assert_close(out.captured["feature_extractor.conv_layers.0"], _on_grid(conv0.transpose(1, 2), 64, frames))
    _assert_close(out.captured["encoder.feature_projection"], projection)
    _assert_close(out.captured["encoder.transformer.layers.0"], transformer[0])
    _assert_close(out.captured["encoder.transformer.layers.1"], transformer[1])
    _assert_close(out.log_probs, torch.log_softmax(emissions, dim=-1))
    assert adapter.per_utterance_features == (name == "w2v_group")


def test_factory_captures_tuple_outputs_and_finer_layers(adapters):
    adapter = adapters["python"]
    model = adapter.module
    units = {layer.name: layer.units for layer in adapter.capturable_layers()}
    assert units == {"encoder": 6, "act": 6, "downsample": 8, "rnn": 8, "out": 5}
    n = 5_000
    waveform = _speech_like(n, 5)[None]
    out = adapter.forward(waveform, [n], [LayerInfo("encoder", "encoder", 6), "rnn", "out"])
    frames = adapter.num_frames(n)
    with torch.no_grad():
        encoder = model.encoder(waveform[:, None])  # [B, units, T] at 200 frames/s
        rnn, _ = model.rnn(model.downsample(torch.tanh(encoder)).transpose(1, 2))  # [B, T, units]
    _assert_close(out.captured["encoder"], _on_grid(encoder.transpose(1, 2), 4, frames))
    _assert_close(out.captured["rnn"], rnn)
    _assert_close(out.captured["out"], model.out(rnn))


# --------------------------------------------------------------------- layer globs


def test_select_layers_by_glob(adapters):
    w2v = adapters["w2v_group"]
    assert [layer.name for layer in w2v.select_layers(["encoder.transformer.layers.?"])] == [
        "encoder.transformer.layers.0",
        "encoder.transformer.layers.1",
    ]
    chosen = w2v.select_layers(["feature_extractor.conv_layers.[0-1]", "encoder.feature_projection"])
    assert [layer.name for layer in chosen] == [
        "feature_extractor.conv_layers.0",
        "feature_extractor.conv_layers.1",
        "encoder.feature_projection",
    ]
    assert all(layer.module_path == layer.name for layer in chosen)
    demo = adapters["demo"]
    assert [layer.name for layer in demo.select_layers(["conv?", "head"])] == [
        *(f"conv{i}" for i in range(1, 8)),
        "head",
    ]
    # Overlapping globs give each layer once, in module order.
    assert [layer.name for layer in demo.select_layers(["head", "conv1*", "conv1"])] == [
        "conv1",
        "conv1.conv",
        "conv1.act",
        "conv1.dropout",
        "head",
    ]


def test_select_layers_without_a_match_lists_what_exists(adapters):
    with pytest.raises(SpecError, match=r"'conv9' matches no capturable layer.*available: frontend"):
        adapters["demo"].select_layers(["conv1", "conv9"])
    with pytest.raises(SpecError, match="not a capturable layer"):
        adapters["python"].forward(torch.zeros(1, 4000), [4000], ["nonexistent"])


# ------------------------------------------------------------------------ inputs


def test_bad_batches_are_input_errors(adapters):
    adapter = adapters["python"]
    with pytest.raises(InputError, match=r"\[batch, samples\]"):
        adapter.forward(torch.zeros(4000), [4000])
    with pytest.raises(InputError, match="lie in"):
        adapter.forward(torch.zeros(2, 4000), [4000, 4001])
    with pytest.raises(InputError, match="matching"):
        adapter.forward(torch.zeros(2, 4000), [4000])


# ------------------------------------------------------------------------- specs


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "empty model spec"),
        ("resnet", "unknown model spec 'resnet'"),
        ("wav2letter:", "unknown model spec"),
        ("wav2letter:/nonexistent/model.pt", "not found"),
        ("wav2vec2:NOT_A_BUNDLE", "not an ASR bundle"),
        ("wav2vec2:WAV2VEC2_BASE", "not an ASR bundle"),
        ("python:tests.models.toy_factory", "python:MODULE:FACTORY"),
        ("python:no_such_module_anywhere:build", "cannot import"),
        ("python:tests.models.toy_factory:missing", "has no 'missing'"),
        ("python:tests.models.toy_factory:build_not_a_module", "not a torch.nn.Module"),
    ],
)
def test_bad_specs_are_one_line_spec_errors(spec, message):
    with pytest.raises(SpecError, match=message) as error:
        load_model(spec)
    assert "\n" not in str(error.value)


def test_malformed_checkpoints_are_spec_errors(tmp_path, checkpoints):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(SpecError, match="not a readable checkpoint"):
        load_model(f"wav2letter:{garbage}")
    partial = tmp_path / "partial.pt"
    torch.save({"config": {"num_classes": 29}}, partial)
    with pytest.raises(SpecError, match=r"lacks \['tokens', 'state_dict'\]"):
        load_model(f"wav2letter:{partial}")
    mismatched = tmp_path / "mismatched.pt"
    checkpoint = torch.load(checkpoints["w2v_group"], weights_only=True)
    checkpoint["config"]["encoder_embed_dim"] = 32
    torch.save(checkpoint, mismatched)
    with pytest.raises(SpecError, match="do not fit"):
        load_model(f"wav2vec2:{mismatched}")
    short_tokens = tmp_path / "short_tokens.pt"
    checkpoint = torch.load(checkpoints["w2v_group"], weights_only=True)
    checkpoint["tokens"] = ["-", "|", "A"]
    torch.save(checkpoint, short_tokens)
    with pytest.raises(SpecError, match="3 tokens for a model with 7 outputs"):
        load_model(f"wav2vec2:{short_tokens}")


def test_factory_with_a_wrong_num_frames_is_caught():
    adapter = load_model("python:tests.models.toy_factory:build_wrong_frames")
    with pytest.raises(SpecError, match="num_frames"):
        adapter.capturable_layers()


def test_bundle_download_failure_is_a_clear_spec_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torchaudio.pipelines._wav2vec2.utils, "load_state_dict_from_url", offline)
    with pytest.raises(SpecError, match="could not download the weights of WAV2VEC2_ASR_BASE_960H"):
        load_model("wav2vec2:WAV2VEC2_ASR_BASE_960H")


# -------------------------------------------------------------------------- demo


def test_demo_without_trained_weights_says_how_to_train(monkeypatch):
    from neurolake.models import demo

    monkeypatch.setattr(demo, "_DEMO_RESOURCE", "data/no_such_model.pt")
    with pytest.raises(SpecError, match=r"python -m neurolake\.models\.train_demo"):
        load_model("demo")


def test_demo_checkpoint_round_trip(tmp_path):
    model = build_demo_model(DemoModelConfig(), seed=3)
    path = tmp_path / "demo.pt"
    size = save_demo_checkpoint(str(path), model, {"results": {"test": {"cer": 0.5}}})
    assert size < 20e6 and size == path.stat().st_size
    assert 1e6 < sum(p.numel() for p in model.parameters()) < 3e6
    loaded, tokens, config = read_demo_checkpoint(path.read_bytes(), str(path))
    assert tokens == list(DEMO_TOKENS) and len(tokens) == 29
    assert config["training"]["results"]["test"]["cer"] == 0.5
    waveform = _speech_like(9_000, 6)[None]
    with torch.no_grad():
        torch.testing.assert_close(loaded(waveform), model(waveform), rtol=0, atol=0)
    adapter = DemoAdapter(loaded, tokens=tokens, config=config)
    assert adapter.spec["config"]["architecture"] == DemoModelConfig().to_dict()


def test_bundled_demo_model_loads():
    from neurolake.models import demo

    resource = demo.resources.files("neurolake.models").joinpath(demo._DEMO_RESOURCE)
    data = resource.read_bytes()
    assert len(data) <= 20 * 1024 * 1024
    adapter = load_model("demo")
    assert adapter.tokens == list(DEMO_TOKENS)
    assert adapter.weights_sha256 == hashlib.sha256(data).hexdigest()
    results = adapter.spec["config"]["training"]["results"]
    assert results["test"]["cer"] <= 0.25 and results["test-holdout"]["cer"] > results["test"]["cer"]


def test_bundled_demo_model_recognises_new_sentences(tmp_path):
    from neurolake.corpora import open_corpus
    from neurolake.corpora.audio import load_audio
    from neurolake.corpora.synth import synthesize_corpus
    from neurolake.labels.frames import normalise_transcript
    from neurolake.labels.wer import cer

    # sentences the model never heard (another seed), spoken by the training accents
    synthesize_corpus(str(tmp_path / "c"), n_utterances=40, seed=987, holdout_accent=None, test_fraction=0.0)
    adapter = load_model("demo")
    refs, hyps = [], []
    for utt in open_corpus(str(tmp_path / "c" / "train")):
        audio = torch.from_numpy(load_audio(utt.audio_uri))
        out = adapter.forward(audio[None], [audio.numel()], [])
        ids = out.log_probs[0, : int(out.frame_lengths[0])].argmax(-1).tolist()
        collapsed = [t for i, t in enumerate(ids) if t != 0 and (i == 0 or t != ids[i - 1])]
        hyps.append("".join(adapter.tokens[t] for t in collapsed).strip())
        refs.append(normalise_transcript(utt.transcript))
    total = sum(len(r) for r in refs)
    corpus_cer = sum(cer(r, h) * len(r) for r, h in zip(refs, hyps, strict=False)) / total
    assert 0.0 < corpus_cer <= 0.25, corpus_cer  # 0.0 would mean the references leaked into the test
