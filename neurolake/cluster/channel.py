"""A direct connection to one pool actor, for calls many times a second.

A Ray actor call costs about 1.5-2.3 ms of round trip on a 2-core machine whose cores are
both computing; a message each way on a socket between the two processes, 0.1-0.6 ms. A
search that asks the other actors for their counts hundreds of times (DiffNorm's) opens a
:class:`Channel` to each instead: the actor serves it on a thread of its own, one call at a
time, with the methods it serves Ray's calls with. Each connection is authenticated by a key
made for it, which travels over Ray, and only its one client is accepted. The memory of large
arrays in a message goes out of band: written from where it lies and read into arrays of the
receiver's, never copied into a pickle and out of it.

Both ends can spin: look for the next message without sleeping for a while before they block.
On the 2-core virtual machine of the benchmarks, processes that slept between a search's
trips counted slower once woken, not only later. Replaying the 784 rounds of counting of a
2 M-frame DiffNorm search on two processes in step, 5 ms of other work between rounds, the
processes took 7.07-7.70 s blocking (their own counting 6.1-7.1 s each), 1.47x-1.68x faster
than one process, and 5.81-6.97 s spinning (5.4-6.5 s each), 1.77x-1.85x. Spin only where
the processes that count have a core each: a spinning process yields its core to any other
that is ready to run, but it still takes turns on it.
"""

from __future__ import annotations

import os
import pickle
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener, answer_challenge, deliver_challenge
from typing import Any

import numpy as np

__all__ = ["Channel", "ChannelHost", "spin_where_cores"]

# Buffers of a message (numpy arrays' memory) this large or larger go out of band: written
# to the socket from where they lie and read into memory of their own at the other end,
# instead of copied into the pickle, read back in pieces and copied out of it. Two int32
# matrices of 2,143 x 2,143 (DiffNorm's first co-usages, 37 MB) took 148-179 ms a trip
# between two processes in band.
_OUT_OF_BAND_BYTES = 1 << 16
# Whether a socket's descriptor takes os.write and os.readv (POSIX); elsewhere everything goes
# in band.
_RAW_SOCKET_IO = hasattr(os, "readv")


def _failed(exc: BaseException) -> Exception:
    """:class:`~neurolake.cluster.pool.RemoteError` of ``exc`` (imported here: this module
    is imported where Ray is not)."""
    from neurolake.cluster.pool import RemoteError

    return RemoteError(exc)


def _no_delay(fileno: int) -> None:
    """Send each message at once (a large one goes out as a header and a body: waiting for
    the header's acknowledgement before the body's last segment would cost a delayed ack)."""
    sock = socket.socket(fileno=fileno)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    finally:
        sock.detach()


def spin_where_cores(processes: int, seconds: float) -> float:
    """``seconds`` where ``processes`` that spin can each have a CPU of this node, else 0.
    The CPUs are counted as :func:`~neurolake.store.pools.usable_cpus` counts them (joblib's
    count: a container's CPU limit holds), without importing the store, which took an
    actor 0.5-1 s."""
    from joblib import cpu_count

    return seconds if processes <= max(1, int(cpu_count())) else 0.0


