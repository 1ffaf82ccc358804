"""Direct channels to pool actors: answers as Ray's calls give them, large arrays out of band,
errors as RemoteError, only the one client holding the key, no hang when the actor is gone,
spinning for as long as told and no longer."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection

import numpy as np
import pytest
import ray

import neurolake.cluster.channel as channel_module
from neurolake.cluster.channel import _OUT_OF_BAND_BYTES, Channel, ChannelHost, _receive, _send
from neurolake.cluster.pool import ActorPool, RemoteError


def _counting_yields(looks: list[int]) -> Callable[[], None]:
    """``os.sched_yield`` adding one to ``looks[0]`` at each call: a spinning channel yields
    its CPU between looks for the next message (CPU seconds would undercount a spin that other
    work shares)."""
    real = os.sched_yield

    def counted() -> None:
        looks[0] += 1
        real()

    return counted


class _Cells(ChannelHost):
    def __init__(self, seed: int) -> None:
        self.values = np.random.default_rng(seed).random(700_000)  # 5.6 MB: a large answer
        self.calls = 0
        # The looks for the next message in this actor's process.
        self.looks = [0]
        os.sched_yield = _counting_yields(self.looks)

    def take(self, start: int, stop: int) -> np.ndarray:
        self.calls += 1
        return self.values[start:stop]

    def count(self) -> int:
        return self.calls

    def weigh(self, values: np.ndarray) -> tuple[float, bool]:
        """The sum of ``values`` sent here, and whether this process may write to them."""
        return float(values.sum()), bool(values.flags.writeable)

    def slow(self, seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    def looked(self) -> int:
        return self.looks[0]

    def cpu(self) -> float:
        """CPU seconds of this process, every thread (a channel's serving thread among them)."""
        return time.process_time()

    def fail(self, message: str) -> None:
        raise ValueError(message)

    def unsendable(self):
        return lambda: None  # a closure cannot be pickled


@pytest.fixture
def pool(local_ray):
    pool = ActorPool(_Cells, [(1,), (2,)], num_cpus=0)
    yield pool
    pool.close()


def test_a_channel_answers_as_the_actor_does_over_ray(pool):
    channels = [Channel(address, key) for address, key in pool.broadcast("neurolake_open_channel")]
    try:
        whole = pool.broadcast("take", 0, 700_000)
        pending = [channel.call_later("take", 10, 700_000) for channel in channels]  # both actors at once
        for answer, expected in zip(pending, whole, strict=True):
            np.testing.assert_array_equal(answer(), expected[10:])
        assert [channel.call("take", 3, 5).tolist() for channel in channels] == [w[3:5].tolist() for w in whole]
        # The channel's calls reach the same instance as Ray's: 1 call over Ray, 2 over the channel.
        assert pool.broadcast("count") == [3, 3]
        assert whole[0][:5].tolist() != whole[1][:5].tolist()
    finally:
        for channel in channels:
            channel.close()


def _through(here: Connection, there: Connection, value: object) -> tuple[int, object]:
    """``value`` sent on ``here`` and received on ``there`` (the other end of a socket pair):
    the bytes sent out of band, and what arrived. The socket's buffer holds far less than a
    large message, so the writer runs on a thread while this one reads."""
    sent: list[int] = []
    writer = threading.Thread(target=lambda: sent.append(_send(here, value)))
    writer.start()
    got = _receive(there)
    writer.join()
    return sent[0], got


def test_large_arrays_go_out_of_band_and_arrive_whole_and_writable():
    """Over a socket pair (as a channel's): the buffers of contiguous arrays of at least
    ``_OUT_OF_BAND_BYTES`` are sent apart from the pickle, the rest in it; either way each
    value arrives equal, with its dtype, shape and order, in memory the receiver may write."""
    rng = np.random.default_rng(7)
    matrix = rng.integers(0, 1 << 30, (2_000, 900), dtype=np.int32)  # 7.2 MB
    fortran = np.asfortranarray(rng.random((300, 200)))
    value = {
        "matrices": [matrix, fortran],
        "strided": matrix[::3, ::2],  # not contiguous: pickled in band
        "small": np.arange(10, dtype=np.int16),  # under the threshold: in band
        "text": "co-usages",
    }
    assert np.arange(10, dtype=np.int16).nbytes < _OUT_OF_BAND_BYTES
    here, there = multiprocessing.Pipe()
    sent, got = _through(here, there, value)
    assert sent == matrix.nbytes + fortran.nbytes
    np.testing.assert_array_equal(got["matrices"][0], matrix)
    np.testing.assert_array_equal(got["matrices"][1], fortran)
    np.testing.assert_array_equal(got["strided"], matrix[::3, ::2])
    assert got["matrices"][0].dtype == np.int32 and got["matrices"][1].flags.f_contiguous
    assert got["small"].dtype == np.int16 and got["small"].tolist() == list(range(10))
    assert got["text"] == "co-usages"
    got["matrices"][0] += 1  # its own memory: writable, and the sender's is untouched
    assert int(got["matrices"][0][0, 0]) == int(matrix[0, 0]) + 1
    # A value with no large buffer is one message; the next one follows it on the same pair.
    assert _through(here, there, (True, 3)) == (0, (True, 3))
    here.close()
    with pytest.raises(EOFError):
        _receive(there)
    there.close()


def test_without_raw_socket_io_everything_goes_in_band(monkeypatch):
    """Where a socket's descriptor takes no os.write and os.readv (not POSIX), large arrays
    travel inside the pickle, and arrive the same."""
    monkeypatch.setattr(channel_module, "_RAW_SOCKET_IO", False)
    matrix = np.arange(200_000, dtype=np.int64).reshape(400, 500)
    here, there = multiprocessing.Pipe()
    sent, got = _through(here, there, [matrix])
    assert sent == 0
    np.testing.assert_array_equal(got[0], matrix)
    here.close()
    there.close()


def test_a_large_request_reaches_the_actor_whole(pool):
    channel = Channel(*pool.call(0, "neurolake_open_channel"))
    try:
        values = np.random.default_rng(3).random(1_000_000)  # 8 MB: sent out of band
        total, writable = channel.call("weigh", values)
        assert total == float(values.sum())
        assert writable
    finally:
        channel.close()


def test_errors_come_back_as_remote_errors_and_the_channel_goes_on(pool):
    address, key = pool.call(0, "neurolake_open_channel")
    channel = Channel(address, key)
    try:
        with pytest.raises(RemoteError, match="no such rows") as caught:
            channel.call("fail", "no such rows")
        assert isinstance(caught.value.cause, ValueError)
        with pytest.raises(RemoteError, match="could not be sent back"):
            channel.call("unsendable")
        with pytest.raises(RemoteError, match="nothing"):
            channel.call("nothing")
        answer = channel.call_later("take", 0, 2)
        with pytest.raises(RuntimeError, match="one call at a time"):
            channel.call_later("take", 0, 2)
        assert answer().shape == (2,)
        assert channel.call("take", 5, 6).shape == (1,)
    finally:
        channel.close()


def test_only_the_key_opens_a_channel(pool):
    address, key = pool.call(0, "neurolake_open_channel")
    with pytest.raises(multiprocessing.AuthenticationError):
        Channel(address, bytes(32))
    with pytest.raises(OSError):  # the one connection was refused: nothing listens any more
        Channel(address, key, timeout=5)


def test_a_call_to_an_actor_gone_fails_instead_of_waiting(local_ray):
    pool = ActorPool(_Cells, [(1,)], num_cpus=0)
    try:
        channel = Channel(*pool.call(0, "neurolake_open_channel"))
        assert channel.call("take", 0, 1).shape == (1,)
        ray.kill(pool._actors[0])
        # ray.kill returns before the process is gone (under load, for many calls' time);
        # once it is, a call raises at once rather than waiting for an answer.
        deadline = time.monotonic() + 60
        with pytest.raises(RemoteError, match="channel broke"):
            while time.monotonic() < deadline:
                channel.call("take", 0, 1)
                time.sleep(0.01)
        with pytest.raises(RemoteError, match="closed"):
            channel.call("take", 0, 1)
    finally:
        pool.close()


def test_a_spinning_channel_spins_as_long_as_told_and_then_blocks(pool, monkeypatch):
    """Spinning is counted in looks for the next message (each yields the CPU), not in CPU
    seconds, which another process sharing the CPU would take from the spin."""
    here = [0]
    monkeypatch.setattr(os, "sched_yield", _counting_yields(here))
    spinning, still = (
        Channel(*pool.call(a, "neurolake_open_channel", None, spin), spin=spin) for a, spin in ((0, 0.3), (1, 0.0))
    )
    try:
        for channel in (spinning, still):
            assert channel.call("take", 3, 5).shape == (2,)
        time.sleep(1.0)
        after, cpu = pool.broadcast("looked"), pool.broadcast("cpu")
        # After the call, the spinning actor looked for the next one again and again for 0.3 s;
        # the other did not look, it slept.
        assert after[0] > 10
        assert after[1] == 0
        # Then it sleeps too: idle for 1.5 s, it looks no more and uses little CPU.
        time.sleep(1.5)
        idle = pool.broadcast("looked")
        assert idle[0] == after[0]
        assert pool.call(0, "cpu") - cpu[0] < 0.1
        # An answer that takes longer than the client spins still comes back; the client
        # looked for it for 0.3 s of the 1 s it waited, then slept.
        here[0] = 0
        start = time.process_time()
        assert spinning.call("slow", 1.0) == 1.0
        assert here[0] > 10
        assert time.process_time() - start < 0.6
        looked = here[0]
        assert still.call("take", 0, 1).shape == (1,)
        assert here[0] == looked
    finally:
        spinning.close()
        still.close()
