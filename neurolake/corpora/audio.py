"""Audio headers and decoding for any fsspec URL.

:func:`audio_info` reads only as much of a file as its header needs (sample
count, rate, channels), which is what the planner wants for every utterance of
a corpus before any audio is decoded. :func:`load_audio` decodes a file to the
float32 mono waveform models consume. Both take a row of a Hugging Face ``datasets`` shard
too (``SHARD#COLUMN=ROW``, :mod:`neurolake.corpora.hf_datasets`): that row's encoded bytes are
read, and nothing else of the shard where the format allows it.

Every failure that one bad file can cause (missing, empty, not audio, corrupt,
truncated) raises :class:`neurolake.errors.InputError` naming the file and the
reason, so that a pipeline can record it as an ``errors`` row and go on.
"""

from __future__ import annotations

import functools
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
import soundfile as sf

from neurolake.corpora.records import open_url
from neurolake.errors import InputError, SpecError

if TYPE_CHECKING:
    import torchaudio

__all__ = ["SAMPLE_RATE", "AudioInfo", "audio_info", "load_audio", "resample"]

#: The one sample rate of the project (Hz): audio is decoded to it, every model takes it, and
#: LibriSpeech and the synthetic corpus are recorded at it.
SAMPLE_RATE = 16_000

# Enough for the header of every format libsndfile reads, and small enough
# that an object-store read of a header is one short ranged GET.
_HEADER_BLOCK_BYTES = 64 * 1024

# libsndfile notes a RIFF/WAV data chunk that is longer than the file as
# "data : 64000 (should be 31978)" and then quietly reports the shorter length.
_WAV_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
# Streaming writers leave the data size at 0 or 0xFFFFFFFF; that means unknown, not truncated.
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)


@dataclass(frozen=True)
class AudioInfo:
    """What an audio file's header says.

    Attributes:
        uri: the file.
        num_samples: samples per channel.
        sample_rate: samples per second per channel (Hz).
        channels: number of channels.
        format: container as libsndfile names it (``"FLAC"``, ``"WAV"``, ...).
        subtype: sample encoding (``"PCM_16"``, ``"FLOAT"``, ...).
    """

    uri: str
    num_samples: int
    sample_rate: int
    channels: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        """Duration in seconds."""
        return self.num_samples / self.sample_rate


def audio_info(uri: str, *, storage_options: Mapping[str, Any] | None = None) -> AudioInfo:
    """Read the header of the audio file at ``uri`` without decoding its samples.

    Raises:
        InputError: the file is missing, empty, not audio, holds no samples, or
            (WAV) is shorter than its header says.
    """
    embedded, uri_of_file = _dataset_row(uri, storage_options)
    if embedded is not None:
        with _sound_file(uri, io.BytesIO(embedded)) as sound:
            return _info(uri, sound)
    fs, path = _filesystem(uri_of_file, storage_options)
    try:
        with fs.open(path, "rb", block_size=_HEADER_BLOCK_BYTES) as handle:
            with _sound_file(uri, handle) as sound:
                return _info(uri, sound)
    except FileNotFoundError as exc:
        raise InputError(f"{uri}: audio file not found") from exc


def load_audio(
    uri: str, target_rate: int = SAMPLE_RATE, *, storage_options: Mapping[str, Any] | None = None
) -> np.ndarray:
    """Decode ``uri`` to a mono waveform at ``target_rate``.

    Channels are averaged; other rates are resampled with a windowed-sinc filter
    (:func:`resample`).

    Returns:
        ``[samples]`` float32 in [-1, 1] at ``target_rate`` Hz.

    Raises:
        InputError: the file is missing, empty, not audio, corrupt or truncated.
    """
    if target_rate <= 0:
        raise ValueError(f"target_rate must be positive, got {target_rate}")
    data, uri_of_file = _dataset_row(uri, storage_options)
    if data is None:
        fs, path = _filesystem(uri_of_file, storage_options)
        try:
            # One whole-object read: cheaper on object stores than libsndfile's many small seeks.
            data = fs.cat_file(path)
        except FileNotFoundError as exc:
            raise InputError(f"{uri}: audio file not found") from exc
    with _sound_file(uri, io.BytesIO(data)) as sound:
        info = _info(uri, sound)
        try:
            samples = sound.read(dtype="float32", always_2d=True)
        except (sf.SoundFileError, RuntimeError) as exc:
            raise InputError(f"{uri}: corrupt audio data ({_reason(exc)})") from exc
    if samples.shape[0] != info.num_samples:
        raise InputError(
            f"{uri}: truncated audio: header says {info.num_samples} samples, only {samples.shape[0]} could be decoded"
        )
    mono = samples.mean(axis=1, dtype=np.float32) if info.channels > 1 else samples[:, 0]
    if info.sample_rate == target_rate:
        return np.ascontiguousarray(mono, dtype=np.float32)  # decoded just now: no copy needed
    return resample(mono, info.sample_rate, target_rate)


