import torch
import torchaudio

from neurolake.ingest.pipeline import default_layers
from neurolake.models import load_model

LETTERS = ["'"] + [chr(ord("A") + i) for i in range(26)]


def test_default_layers_pick_blocks(tmp_path):
    assert [layer.name for layer in default_layers(load_model("python:tests.models.demo_factory:build"))] == [
        "frontend",
        "conv1",
        "conv2",
        "conv3",
        "head",
    ]
    w2l = torchaudio.models.Wav2Letter(num_classes=29, input_type="waveform", num_features=1)
    torch.save(
        {
            "config": {"num_classes": 29, "input_type": "waveform", "num_features": 1},
            "tokens": ["-", " "] + LETTERS,
            "state_dict": w2l.state_dict(),
        },
        tmp_path / "w.pt",
    )
    adapter = load_model(f"wav2letter:{tmp_path / 'w.pt'}")
    names = [layer.name for layer in default_layers(adapter)]
    # the eleven convolutions of torchaudio's Wav2Letter, not their in-place ReLUs
    modules = dict(adapter.module.named_modules())
    assert len(names) == 11 and all(isinstance(modules[n], torch.nn.Conv1d) for n in names)
    saved = _saved_wav2vec2(tmp_path / "v.pt", [(16, 10, 5), (16, 3, 2)], layers=3, layer_norm=True)
    assert [layer.name for layer in default_layers(load_model(f"wav2vec2:{saved}"))] == [
        f"encoder.transformer.layers.{i}" for i in range(3)
    ]


def test_default_layers_are_the_transformer_layers_however_few(tmp_path):
    """A small or distilled model has fewer transformer layers than its feature encoder has
    convolutions: the transformer layers (they hold attention) are still its blocks."""
    from tests.models.test_hf import _save

    _, path = _save(tmp_path, stable=True)  # three convolutions, two transformer layers
    adapter = load_model(f"hf:{path}")
    modules = dict(adapter.module.named_modules())
    assert len([n for n in modules if n.rpartition(".")[0] == "wav2vec2.feature_extractor.conv_layers"]) == 3
    assert [layer.name for layer in default_layers(adapter)] == [
        "wav2vec2.encoder.layers.0",
        "wav2vec2.encoder.layers.1",
    ]
    geometry = [(16, 10, 5), (16, 3, 2), (16, 3, 2), (16, 2, 2)]  # four convolutions, two layers
    saved = _saved_wav2vec2(tmp_path / "v.pt", geometry, layers=2, layer_norm=False)
    adapter = load_model(f"wav2vec2:{saved}")
    convs = [n for n in dict(adapter.module.named_modules()) if n.rpartition(".")[0] == "feature_extractor.conv_layers"]
    assert len(convs) == 4
    assert [layer.name for layer in default_layers(adapter)] == [
        "encoder.transformer.layers.0",
        "encoder.transformer.layers.1",
    ]


def _saved_wav2vec2(path, convs: list[tuple[int, int, int]], layers: int, layer_norm: bool):
    """A torchaudio wav2vec 2.0 checkpoint with these feature-encoder convolutions and transformer
    layers (layer-normalised, norm first, as the large models; else group-normalised, as base),
    saved to ``path``."""
    cfg = dict(
        extractor_mode="layer_norm" if layer_norm else "group_norm",
        extractor_conv_layer_config=convs,
        extractor_conv_bias=layer_norm,
        encoder_embed_dim=32,
        encoder_projection_dropout=0.0,
        encoder_pos_conv_kernel=8,
        encoder_pos_conv_groups=4,
        encoder_num_layers=layers,
        encoder_num_heads=2,
        encoder_attention_dropout=0.0,
        encoder_ff_interm_features=64,
        encoder_ff_interm_dropout=0.0,
        encoder_dropout=0.0,
        encoder_layer_norm_first=layer_norm,
        encoder_layer_drop=0.0,
        aux_num_out=29,
    )
    state = torchaudio.models.wav2vec2_model(**cfg).state_dict()
    torch.save({"config": cfg, "tokens": ["-", "|"] + LETTERS, "state_dict": state}, path)
    return path
