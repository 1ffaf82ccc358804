"""Speech synthesis with espeak-ng, driven through ctypes.

The ``espeakng-loader`` wheel ships ``libespeak-ng`` and its voice data, so no
system package is needed. The library runs synchronously into a callback that
collects the samples (22050 Hz, 16-bit mono) and the synthesis events; phoneme
events (enabled at initialisation, with IPA names) give the sample at which each
phoneme starts, and word events the text span of each word. Those are the
ground-truth timings that :mod:`neurolake.corpora.synth` stores next to the audio.

espeak-ng is one global C library per process, so every call holds a lock.

espeak-ng also keeps signal state from one call to the next (glottal phase,
pitch flutter, filter memories): the same text with the same voice comes out a
few samples different, and its phoneme events a few samples shifted, on its
second call. Output is therefore a function of
everything synthesised before in the process. :func:`synthesize_in_subprocess`
runs a batch in a fresh process, so that a batch always gives the same bytes;
run as ``python -m neurolake.corpora.espeak``, this module is that process and
answers a pickled list of :class:`SpeechRequest` on stdin with a pickled
``("speech", Speech)`` per request on stdout.
"""

from __future__ import annotations

import ctypes
import os
import pickle
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import espeakng_loader
import numpy as np

from neurolake.corpora import Interval
from neurolake.errors import NeurolakeError, SpecError

__all__ = [
    "EnglishVoice",
    "Speech",
    "SpeechRequest",
    "VARIANTS",
    "english_voices",
    "synthesize_in_subprocess",
    "synthesize_speech",
]

#: Voice variants shipped with espeak-ng that sound like plain human voices
#: (male 1-7, female 1-5); the others are effects (whisper, robots, ...).
VARIANTS: tuple[str, ...] = ("m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5")

# Constants of espeak-ng's speak_lib.h.
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_PHONEME_EVENTS = 0x0001
_INITIALIZE_PHONEME_IPA = 0x0002
_INITIALIZE_DONT_EXIT = 0x8000  # report errors instead of calling exit()
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0

# IPA stress marks go: stress is a property of the syllable, not a different
# phone, and keeping them would split every vowel class in three. A few voices
# write the length mark as an ASCII colon; it becomes the IPA one.
_PHONE_CLEANUP = str.maketrans({"ˈ": None, "ˌ": None, ":": "ː"})
_PUNCTUATION = '.,;:!?"()'
# Language codes of English voices that are scripts, not accents.
_NOT_ACCENTS = frozenset({"en-shaw"})


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character index
        ("length", ctypes.c_int),  # word length in characters
        ("audio_position", ctypes.c_int),  # milliseconds
        ("sample", ctypes.c_int),  # sample index from the start of the synthesis
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated code)*, then a 0 byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass(frozen=True)
class EnglishVoice:
    """An English accent in the shipped espeak-ng data.

    Attributes:
        accent: its language code, the key used throughout (``"en-gb-scotland"``).
        name: espeak-ng's name for it (``"English (Scotland)"``).
        identifier: its voice file (``"gmw/en-GB-scotland"``).
    """

    accent: str
    name: str
    identifier: str


@dataclass(frozen=True)
class SpeechRequest:
    """One utterance to synthesise.

    Attributes:
        text: what to say; sentences separated by ``". "``.
        accent: language code of an :class:`EnglishVoice`.
        variant: voice variant from :data:`VARIANTS`.
        rate_wpm: speaking rate in words per minute (espeak-ng accepts 80-450).
        pitch: base pitch, 0-100 (50 is the voice's normal pitch).
        pitch_range: intonation range, 0-100 (0 is monotone, 50 normal).
        noise_seed: seed of espeak-ng's noise generator (breathy variants use it).
    """

    text: str
    accent: str = "en-us"
    variant: str = "m1"
    rate_wpm: int = 175
    pitch: int = 50
    pitch_range: int = 50
    noise_seed: int = 0


@dataclass(frozen=True)
class Speech:
    """Synthesised speech with its ground-truth timings.

    Attributes:
        samples: ``[samples]`` int16 waveform at ``sample_rate``.
        sample_rate: Hz (22050 for espeak-ng).
        phones: phone intervals in seconds, IPA labels without stress marks, in
            time order; pauses are gaps, not intervals.
        words: word intervals in seconds (first phone start to last phone end),
            labels as written in the request; where espeak-ng speaks several
            words as one unit ("in the") one interval carries them all.
    """

    samples: np.ndarray
    sample_rate: int
    phones: tuple[Interval, ...]
    words: tuple[Interval, ...]

    @property
    def duration_s(self) -> float:
        """Duration of the waveform in seconds."""
        return len(self.samples) / self.sample_rate


