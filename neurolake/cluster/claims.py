"""Work shared out by claims among processes of one node, for counts whose parts run at
different speeds.

A count over rows dealt out to several processes ends when the slowest ends; on a machine
whose cores change speed with other work, which one that is changes from run to run. A
:class:`ClaimBoard` cuts each process's rows into chunks and keeps, for each process, the
chunks of its rows not yet taken in a small file that all of them map: each takes its own
chunks from the front and, once none are left, the last chunk of whichever process has the
most left, so they end within about a chunk of each other. A claim holds the file's lock
(``flock``) for a few array reads and writes.
"""

from __future__ import annotations

import os
import tempfile
from typing import NamedTuple

import numpy as np

try:
    import fcntl
except ImportError:  # not POSIX: no claims, each process counts its own rows
    fcntl = None  # type: ignore[assignment]

__all__ = ["ClaimBoard", "Claim", "claims_possible"]


def claims_possible() -> bool:
    """Whether boards can be made here (POSIX file locks)."""
    return fcntl is not None


def _board_dir() -> str:
    """Memory-backed where there is such a folder, else the temporary folder."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK) else tempfile.gettempdir()


class Claim(NamedTuple):
    """Chunk ``chunk`` of the rows of ``part`` for request ``request``: its rows are
    ``[start, stop)`` of that part's rows."""

    request: int
    part: int
    chunk: int
    start: int
    stop: int


class ClaimBoard:
    """The chunks left of every part's rows for each request of one count, in a file that
    the processes counting map (``[requests, parts, 2] int64``: the next chunk and the end
    of each part's chunks).

    Args:
        path: the board's file (see :meth:`create`).
        rows: ``[requests, parts]`` rows of each part for each request.
        chunk_rows: rows in a chunk (the last of a part may hold fewer).
    """

    def __init__(self, path: str, rows: np.ndarray, chunk_rows: int) -> None:
        if fcntl is None:
            raise OSError("claims need POSIX file locks")
        self.path = path
        self.rows = np.asarray(rows, np.int64)
        self.chunk_rows = int(chunk_rows)
        self._fd = os.open(path, os.O_RDWR)
        self._left = np.memmap(path, np.int64, mode="r+", shape=(*self.rows.shape, 2))

    @staticmethod
    def create(rows: np.ndarray, chunk_rows: int) -> str:
        """A new board's file for ``[requests, parts]`` rows in chunks of ``chunk_rows``; the
        caller removes it (:meth:`remove`) once the count is over."""
        if chunk_rows < 1:
            raise ValueError(f"chunks must hold at least one row, got {chunk_rows}")
        rows = np.asarray(rows, np.int64)
        left = np.zeros((*rows.shape, 2), np.int64)
        left[..., 1] = -(-rows // chunk_rows)
        fd, path = tempfile.mkstemp(prefix="neurolake-claims-", dir=_board_dir())
        with os.fdopen(fd, "wb") as board:
            board.write(left.tobytes())
        return path

    @staticmethod
    def remove(path: str) -> None:
        """Remove a board's file (once every process that counts has closed it)."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def claim(self, part: int) -> Claim | None:
        """The next chunk for the process of ``part``: its own first (request by request),
        then the last of the part with the most left; None once every chunk is taken."""
        assert fcntl is not None
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            left = self._left
            for request in range(left.shape[0]):
                if left[request, part, 0] < left[request, part, 1]:
                    chunk = int(left[request, part, 0])
                    left[request, part, 0] += 1
                    return self._claim(request, part, chunk)
            remaining = left[..., 1] - left[..., 0]
            fullest, owner = (int(x) for x in np.unravel_index(int(np.argmax(remaining)), remaining.shape))
            if remaining[fullest, owner] <= 0:
                return None
            left[fullest, owner, 1] -= 1
            return self._claim(fullest, owner, int(left[fullest, owner, 1]))
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _claim(self, request: int, part: int, chunk: int) -> Claim:
        start = chunk * self.chunk_rows
        return Claim(request, part, chunk, start, min(start + self.chunk_rows, int(self.rows[request, part])))

    def close(self) -> None:
        del self._left
        os.close(self._fd)

    def __enter__(self) -> ClaimBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
