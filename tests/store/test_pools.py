"""The scratch block kept from one pass to the next: reused when large enough, never shared by
two passes at once, never kept over its limit, forgotten on release."""

from __future__ import annotations

import numpy as np

from neurolake.store.pools import KeptScratch


def test_a_block_given_back_is_what_the_next_pass_takes():
    scratch = KeptScratch(1 << 20)
    first = scratch.take(4096)
    assert first.dtype == np.uint8 and first.shape == (4096,)
    scratch.give(first)
    smaller = scratch.take(1000)
    assert smaller.shape == (1000,) and np.shares_memory(smaller, first)
    scratch.give(smaller)
    # Too small for a larger pass: that pass gets fresh memory, which is kept from then on.
    larger = scratch.take(8192)
    assert not np.shares_memory(larger, first)
    scratch.give(larger)
    assert np.shares_memory(scratch.take(8192), larger)


def test_two_passes_at_once_get_blocks_of_their_own():
    scratch = KeptScratch(1 << 20)
    scratch.give(scratch.take(4096))
    a = scratch.take(4096)
    b = scratch.take(4096)  # the kept block is out with the first pass
    assert not np.shares_memory(a, b)
    scratch.give(a)
    scratch.give(b)  # a block as large is kept already: b is dropped
    assert np.shares_memory(scratch.take(4096), a)


def test_blocks_over_the_limit_are_not_kept_and_release_frees_the_block():
    scratch = KeptScratch(1000)
    big = scratch.take(4096)
    scratch.give(big)
    assert not np.shares_memory(scratch.take(100), big)
    small = scratch.take(1000)
    scratch.give(small)
    scratch.release()
    assert not np.shares_memory(scratch.take(1000), small)