class _Espeak:
    """The process's espeak-ng library, initialised once. Callers hold ``_LOCK``."""

    def __init__(self) -> None:
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))
        lib.espeak_GetCurrentVoice.restype = ctypes.POINTER(_Voice)
        options = _INITIALIZE_PHONEME_EVENTS | _INITIALIZE_PHONEME_IPA | _INITIALIZE_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, espeakng_loader.get_data_path().encode(), options)
        if rate <= 0:
            raise NeurolakeError("espeak-ng failed to initialise; reinstall the espeakng-loader package")
        self.lib = lib
        self.sample_rate = rate
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[int, int, int, int, str]] = []
        # ctypes calls back through this object; it must live as long as the library does.
        self._callback = _SynthCallback(self._collect)
        lib.espeak_SetSynthCallback(self._callback)
        self.voices = self._list_english_voices()

    def _collect(self, wav, count, events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            event = events[i]
            name = event.id.string.decode("utf-8", errors="replace") if event.type == _EVENT_PHONEME else ""
            self._events.append((event.type, event.sample, event.text_position, event.length, name))
            i += 1
        return 0  # 0 = continue synthesis

    def _list_english_voices(self) -> dict[str, EnglishVoice]:
        voices: dict[str, EnglishVoice] = {}
        listing = self.lib.espeak_ListVoices(None)
        i = 0
        while listing[i]:
            voice = listing[i].contents
            # The first language of a voice is the one it is for; later ones are fallbacks.
            code = ctypes.string_at(voice.languages + 1).decode()
            if code.startswith("en") and code not in _NOT_ACCENTS:
                voices[code] = EnglishVoice(code, voice.name.decode(), voice.identifier.decode())
            i += 1
        return dict(sorted(voices.items()))

    def synthesize(self, request: SpeechRequest) -> Speech:
        voice = self.voices.get(request.accent)
        if voice is None:
            raise SpecError(f"unknown English accent {request.accent!r}; available: {', '.join(self.voices)}")
        wanted = f"{voice.identifier}+{request.variant}"
        status = self.lib.espeak_SetVoiceByName(wanted.encode())
        # espeak-ng silently ignores an unknown variant, so check what it loaded.
        if status != _EE_OK or self.lib.espeak_GetCurrentVoice().contents.identifier.decode() != wanted:
            raise SpecError(f"espeak-ng has no voice {wanted!r}; variants: {', '.join(VARIANTS)}")
        for name, parameter, value in (
            ("rate_wpm", _PARAM_RATE, request.rate_wpm),
            ("pitch", _PARAM_PITCH, request.pitch),
            ("pitch_range", _PARAM_RANGE, request.pitch_range),
        ):
            if self.lib.espeak_SetParameter(parameter, int(value), 0) != _EE_OK:
                raise SpecError(f"espeak-ng rejected {name} = {value}")
        self.lib.espeak_ng_SetRandSeed(request.noise_seed)
        self._chunks, self._events = [], []
        text = request.text.encode("utf-8") + b"\0"
        status = self.lib.espeak_Synth(text, len(text), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != _EE_OK:
            raise NeurolakeError(f"espeak-ng failed to synthesise {request.text!r} (status {status})")
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        phones, words = _timings(self._events, request.text, len(samples), self.sample_rate)
        return Speech(samples.astype(np.int16, copy=False), self.sample_rate, phones, words)


def _timings(
    events: Sequence[tuple[int, int, int, int, str]], text: str, total: int, rate: int
) -> tuple[tuple[Interval, ...], tuple[Interval, ...]]:
    """Phone and word intervals (seconds) from espeak-ng's event stream.

    A phoneme event marks where a phone starts; it ends where the next phoneme
    (a pause has an empty name) starts, or at the end of the audio. A word event
    owns the phones that follow it. espeak-ng speaks some word pairs as one unit
    ("in the") with one word event, and spells some tokens out as several
    ("42"), so word events are matched to the words of ``text`` by position: one
    interval per unit, labelled with every word of the text it covers.
    """
    tokens = [(m.start(), m.end(), m.group().strip(_PUNCTUATION)) for m in re.finditer(r"\S+", text)]
    tokens = [token for token in tokens if token[2]]
    phonemes: list[tuple[int, str, int]] = []  # (start sample, name, token of its word event)
    token = -1
    for kind, sample, position, _, name in events:
        if kind == _EVENT_WORD and tokens:
            # Positions are 1-based and may point at the space before the word
            # (espeak-ng drifts by one after sentence punctuation).
            token = next((i for i, (_, end, _) in enumerate(tokens) if end > position - 1), len(tokens) - 1)
        elif kind == _EVENT_PHONEME:
            phonemes.append((sample, name, token))
    ends = [sample for sample, _, _ in phonemes[1:]] + [total]
    phones: list[Interval] = []
    spans: dict[int, tuple[float, float]] = {}
    for (sample, name, owner), end in zip(phonemes, ends, strict=False):
        label = name.translate(_PHONE_CLEANUP)
        if not label or end <= sample:
            continue
        phones.append(Interval(sample / rate, end / rate, label))
        if owner >= 0:
            spans[owner] = (spans[owner][0] if owner in spans else sample / rate, end / rate)
    owners = sorted(spans)
    bounds = [0, *owners[1:], len(tokens)]
    words = tuple(
        Interval(*spans[owner], " ".join(t[2] for t in tokens[bounds[j] : bounds[j + 1]]))
        for j, owner in enumerate(owners)
    )
    return tuple(phones), words


_LOCK = threading.Lock()
_ENGINE: _Espeak | None = None


def _engine() -> _Espeak:
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def english_voices() -> tuple[EnglishVoice, ...]:
    """The English accents in the shipped espeak-ng data, sorted by language code."""
    with _LOCK:
        return tuple(_engine().voices.values())


def synthesize_speech(request: SpeechRequest) -> Speech:
    """Synthesise one utterance in this process.

    Phones and words are reproducible; the waveform's fine detail, and with it the
    timings, move by a few samples with what this process synthesised before (see
    the module docstring). Use :func:`synthesize_in_subprocess` for
    byte-reproducible output.

    Raises:
        SpecError: unknown accent or variant, or a parameter espeak-ng rejects.
    """
    with _LOCK:
        return _engine().synthesize(request)


def synthesize_in_subprocess(requests: Sequence[SpeechRequest]) -> Iterator[Speech]:
    """Synthesise ``requests`` in order in a fresh process, yielding each result as it is ready.

    A fresh interpreter starts from espeak-ng's initial state, so the same requests
    always give the same samples. It is started as ``python -m
    neurolake.corpora.espeak`` rather than through :mod:`multiprocessing`, whose
    "spawn" re-imports the caller's main module (a CLI, a test runner) first.
    Results stream back one at a time: memory holds one utterance, not the batch.

    Raises:
        SpecError: a request names an unknown accent or variant.
        NeurolakeError: the synthesis process failed.
    """
    if not requests:
        return
    package_root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    process = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    try:
        pickle.dump(list(requests), process.stdin, protocol=pickle.HIGHEST_PROTOCOL)
        process.stdin.close()
        for _ in requests:
            try:
                kind, payload = pickle.load(process.stdout)
            except EOFError as exc:
                raise NeurolakeError(f"the espeak-ng process exited unexpectedly (exit code {process.wait()})") from exc
            if kind == "error":
                raise payload
            yield payload
    finally:
        process.stdout.close()
        if process.poll() is None:
            process.kill()
        process.wait()


def _serve(source: BinaryIO, sink: BinaryIO) -> None:
    """Body of the synthesis process: answer every request in order, stop at the first error."""
    for request in pickle.load(source):
        try:
            result = ("speech", synthesize_speech(request))
        except NeurolakeError as exc:
            pickle.dump(("error", exc), sink, protocol=pickle.HIGHEST_PROTOCOL)
            sink.flush()
            return
        pickle.dump(result, sink, protocol=pickle.HIGHEST_PROTOCOL)
        sink.flush()


if __name__ == "__main__":
    # Serve through the module's importable name, so that results pickle as
    # neurolake.corpora.espeak.Speech rather than __main__.Speech.
    from neurolake.corpora import espeak

    espeak._serve(sys.stdin.buffer, sys.stdout.buffer)