def resample(samples: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample a ``[samples]`` waveform from ``orig_rate`` to ``target_rate`` Hz.

    Uses torchaudio's band-limited windowed-sinc resampler; the output has
    ``ceil(len(samples) * target_rate / orig_rate)`` samples.

    Returns:
        ``[samples]`` float32, a copy even when the rates are equal.
    """
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if orig_rate == target_rate:
        return samples.copy()
    import torch  # here, not at the top: decoding workers then start without torch

    with torch.no_grad():
        out = _resampler(orig_rate, target_rate)(torch.from_numpy(samples))
    return out.numpy().astype(np.float32, copy=False)


@functools.lru_cache(maxsize=16)
def _resampler(orig_rate: int, target_rate: int) -> torchaudio.transforms.Resample:
    import torchaudio

    # Building the sinc kernel costs more than applying it to seconds of audio;
    # the transform keeps it (the filter of torchaudio.functional.resample, held in float32).
    return torchaudio.transforms.Resample(orig_rate, target_rate)


def _dataset_row(uri: str, storage_options: Mapping[str, Any] | None) -> tuple[bytes | None, str]:
    """A ``datasets`` row address (:mod:`neurolake.corpora.hf_datasets`) as the row's encoded audio,
    or as the URL of the file it names; any other URL as itself."""
    if "#" not in uri:
        return None, uri
    from neurolake.corpora.hf_datasets import parse_row_address, read_row_audio

    if parse_row_address(uri) is None:
        return None, uri
    data, path = read_row_audio(uri, storage_options=storage_options)
    return data, path or uri


def _filesystem(uri: str, storage_options: Mapping[str, Any] | None):
    """The filesystem of one audio file; a URL that cannot be opened is that item's error."""
    try:
        return open_url(uri, storage_options)
    except SpecError as exc:
        raise InputError(f"{uri}: {exc}") from exc


def _sound_file(uri: str, handle: BinaryIO) -> sf.SoundFile:
    try:
        return sf.SoundFile(handle)
    except (sf.SoundFileError, RuntimeError) as exc:
        handle.seek(0, io.SEEK_END)
        if handle.tell() == 0:
            raise InputError(f"{uri}: audio file is empty (0 bytes)") from exc
        raise InputError(f"{uri}: not a readable audio file ({_reason(exc)})") from exc


def _info(uri: str, sound: sf.SoundFile) -> AudioInfo:
    if sound.format == "WAV":
        size = _WAV_DATA_SIZE.search(sound.extra_info)
        if size is not None:
            declared, present = int(size.group(1)), int(size.group(2))
            if declared not in _UNKNOWN_WAV_SIZES and declared > present:
                raise InputError(
                    f"{uri}: truncated WAV file: header declares {declared} bytes of samples, the file holds {present}"
                )
    if sound.frames <= 0:
        raise InputError(f"{uri}: audio file contains no samples")
    return AudioInfo(
        uri=uri,
        num_samples=int(sound.frames),
        sample_rate=int(sound.samplerate),
        channels=int(sound.channels),
        format=sound.format,
        subtype=sound.subtype,
    )


def _reason(exc: Exception) -> str:
    # LibsndfileError's str() embeds the repr of the file object; its error_string is the cause.
    return str(getattr(exc, "error_string", None) or exc).strip()