def _send(conn: Connection, obj: Any) -> int:
    """Send ``obj`` on ``conn`` for :func:`_receive`: its pickle with the buffers of at least
    ``_OUT_OF_BAND_BYTES`` left out and their sizes, then those buffers as they lie in
    memory. Nothing is sent if ``obj`` cannot be pickled. Returns the bytes sent out of
    band."""
    views: list[memoryview] = []

    def in_band(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if not _RAW_SOCKET_IO or view.nbytes < _OUT_OF_BAND_BYTES:
            return True
        views.append(view)
        return False

    data = pickle.dumps(obj, protocol=5, buffer_callback=in_band)
    sizes = [view.nbytes for view in views]
    conn.send((sizes, data))
    for view in views:
        while view.nbytes:
            view = view[os.write(conn.fileno(), view) :]
    return sum(sizes)


def _receive(conn: Connection) -> Any:
    """What :func:`_send` sent on the other end of ``conn``: its large buffers are read into
    new arrays, which the unpickled value uses as its own (writable) memory."""
    sizes, data = conn.recv()
    buffers = [np.empty(size, np.uint8) for size in sizes]
    for buffer in buffers:
        view = buffer.data
        while view.nbytes:
            got = os.readv(conn.fileno(), [view])
            if got == 0:
                raise EOFError("the channel closed in the middle of a message")
            view = view[got:]
    return pickle.loads(data, buffers=buffers)


def _spin_until_readable(fileno: int, seconds: float) -> None:
    """Return once ``fileno`` has something to read, or after ``seconds``, without sleeping
    (the caller's read then blocks if nothing came)."""
    if seconds <= 0:
        return
    poller = select.poll()
    poller.register(fileno, select.POLLIN | select.POLLHUP | select.POLLERR)
    deadline = time.perf_counter() + seconds
    while not poller.poll(0) and time.perf_counter() < deadline:
        os.sched_yield()


class ChannelHost:
    """Mixed into an actor's class: :meth:`neurolake_open_channel` serves its methods to one
    :class:`Channel`."""

    def neurolake_open_channel(self, host: str | None = None, spin: float = 0.0) -> tuple[tuple[str, int], bytes]:
        """Listen on this node (``host``, else the node's address for Ray) for one client;
        ``(address, key)`` for :class:`Channel`. The serving thread ends when the client
        closes or goes; it spins ``spin`` seconds for each call before it blocks."""
        if host is None:
            import ray

            host = ray.util.get_node_ip_address()
        key = secrets.token_bytes(32)
        listener = Listener((host, 0), authkey=key)
        threading.Thread(
            target=self._neurolake_serve, args=(listener, spin), daemon=True, name="neurolake-channel"
        ).start()
        return listener.address, key

    def _neurolake_serve(self, listener: Listener, spin: float) -> None:
        with listener:
            try:
                conn = listener.accept()
            except (OSError, EOFError, AuthenticationError):
                return
        _no_delay(conn.fileno())
        with conn:
            while True:
                try:
                    _spin_until_readable(conn.fileno(), spin)
                    message = _receive(conn)
                except (OSError, EOFError):
                    return
                if message is None:
                    return
                method, args = message
                try:
                    reply = (True, getattr(self, method)(*args))
                except Exception as exc:
                    reply = (False, exc)
                try:
                    _send(conn, reply)
                except (pickle.PicklingError, TypeError, AttributeError) as exc:
                    _send(conn, (False, RuntimeError(f"{method}: its answer could not be sent back: {exc}")))
                except OSError:
                    return


class Channel:
    """The client of an actor's :meth:`ChannelHost.neurolake_open_channel`: one call at a
    time, in order. A failed call, or the actor gone, raises
    :class:`~neurolake.cluster.pool.RemoteError`.

    Args:
        address, key: what :meth:`~ChannelHost.neurolake_open_channel` returned.
        timeout: seconds to connect.
        spin: seconds to spin for each answer before blocking.
    """

    def __init__(self, address: tuple[str, int], key: bytes, timeout: float = 10, spin: float = 0.0) -> None:
        sock = socket.create_connection((address[0], address[1]), timeout=timeout)
        sock.settimeout(None)  # blocking from here on: Connection reads the descriptor itself
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn: Connection | None = Connection(sock.detach())
        self._waiting = False
        self._spin = spin
        try:
            answer_challenge(self._conn, key)
            deliver_challenge(self._conn, key)
        except BaseException:
            self.close()
            raise

    def call_later(self, method: str, *args: Any) -> Callable[[], Any]:
        """Send ``method(*args)`` and return at once; calling the returned function waits for
        its value (before the next call is sent)."""
        if self._conn is None:
            raise _failed(ConnectionError("the channel is closed"))
        if self._waiting:
            raise RuntimeError("a channel takes one call at a time: wait for the last one first")
        try:
            _send(self._conn, (method, args))
        except OSError as exc:
            self.close()
            raise _failed(ConnectionError(f"the actor's channel broke: {exc}")) from exc
        self._waiting = True

        def value() -> Any:
            conn = self._conn
            if conn is None:
                raise _failed(ConnectionError("the channel is closed"))
            try:
                _spin_until_readable(conn.fileno(), self._spin)
                ok, answer = _receive(conn)
            except (OSError, EOFError) as exc:
                self.close()
                raise _failed(ConnectionError(f"the actor's channel broke: {exc!r}")) from exc
            finally:
                self._waiting = False
            if not ok:
                raise _failed(answer)
            return answer

        return value

    def call(self, method: str, *args: Any) -> Any:
        """``method(*args)`` on the actor, waited for."""
        return self.call_later(method, *args)()

    def close(self) -> None:
        """Let the actor's serving thread end (a call still unanswered is dropped)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                if not self._waiting:
                    _send(conn, None)
            except OSError:
                pass
            conn.close()
