"""Claim boards: every chunk taken once, each process's own chunks first, across processes."""

from __future__ import annotations

import multiprocessing
import time

import numpy as np
import pytest

from neurolake.cluster.claims import Claim, ClaimBoard, claims_possible

pytestmark = pytest.mark.skipif(not claims_possible(), reason="claim boards need POSIX file locks")


def test_a_process_takes_its_own_chunks_first_then_the_last_of_the_fullest():
    """Hand-worked: part 1 holds 35 rows of request 0 and 7 of request 1, part 0 100 rows of
    request 0, chunks of 10 rows. Part 1 takes its 4 + 1 chunks (the last ones short), then
    part 0's from the end; part 0 then finds none."""
    rows = np.array([[100, 35], [0, 7]])
    path = ClaimBoard.create(rows, 10)
    try:
        with ClaimBoard(path, rows, 10) as board:
            got = []
            while (claim := board.claim(1)) is not None:
                got.append(claim)
            assert board.claim(0) is None
    finally:
        ClaimBoard.remove(path)
    own = [Claim(0, 1, 0, 0, 10), Claim(0, 1, 1, 10, 20), Claim(0, 1, 2, 20, 30), Claim(0, 1, 3, 30, 35)]
    assert got[:5] == [*own, Claim(1, 1, 0, 0, 7)]
    assert got[5:] == [Claim(0, 0, c, 10 * c, 10 * c + 10) for c in range(9, -1, -1)]


def test_the_part_with_the_most_left_is_taken_from_first():
    rows = np.array([[30, 0, 80]])
    path = ClaimBoard.create(rows, 10)
    try:
        with ClaimBoard(path, rows, 10) as board:
            assert board.claim(2) == Claim(0, 2, 0, 0, 10)
            # Part 1 has none: part 2 has 7 chunks left against part 0's 3.
            assert board.claim(1) == Claim(0, 2, 7, 70, 80)
            assert board.claim(0) == Claim(0, 0, 0, 0, 10)
    finally:
        ClaimBoard.remove(path)
    with pytest.raises(ValueError, match="at least one row"):
        ClaimBoard.create(rows, 0)


def _claim_all(path: str, rows: np.ndarray, chunk_rows: int, part: int, start_at: float) -> list[tuple]:
    while time.time() < start_at:  # start together
        pass
    out = []
    with ClaimBoard(path, rows, chunk_rows) as board:
        while (claim := board.claim(part)) is not None:
            out.append(tuple(claim))
    return out


def test_processes_claiming_at_once_take_every_chunk_once():
    """Three processes claim from one board at once: together they take every chunk of every
    part once, the chunks of each request's rows tile them, and the chunks of a part its own
    process took are its first ones (the others take from the end)."""
    rows = np.array([[4000, 1200, 0], [200, 8000, 28]])
    chunk_rows = 13
    path = ClaimBoard.create(rows, chunk_rows)
    try:
        with multiprocessing.get_context("spawn").Pool(3) as pool:
            start_at = time.time() + 1.5
            taken = pool.starmap(_claim_all, [(path, rows, chunk_rows, part, start_at) for part in range(3)])
    finally:
        ClaimBoard.remove(path)
    every = [claim for claims in taken for claim in claims]
    chunks = -(-rows // chunk_rows)
    assert len(every) == len(set(every)) == chunks.sum()
    for request in range(rows.shape[0]):
        for part in range(rows.shape[1]):
            spans = sorted((c[3], c[4]) for c in every if c[0] == request and c[1] == part)
            assert [c for c in every if c[0] == request and c[1] == part and c[4] - c[3] > chunk_rows] == []
            bounds = [0] + [stop for _, stop in spans]
            assert [start for start, _ in spans] == bounds[:-1] and bounds[-1] == rows[request, part]
            own = sorted(c[2] for c in taken[part] if c[0] == request and c[1] == part)
            assert own == list(range(len(own)))
