"""Audio headers and decoding: round trips, downmix, resampling, and every kind of bad file."""

from __future__ import annotations

import io

import fsspec
import numpy as np
import pytest
import soundfile as sf

from neurolake.corpora.audio import audio_info, load_audio, resample
from neurolake.errors import InputError


def _sine(frequency_hz: float, rate: int, seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency_hz * t)).astype(np.float32)


def _peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[np.argmax(spectrum)])


def test_flac_round_trip_is_exact_for_16_bit_samples(tmp_path):
    pcm = (np.random.default_rng(0).uniform(-0.9, 0.9, 16_000) * 32767).astype(np.int16)
    path = tmp_path / "a.flac"
    sf.write(path, pcm, 16_000, subtype="PCM_16")

    info = audio_info(str(path))
    assert (info.num_samples, info.sample_rate, info.channels) == (16_000, 16_000, 1)
    assert (info.format, info.subtype) == ("FLAC", "PCM_16")
    assert info.duration_s == pytest.approx(1.0)
    decoded = load_audio(str(path))
    assert decoded.dtype == np.float32 and decoded.shape == (16_000,)
    np.testing.assert_allclose(decoded, pcm / 32768.0, atol=1e-7)


def test_wav_float_round_trip(tmp_path):
    wave = _sine(440, 16_000, 0.5)
    path = tmp_path / "a.wav"
    sf.write(path, wave, 16_000, subtype="FLOAT")
    assert audio_info(str(path)).subtype == "FLOAT"
    np.testing.assert_allclose(load_audio(str(path)), wave, atol=1e-7)


def test_stereo_is_averaged_to_mono(tmp_path):
    left = _sine(300, 16_000, 0.25)
    right = _sine(700, 16_000, 0.25, amplitude=0.2)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([left, right], axis=1), 16_000, subtype="FLOAT")
    assert audio_info(str(path)).channels == 2
    np.testing.assert_allclose(load_audio(str(path)), (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize(("rate", "seconds"), [(8_000, 1.0), (44_100, 0.5), (22_050, 0.3)])
def test_resampling_gives_target_length_and_keeps_the_frequency(tmp_path, rate, seconds):
    wave = _sine(440, rate, seconds)
    path = tmp_path / f"tone_{rate}.wav"
    sf.write(path, wave, rate, subtype="FLOAT")
    decoded = load_audio(str(path), target_rate=16_000)
    assert len(decoded) == int(np.ceil(len(wave) * 16_000 / rate))
    assert _peak_hz(decoded, 16_000) == pytest.approx(440, abs=16_000 / len(decoded) + 1)
    # Energy survives: the tone is far below both Nyquist frequencies.
    assert np.sqrt(np.mean(decoded[200:-200] ** 2)) == pytest.approx(0.5 / np.sqrt(2), rel=0.02)


def test_resample_function_matches_rate_ratio_and_copies_at_equal_rates():
    wave = _sine(100, 22_050, 1.0)
    assert resample(wave, 22_050, 16_000).shape == (16_000,)
    same = resample(wave, 16_000, 16_000)
    assert same is not wave and np.array_equal(same, wave)


def test_reads_fsspec_urls(tmp_path):
    wave = _sine(440, 16_000, 0.1)
    buffer = io.BytesIO()
    sf.write(buffer, wave, 16_000, format="WAV", subtype="FLOAT")
    fsspec.filesystem("memory").pipe_file("/audio-test/tone.wav", buffer.getvalue())
    assert audio_info("memory://audio-test/tone.wav").num_samples == len(wave)
    np.testing.assert_allclose(load_audio("memory://audio-test/tone.wav"), wave, atol=1e-7)


def test_invalid_target_rate():
    with pytest.raises(ValueError):
        load_audio("unused.wav", target_rate=0)


# ------------------------------------------------------------------ bad files


def _encoded(format_: str, seconds: float = 1.0) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, _sine(440, 16_000, seconds), 16_000, format=format_, subtype="PCM_16")
    return buffer.getvalue()


def _bad_files() -> dict[str, tuple[bytes, str, bool]]:
    """name -> (file content, expected reason, whether the header alone shows the problem)."""
    flac = _encoded("FLAC")
    wav = _encoded("WAV")
    corrupt_flac = flac[:200] + bytes(range(256)) * 20 + flac[200 + 256 * 20 :]
    no_samples = io.BytesIO()
    sf.write(no_samples, np.zeros(0, np.float32), 16_000, format="WAV", subtype="PCM_16")
    return {
        "empty.flac": (b"", "empty", True),
        "notes.flac": (b"speaker 19 said hello\n" * 40, "not a readable audio file", True),
        "zero_samples.wav": (no_samples.getvalue(), "no samples", True),
        "header_only.wav": (wav[:44], "truncated", True),
        "truncated.wav": (wav[: len(wav) // 2], "truncated", True),
        "truncated.flac": (flac[: len(flac) // 2], "corrupt", False),
        "corrupt.flac": (corrupt_flac, "corrupt", False),
    }


@pytest.mark.parametrize("name", list(_bad_files()))
def test_bad_files_raise_input_error_naming_file_and_reason(tmp_path, name):
    content, reason, header_shows_it = _bad_files()[name]
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InputError) as caught:
        load_audio(str(path))
    assert str(path) in str(caught.value) and reason in str(caught.value)
    if header_shows_it:
        with pytest.raises(InputError, match=reason):
            audio_info(str(path))
    else:
        assert audio_info(str(path)).num_samples == 16_000


def test_missing_file_raises_input_error(tmp_path):
    for read in (audio_info, load_audio):
        with pytest.raises(InputError, match="not found"):
            read(str(tmp_path / "absent.flac"))
