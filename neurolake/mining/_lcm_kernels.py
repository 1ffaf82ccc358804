"""Compiled kernels of the LCM closed itemset miner (see :mod:`neurolake.mining.lcm`).

Everything here works on *internal* item ids ``0 .. n_items - 1`` (frequent items of the
whole database, renumbered by increasing support) and on weighted transaction databases in
CSR form:

- ``ptr``   ``[n + 1] int64``  start of each transaction in ``items``
- ``items`` ``[nnz] int32``     internal item ids, strictly increasing within a transaction
- ``w``     ``[n] int64``       weight of each transaction (number of merged input rows)

Nodes whose rows all have unit weight (the root of a database before merging, and its
descendants while they stay unmerged) can instead be mined from a vertical bit matrix
``[items, ceil(rows / 64)] uint64``: the supports of all item pairs come from popcounts, so
every child's closure and prefix-preservation test is read off one row of the pair-count
matrix, and the children's rows are extracted word by word. A cost model picks the form.
The children of such a root are built from a prefix tree of its rows when the tree is
small (categorical data such as mushroom or chess: rows that agree on their items above
an item share one tree node), and a node of at most ``SMALL_MAX_ROWS`` merged rows is mined
from one bit mask per item, where one pass over its items per extension replaces counting,
the prefix-preservation test and building the child database.

A node of the enumeration tree is a closed itemset ``P`` with its *core* item (the item whose
addition created it; -1 at the root) and its conditional database: the transactions that
contain ``P``, with the items of ``P`` and the items that are infrequent among them removed,
and identical transactions merged. Items below the core ("prefix" items) are only needed
for the prefix-preservation test, so two transactions are merged when their items above the
core agree, and the merged transaction keeps the intersection of their prefix items: an item
is in every occurrence of a future extension exactly when it is in every merged transaction
of it, which is all the test needs.

The depth-first search is iterative: each level's database and occurrence lists live in
stack-like arenas (``iarena`` for item ids and transaction indices, ``larena`` for offsets,
weights and pair counts, ``barena`` for bit matrices) that grow by doubling and are popped
when a subtree is done, so memory stays proportional to the databases on the current path.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# Odd 64-bit multiplier for the suffix hash (Knuth's MMIX LCG constant); int64 arithmetic
# wraps in compiled code, which is what a multiplicative hash wants.
_HASH_MULT = 6364136223846793005

# When a unit-weight node is mined from a bit matrix: never, when the cost model says so,
# or always (to test the bit path on its own).
BITS_NEVER = 0
BITS_AUTO = 1
BITS_ALWAYS = 2
# The root from bits and every node below it from rows, its children from the prefix tree
# whatever its size (to test that path on small data).
BITS_ROOT = 3
# Cost of one popcount word operation relative to one item visit of a row scan: about
# 0.2 ns against 2-4 ns measured on binarised activations; kept on the safe side because
# building the children from bits also costs words per kept item.
BIT_WORD_COST = 0.25
# Largest bit matrix or pair-count matrix (in 8-byte words) built for one node.
MAX_DENSE_WORDS = 1 << 27
# Fewest rows for which the cost model may choose bits. A node's children are built from
# bits at about the cost of their unmerged rows, while small row sets merge into few
# distinct weighted rows (chess, mushroom); large ones over many items rarely merge.
MIN_DENSE_ROWS = 4096
# Largest internal item id + 1 for which the children of a root mined from bits are built
# from a prefix tree of its rows (each tree node carries a bit set of these items), and the
# largest tree, as a fraction of the root's items, worth using.
TRIE_MAX_ITEMS = 256
TRIE_MAX_FRACTION = 0.5
# Rows of an occurrence list whose bounds and weights _count reads ahead of counting them.
_COUNT_BATCH = 8
# Most rows of a node mined from bit masks (a word per item and 64 rows; a child occurring
# in at most 64 rows is squeezed to one word), and how much more a pass over all its items
# per extension may cost than counting its rows. Against 64 rows, 1024 took the search of
# mushroom at 5 % from 16 to 10 ms and that of chess at 60 % from 28 to 33 ms.
SMALL_MAX_ROWS = 1024
SMALL_COST = 2


@intrinsic
def _popcount(typingctx, x):
    """Number of set bits of a uint64 (one instruction where the CPU has one)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return sig, codegen


@intrinsic
def _lowest_bit(typingctx, x):
    """Index of the lowest set bit of a non-zero uint64."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@njit(cache=True, inline="always")
def _row_hash(iarena, start, stop):
    """Hash of the items ``iarena[start:stop]`` of a row: a sum of mixed items, so no chain of
    dependent multiplications."""
    h = np.int64(stop - start)
    for y in range(start, stop):
        z = (iarena[y] + np.int64(1)) * _HASH_MULT
        h += z ^ (z >> 29)
    return h


@njit(cache=True, inline="always")
def _same_row(table, mask, h, start, length, iarena, s_hash, s_start, s_len):
    """Open-addressing lookup of the row ``iarena[start:start + length]`` (hash ``h``) among
    the rows entered in ``table`` (row index + 1; 0 is free): ``(slot, r)``, ``r`` the equal
    row already entered, or -1 and ``slot`` the free slot where it goes."""
    slot = h & mask
    while table[slot] != 0:
        r = table[slot] - 1
        if s_hash[r] == h and s_len[r] == length:
            rs = s_start[r]
            same = True
            for y in range(length):
                if iarena[rs + y] != iarena[start + y]:
                    same = False
                    break
            if same:
                return slot, r
        slot = (slot + 1) & mask
    return slot, np.int64(-1)


@njit(cache=True)
def _grow(a, need):
    """Return ``a`` or a copy at least ``need`` long (doubling), same dtype, contents kept."""
    if need <= a.shape[0]:
        return a
    size = a.shape[0] * 2
    if size < need:
        size = need
    b = np.empty(size, a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True)
def canonical_rows(indptr, indices):
    """Sort every row of a CSR matrix and drop repeated items within a row.

    Args:
        indptr: ``[n + 1] int64`` row starts.
        indices: ``[nnz] int64`` item ids.

    Returns:
        ``(indptr, indices)`` with strictly increasing items per row; the inputs themselves
        when they already are.
    """
    n = indptr.shape[0] - 1
    clean = True
    for r in range(n):
        for p in range(indptr[r] + 1, indptr[r + 1]):
            if indices[p] <= indices[p - 1]:
                clean = False
                break
        if not clean:
            break
    if clean:
        return indptr, indices
    out_ptr = np.empty(n + 1, np.int64)
    out = np.empty(indices.shape[0], np.int64)
    pos = 0
    out_ptr[0] = 0
    for r in range(n):
        row = np.sort(indices[indptr[r] : indptr[r + 1]])
        for x in range(row.shape[0]):
            if x == 0 or row[x] != row[x - 1]:
                out[pos] = row[x]
                pos += 1
        out_ptr[r + 1] = pos
    return out_ptr, out[:pos]


@njit(cache=True, nogil=True)
def dense_to_csr(matrix):
    """CSR rows of the non-zero entries of a 2-D array ``[rows, items]``.

    Returns:
        ``(indptr [rows + 1] int64, indices [nnz] int64)``, items increasing in each row.
    """
    n, m = matrix.shape
    indptr = np.zeros(n + 1, np.int64)
    for r in range(n):
        c = 0
        for k in range(m):
            if matrix[r, k]:
                c += 1
        indptr[r + 1] = indptr[r] + c
    indices = np.empty(indptr[n], np.int64)
    for r in range(n):
        pos = indptr[r]
        for k in range(m):
            if matrix[r, k]:
                indices[pos] = k
                pos += 1
    return indptr, indices


@njit(cache=True, nogil=True)
def _project_rows_by_item(indptr, indices, remap, n_items):
    """:func:`project_rows` for long rows: sorting is a double transpose (bucket by item,
    then refill rows item by item), which costs ``O(nnz + n_items)`` instead of a comparison
    sort per row. Arguments and result as for :func:`project_rows`.
    """
    n = indptr.shape[0] - 1
    col_count = np.zeros(n_items + 1, np.int64)
    row_len = np.zeros(n, np.int64)
    for r in range(n):
        for p in range(indptr[r], indptr[r + 1]):
            k = remap[indices[p]]
            if k >= 0:
                col_count[k + 1] += 1
                row_len[r] += 1
    for k in range(n_items):
        col_count[k + 1] += col_count[k]
    nnz = col_count[n_items]
    col_rows = np.empty(nnz, np.int64)
    cursor = col_count[:n_items].copy()
    for r in range(n):
        for p in range(indptr[r], indptr[r + 1]):
            k = remap[indices[p]]
            if k >= 0:
                col_rows[cursor[k]] = r
                cursor[k] += 1
    # Rows left empty are dropped: they contain no frequent item and support only the
    # empty itemset, which the caller accounts for from the row count.
    row_new = np.full(n, -1, np.int64)
    n_out = 0
    ptr = np.empty(n + 1, np.int64)
    ptr[0] = 0
    for r in range(n):
        if row_len[r] > 0:
            row_new[r] = n_out
            ptr[n_out + 1] = ptr[n_out] + row_len[r]
            n_out += 1
    fill = ptr[:n_out].copy()
    items = np.empty(nnz, np.int32)
    for k in range(n_items):
        for p in range(col_count[k], col_count[k + 1]):
            r = row_new[col_rows[p]]
            items[fill[r]] = k
            fill[r] += 1
    return ptr[: n_out + 1].copy(), items, np.ones(n_out, np.int64)


@njit(cache=True, inline="always")
def _drain_mask(mask, lo, hi, items, pos):
    """Write the set bits of ``mask[lo:hi + 1]`` (item ids) to ``items`` from ``pos`` on, in
    increasing order, clearing the mask; the position after the last one written."""
    for w in range(lo, hi + 1):
        x = mask[w]
        if x != 0:
            mask[w] = 0
            base = np.int32(w << 6)
            while x != 0:
                items[pos] = base + np.int32(_lowest_bit(x))
                pos += 1
                x &= x - np.uint64(1)
    return pos


@njit(cache=True, nogil=True)
def _project_rows_by_mask(indptr, indices, remap, n_items):
    """:func:`project_rows` for long rows over few items: each row's internal ids are set as
    bits of an ``n_items``-bit mask and read back in order (lowest set bit first), so the
    rows are written one after the other. The double transpose of
    :func:`_project_rows_by_item` scatters every item over the whole output instead: on
    800,000 binarised rows of 50 items out of 1,000 it took 6.5 s, a cache miss per item.
    Arguments and result as for :func:`project_rows`.
    """
    n = indptr.shape[0] - 1
    mask = np.zeros((n_items + 63) // 64 + 1, np.uint64)
    items = np.empty(indices.shape[0], np.int32)
    ptr = np.empty(n + 1, np.int64)
    ptr[0] = 0
    n_out = 0
    pos = 0
    for r in range(n):
        lo = mask.shape[0]
        hi = -1
        for p in range(indptr[r], indptr[r + 1]):
            k = remap[indices[p]]
            if k >= 0:
                w = k >> 6
                mask[w] |= np.uint64(1) << np.uint64(k & 63)
                lo = min(lo, w)
                hi = max(hi, w)
        # Rows left empty are dropped, as in project_rows.
        if hi < 0:
            continue
        pos = _drain_mask(mask, lo, hi, items, pos)
        n_out += 1
        ptr[n_out] = pos
    return ptr[: n_out + 1].copy(), items[:pos].copy(), np.ones(n_out, np.int64)


@njit(cache=True, nogil=True)
def project_rows(indptr, indices, remap, n_items):
    """Map items to internal ids, drop unmapped items and empty rows, sort every row.

    Rows are mapped and sorted one after the other (short rows by ranking every item among
    the row's, without branches), which keeps the writes sequential; bucketing by item and
    refilling the rows scattered every item twice over arrays far larger than the cache
    (14 ms of the 17 ms preparation of retail). Rows of more than 32 items on average
    (binarised activations) are sorted through a bit mask of the items
    (:func:`_project_rows_by_mask`), or bucketed by item where the items are too many for
    a mask per row, as a comparison sort per row would cost more.

    Args:
        indptr: ``[n + 1] int64`` row starts of the input rows (no repeated item in a row).
        indices: ``[nnz] int64`` original item ids.
        remap: ``[max_item + 1] int64`` internal id of each original item, -1 to drop it.
        n_items: number of internal ids.

    Returns:
        ``(ptr, items, w)``: the non-empty projected rows as a database with unit weights.
    """
    n = indptr.shape[0] - 1
    if indices.shape[0] > 32 * n:
        # A row's mask costs a pass over n_items / 64 words: cheap beside the row's items
        # unless the items are very many.
        if (n_items + 63) // 64 <= 8 * (indices.shape[0] // n):
            return _project_rows_by_mask(indptr, indices, remap, n_items)
        return _project_rows_by_item(indptr, indices, remap, n_items)
    ptr = np.empty(n + 1, np.int64)
    ptr[0] = 0
    n_out = 0
    for r in range(n):
        c = 0
        for p in range(indptr[r], indptr[r + 1]):
            c += np.int64(remap[indices[p]] >= 0)
        # Rows left empty are dropped: they contain no frequent item and support only the
        # empty itemset, which the caller accounts for from the row count.
        if c > 0:
            ptr[n_out + 1] = ptr[n_out] + c
            n_out += 1
    # One spare entry: items are written before it is known whether they are kept.
    items = np.empty(ptr[n_out] + 1, np.int32)
    tmp = np.empty(32, np.int32)
    pos = 0
    for r in range(n):
        start = pos
        # Branch-free: whether an item is kept is as good as random.
        for p in range(indptr[r], indptr[r + 1]):
            k = remap[indices[p]]
            items[pos] = k
            pos += np.int64(k >= 0)
        ln = pos - start
        if ln > 32:
            items[start:pos].sort()
            continue
        # Short rows: every item goes to its rank among the row's (distinct) items.
        for x in range(ln):
            tmp[x] = items[start + x]
        for x in range(ln):
            v = tmp[x]
            rank = 0
            for y in range(ln):
                rank += np.int64(tmp[y] < v)
            items[start + rank] = v
    return ptr[: n_out + 1].copy(), items[: ptr[n_out]], np.ones(n_out, np.int64)


def _byte_spreads() -> np.ndarray:
    """``[256] uint64``: bit ``b`` of each byte value moved to the lowest bit of byte ``b``."""
    values = np.arange(256, dtype=np.uint64)
    out = np.zeros(256, np.uint64)
    for b in range(8):
        out |= ((values >> np.uint64(b)) & np.uint64(1)) << np.uint64(8 * b)
    return out


_BYTE_SPREADS = _byte_spreads()
# Rows added into the byte-wide counters before they are emptied into the counts.
_SPREAD_ROWS = 255


@njit(cache=True, nogil=True)
def _spread_counts(rows, spreads):
    n, n_words = rows.shape
    n_bytes = n_words * 8
    counts = np.zeros(n_bytes * 8, np.int64)
    lanes = np.zeros(n_bytes, np.uint64)
    as_bytes = rows.reshape(-1).view(np.uint8)
    for r0 in range(0, n, _SPREAD_ROWS):
        for r in range(r0, min(n, r0 + _SPREAD_ROWS)):
            row = as_bytes[r * n_bytes : (r + 1) * n_bytes]
            for j in range(n_bytes):
                lanes[j] += spreads[row[j]]
        for j in range(n_bytes):
            x = lanes[j]
            for b in range(8):
                counts[8 * j + b] += np.int64((x >> np.uint64(8 * b)) & np.uint64(0xFF))
            lanes[j] = 0
    return counts


def packed_item_counts(rows: np.ndarray, n_items: int) -> np.ndarray:
    """``[n_items] int64``: the rows of a packed matrix (``[n, words] uint64``, C order, item
    ``x`` at bit ``x % 64`` of word ``x // 64``) that hold each item; bits past ``n_items``
    ignored. Every byte of a row adds, through a table, its eight bits to eight byte-wide
    counters in one 64-bit addition, emptied every 255 rows: no branch per set bit (a loop
    over the set bits took 0.20 s for 800,000 rows of 2,000 items at 5 %)."""
    if rows.shape[0] == 0:
        return np.zeros(n_items, np.int64)
    little = np.ascontiguousarray(rows, dtype=np.dtype("<u8"))
    return _spread_counts(little, _BYTE_SPREADS)[:n_items].copy()


@njit(cache=True, nogil=True)
def packed_kept_sizes(rows, keep):
    """``[n] int64``: the items of each row of a packed matrix that ``keep`` (``[words]
    uint64``, a mask of items) holds."""
    n, n_words = rows.shape
    sizes = np.zeros(n, np.int64)
    for r in range(n):
        c = 0
        for w in range(n_words):
            c += np.int64(_popcount(rows[r, w] & keep[w]))
        sizes[r] = c
    return sizes


@njit(cache=True, nogil=True)
def packed_project(rows, keep, remap, n_items, sizes, items, pos):
    """:func:`project_rows` for a packed matrix: the items ``keep`` holds of every row with
    any (``sizes``: :func:`packed_kept_sizes`), mapped by ``remap`` and written in increasing
    order to ``items`` from ``pos`` on, one row after the other (through a bit mask of the
    internal ids, as :func:`_project_rows_by_mask`); rows with none are left out. No CSR of
    the original items is made. Returns the position after the last item written."""
    n, n_words = rows.shape
    mask = np.zeros((n_items + 63) // 64 + 1, np.uint64)
    one = np.uint64(1)
    for r in range(n):
        if sizes[r] == 0:
            continue
        lo = mask.shape[0]
        hi = -1
        for w in range(n_words):
            x = rows[r, w] & keep[w]
            base = w * 64
            while x != 0:
                k = remap[base + np.int64(_lowest_bit(x))]
                x &= x - one
                m = k >> 6
                mask[m] |= one << np.uint64(k & 63)
                lo = min(lo, m)
                hi = max(hi, m)
        pos = _drain_mask(mask, lo, hi, items, pos)
    return pos


@njit(cache=True)
def _prefer_bits(m, n_rows, sumsq, bits_mode):
    """Whether a unit-weight node of ``n_rows`` rows over ``m`` items is mined from bits.

    Counting its children from the rows visits about ``sumsq = sum(row_length ** 2)``
    items; from a bit matrix it costs ``m ** 2 / 2`` popcounts of ``n_rows / 64`` words,
    which wins on dense data such as binarised activations.
    """
    if bits_mode == BITS_NEVER or bits_mode == BITS_ROOT or m == 0:
        return False
    words = (n_rows + 63) // 64
    if m * words > MAX_DENSE_WORDS or m * m > MAX_DENSE_WORDS:
        return False
    if bits_mode == BITS_ALWAYS:
        return True
    return n_rows >= MIN_DENSE_ROWS and BIT_WORD_COST * m * m * words / 2.0 < sumsq


@njit(cache=True)
def _pair_counts_into(bits, pairs):
    """Co-occurrence counts of all item pairs of a vertical bit matrix.

    Words are processed in blocks small enough that a block of every item stays in cache
    while all pairs are counted over it, and four items at a time are counted against each
    item after them: every word of the fifth item read serves four popcounts. On
    1,000 items x 200,000 rows at 5 % density this took 0.96-0.98 s against 1.15-1.21 s for
    one item at a time.

    Args:
        bits: ``[m, words] uint64``, bit ``t`` of row ``i``: row ``t`` contains item ``i``.
        pairs: ``[m, m] int64`` zeros; receives the symmetric counts, supports on the
            diagonal.
    """
    m, n_words = bits.shape
    block = 256
    for w0 in range(0, n_words, block):
        w1 = min(w0 + block, n_words)
        nb = w1 - w0
        a = 0
        while a + 4 <= m:
            # Contiguous 1-D views let the popcount loop compile to vector instructions.
            r0 = bits[a, w0:w1]
            r1 = bits[a + 1, w0:w1]
            r2 = bits[a + 2, w0:w1]
            r3 = bits[a + 3, w0:w1]
            # From b = a: the counts below the diagonal this adds are overwritten below.
            for b in range(a, m):
                rb = bits[b, w0:w1]
                c0 = np.uint64(0)
                c1 = np.uint64(0)
                c2 = np.uint64(0)
                c3 = np.uint64(0)
                for w in range(nb):
                    x = rb[w]
                    c0 += _popcount(r0[w] & x)
                    c1 += _popcount(r1[w] & x)
                    c2 += _popcount(r2[w] & x)
                    c3 += _popcount(r3[w] & x)
                pairs[a, b] += np.int64(c0)
                pairs[a + 1, b] += np.int64(c1)
                pairs[a + 2, b] += np.int64(c2)
                pairs[a + 3, b] += np.int64(c3)
            a += 4
        for last in range(a, m):
            row_a = bits[last, w0:w1]
            for b in range(last, m):
                row_b = bits[b, w0:w1]
                acc = np.uint64(0)
                for w in range(nb):
                    acc += _popcount(row_a[w] & row_b[w])
                pairs[last, b] += np.int64(acc)
    for a in range(m):
        for b in range(a + 1, m):
            pairs[b, a] = pairs[a, b]


@njit(cache=True)
def _occurrence_ranks(bits, a, rank):
    """Occurrences of local item ``a``: ``rank[w]`` = set bits of ``bits[a]`` before word
    ``w``; returns their number."""
    nocc = 0
    for w in range(bits.shape[1]):
        rank[w] = nocc
        nocc += np.int64(_popcount(bits[a, w]))
    return nocc


@njit(cache=True)
def _child_row_lengths(bits, a, keep, n_keep, rank, nocc, s_len, s_plen):
    """Length of every occurrence row of local item ``a`` restricted to the kept local
    items (``s_plen``: those below ``a``); returns the sum of squared lengths."""
    one = np.uint64(1)
    for r in range(nocc):
        s_len[r] = 0
        s_plen[r] = 0
    for x in range(n_keep):
        i = keep[x]
        for w in range(bits.shape[1]):
            occ = bits[a, w]
            hit = occ & bits[i, w]
            while hit:
                r = rank[w] + np.int64(_popcount(occ & ((one << _lowest_bit(hit)) - one)))
                s_len[r] += 1
                if i < a:
                    s_plen[r] += 1
                hit &= hit - one
    sumsq = 0
    for r in range(nocc):
        sumsq += s_len[r] * s_len[r]
    return sumsq


@njit(cache=True)
def _fill_child_rows(iarena, itop, bits, a, keep, n_keep, loc_items, rank, nocc, s_start, s_len, s_w, cursor):
    """Write the occurrence rows of local item ``a`` (lengths from
    :func:`_child_row_lengths`) at ``iarena[itop:]`` in internal ids, unit weights."""
    one = np.uint64(1)
    total = itop
    for r in range(nocc):
        s_start[r] = total
        cursor[r] = total
        s_w[r] = 1
        total += s_len[r]
    for x in range(n_keep):
        i = keep[x]
        k = loc_items[i]
        for w in range(bits.shape[1]):
            occ = bits[a, w]
            hit = occ & bits[i, w]
            while hit:
                r = rank[w] + np.int64(_popcount(occ & ((one << _lowest_bit(hit)) - one)))
                iarena[cursor[r]] = k
                cursor[r] += 1
                hit &= hit - one
    return total


@njit(cache=True)
def _root_child_rows(iarena, itop, ptr0, items0, bits, a, cnt, minsup, supp, j, s_start, s_len, s_plen, s_w):
    """Occurrence rows of local item ``a`` of a root mined from bits, copied from the
    root's own unit-weight rows (``ptr0``, ``items0``) and restricted to the items with
    ``minsup <= cnt < supp``, written at ``iarena[itop:]``.

    Returns:
        ``(itop, sumsq)``: new top, sum of squared row lengths.
    """
    one = np.uint64(1)
    pos = itop
    r = 0
    sumsq = 0
    for w in range(bits.shape[1]):
        hit = bits[a, w]
        while hit:
            t = w * 64 + np.int64(_lowest_bit(hit))
            s_start[r] = pos
            pl = 0
            for p in range(ptr0[t], ptr0[t + 1]):
                k = items0[p]
                c = cnt[k]
                if c >= minsup and c < supp:
                    iarena[pos] = k
                    pos += 1
                    if k < j:
                        pl += 1
            ln = pos - s_start[r]
            s_len[r] = ln
            s_plen[r] = pl
            s_w[r] = 1
            sumsq += ln * ln
            r += 1
            hit &= hit - one
    return pos, sumsq


@njit(cache=True)
def _root_occurrences(ptr0, bits, a, r_start, r_end, s_w):
    """Rows of the root (``ptr0``, unit weights) that contain local item ``a`` of its bit
    matrix, as ``r_start``/``r_end`` bounds with weights 1; returns their number."""
    one = np.uint64(1)
    r = 0
    for w in range(bits.shape[1]):
        hit = bits[a, w]
        while hit:
            t = w * 64 + np.int64(_lowest_bit(hit))
            r_start[r] = ptr0[t]
            r_end[r] = ptr0[t + 1]
            s_w[r] = 1
            r += 1
            hit &= hit - one
    return r


@njit(cache=True)
def _root_child_sumsq(ptr0, items0, bits, a, cnt, minsup, supp):
    """Sum of squared lengths of the occurrence rows of local item ``a`` of a root mined
    from bits, restricted to the items with ``minsup <= cnt < supp`` (the cost of mining
    them from rows)."""
    one = np.uint64(1)
    sumsq = 0
    for w in range(bits.shape[1]):
        hit = bits[a, w]
        while hit:
            t = w * 64 + np.int64(_lowest_bit(hit))
            ln = 0
            for p in range(ptr0[t], ptr0[t + 1]):
                c = cnt[items0[p]]
                if c >= minsup and c < supp:
                    ln += 1
            sumsq += ln * ln
            hit &= hit - one
    return sumsq


@njit(cache=True)
def _fill_child_bits(bits, a, keep, n_keep, rank, child):
    """Bit matrix of the occurrences of local item ``a``: bit ``r`` of ``child[x]`` is set
    when occurrence ``r`` contains local item ``keep[x]`` (``child`` zeroed)."""
    one = np.uint64(1)
    for x in range(n_keep):
        i = keep[x]
        for w in range(bits.shape[1]):
            occ = bits[a, w]
            hit = occ & bits[i, w]
            while hit:
                r = rank[w] + np.int64(_popcount(occ & ((one << _lowest_bit(hit)) - one)))
                child[x, r >> 6] |= one << np.uint64(r & 63)
                hit &= hit - one


@njit(cache=True)
def _reduce(iarena, larena, ibase, ltop, n, split, s_start, s_len, s_plen, s_w, s_hash, s_rep, table):
    """Merge and compact the ``n`` temporary transactions described by ``s_*``.

    Transaction ``t`` has ``s_len[t]`` items at ``iarena[s_start[t]:]`` (increasing, the
    first ``s_plen[t]`` of them below ``split``) and weight ``s_w[t]``; they were written
    consecutively from ``ibase``. Transactions with no item above ``split`` are dropped
    (no extension can occur in them); those with equal items above ``split`` are merged,
    adding weights and intersecting the prefix items.

    The result is written in place: items compacted from ``ibase``, ``ptr`` (absolute
    offsets into ``iarena``) at ``larena[ltop : ltop + m + 1]`` and weights right after.
    ``larena`` must have room for ``2 n + 1`` entries from ``ltop``.

    Returns:
        ``(m, itop, ltop)``: merged transaction count, new arena tops.
    """
    tsize = 1
    while tsize < 2 * n:
        tsize *= 2
    mask = tsize - 1
    n_rep = 0
    for t in range(n):
        st = s_start[t]
        pl = s_plen[t]
        ln = s_len[t]
        if ln == pl:
            s_rep[t] = -1
            continue
        h = np.int64(ln - pl)
        for p in range(st + pl, st + ln):
            h = h * _HASH_MULT + iarena[p] + 1
        h ^= h >> 29
        s_hash[t] = h
        slot = h & mask
        merged = False
        while table[slot] != 0:
            r = table[slot] - 1
            if s_hash[r] == h and s_len[r] - s_plen[r] == ln - pl:
                rs = s_start[r] + s_plen[r]
                ts = st + pl
                same = True
                for y in range(ln - pl):
                    if iarena[rs + y] != iarena[ts + y]:
                        same = False
                        break
                if same:
                    s_w[r] += s_w[t]
                    s_rep[t] = -1
                    # Keep only the prefix items that every merged transaction has.
                    a = s_start[r]
                    la = s_plen[r]
                    i = 0
                    x = 0
                    out = a
                    while i < la and x < pl:
                        u = iarena[a + i]
                        v = iarena[st + x]
                        if u == v:
                            iarena[out] = u
                            out += 1
                            i += 1
                            x += 1
                        elif u < v:
                            i += 1
                        else:
                            x += 1
                    newp = out - a
                    if newp < la:
                        for y in range(s_len[r] - la):
                            iarena[out + y] = iarena[a + la + y]
                        s_len[r] -= la - newp
                        s_plen[r] = newp
                    merged = True
                    break
            slot = (slot + 1) & mask
        if not merged:
            table[slot] = t + 1
            s_rep[t] = t
            n_rep += 1
    for s in range(tsize):
        table[s] = 0
    ptr_off = ltop
    w_off = ltop + n_rep + 1
    wpos = ibase
    m = 0
    for t in range(n):
        if s_rep[t] != t:
            continue
        larena[ptr_off + m] = wpos
        larena[w_off + m] = s_w[t]
        st = s_start[t]
        for y in range(s_len[t]):
            iarena[wpos + y] = iarena[st + y]
        wpos += s_len[t]
        m += 1
    larena[ptr_off + m] = wpos
    return m, wpos, ltop + 2 * m + 1


@njit(cache=True)
def _build_merged(
    src,
    iarena,
    larena,
    itop,
    ltop,
    n,
    j,
    cnt,
    minsup,
    supp,
    r_start,
    r_end,
    s_w,
    s_start,
    s_len,
    s_next,
    s_hash,
    s_tail,
    table,
):
    """Reduced conditional database of the extension by ``j`` from its ``n`` occurrences,
    written at the arena tops.

    Occurrence ``x`` is the row ``src[r_start[x]:r_end[x]]`` (increasing items, ``j``
    among them) of weight ``s_w[x]``. A row keeps the items that are frequent among the
    occurrences and not in the closure (``minsup <= cnt[k] < supp``); rows with no kept
    item above ``j`` are dropped, rows with the same kept items above ``j`` are merged
    (weights added) and keep the prefix items (below ``j``) that all of them have.

    Rows are merged on their items above ``j`` alone, and the prefix of a merged row is
    the intersection of its members' prefixes, built from the first member and stopped as
    soon as it is empty: many-member rows (dense, categorical data) usually share no prefix
    item, so most prefix items are never copied. ``r_end``, ``s_*`` are scratch of at
    least ``n`` entries, ``table`` a zeroed hash table of at least ``2 n`` slots (a power of
    two), zeroed again on return.

    Returns:
        ``(iarena, larena, m, itop, ltop)``: ``m`` rows, ``ptr`` at the old ``ltop``,
        weights right after it.
    """
    total = 0
    for x in range(n):
        total += r_end[x] - r_start[x]
    # Kept items above j are first written to a scratch area above the largest possible
    # output, which is then written from itop without overtaking them.
    iarena = _grow(iarena, itop + 2 * total)
    larena = _grow(larena, ltop + 2 * n + 1)
    tsize = 1
    while tsize < 2 * n:
        tsize *= 2
    mask = tsize - 1
    wpos = itop + total
    n_rep = 0
    for x in range(n):
        s0 = r_start[x]
        e = r_end[x]
        p = e
        while p > s0 and src[p - 1] > j:
            p -= 1
        r_end[x] = p
        st = wpos
        # Branch-free: whether an item is kept is as good as random.
        for q in range(p, e):
            k = src[q]
            c = cnt[k]
            iarena[wpos] = k
            wpos += np.int64((c >= minsup) & (c < supp))
        ln = wpos - st
        s_tail[x] = -1
        s_next[x] = -1
        if ln == 0:
            continue
        h = _row_hash(iarena, st, wpos)
        s_hash[x] = h
        s_start[x] = st
        s_len[x] = ln
        slot, r = _same_row(table, mask, h, st, ln, iarena, s_hash, s_start, s_len)
        if r >= 0:
            s_w[r] += s_w[x]
            s_next[s_tail[r]] = x
            s_tail[r] = x
            wpos = st
        else:
            table[slot] = x + 1
            s_tail[x] = x
            n_rep += 1
    for s in range(tsize):
        table[s] = 0
    w_off = ltop + n_rep + 1
    out = itop
    m = 0
    for x in range(n):
        if s_tail[x] < 0:
            continue
        larena[ltop + m] = out
        larena[w_off + m] = s_w[x]
        pl = 0
        for q in range(r_start[x], r_end[x]):
            k = src[q]
            c = cnt[k]
            iarena[out + pl] = k
            pl += np.int64((k < j) & (c >= minsup) & (c < supp))
        y = s_next[x]
        while pl > 0 and y >= 0:
            q = r_start[y]
            e = r_end[y]
            i = 0
            o = 0
            while i < pl and q < e:
                u = iarena[out + i]
                v = src[q]
                if u == v:
                    iarena[out + o] = u
                    o += 1
                    i += 1
                    q += 1
                elif u < v:
                    i += 1
                else:
                    q += 1
            pl = o
            y = s_next[y]
        st = s_start[x]
        for z in range(s_len[x]):
            iarena[out + pl + z] = iarena[st + z]
        out += pl + s_len[x]
        m += 1
    larena[ltop + m] = out
    return iarena, larena, m, out, ltop + 2 * m + 1


@njit(cache=True)
def _deliver(iarena, larena, itop, ltop, ptr_off, n, core, cands, ncand, slot, occn):
    """Occurrence deliver: list, for every candidate item, the transactions containing it.

    One pass over the items above ``core`` of the ``n`` transactions of the node at
    ``larena[ptr_off:]`` counts the occurrences, a second fills the lists.

    Returns:
        ``(iarena, larena, itop, ltop, cand_off, bptr_off)``: candidate items at
        ``iarena[cand_off : cand_off + ncand]``, list ``c`` at
        ``iarena[larena[bptr_off + c] : larena[bptr_off + c + 1]]``.
    """
    nnz = larena[ptr_off + n] - larena[ptr_off]
    iarena = _grow(iarena, itop + ncand + nnz)
    larena = _grow(larena, ltop + ncand + 1)
    cand_off = itop
    for c in range(ncand):
        iarena[cand_off + c] = cands[c]
        slot[cands[c]] = c
        occn[c] = 0
    for t in range(n):
        s = larena[ptr_off + t]
        p = larena[ptr_off + t + 1] - 1
        while p >= s and iarena[p] > core:
            occn[slot[iarena[p]]] += 1
            p -= 1
    bptr_off = ltop
    pos = cand_off + ncand
    for c in range(ncand):
        larena[bptr_off + c] = pos
        pos += occn[c]
        occn[c] = larena[bptr_off + c]
    larena[bptr_off + ncand] = pos
    for t in range(n):
        s = larena[ptr_off + t]
        p = larena[ptr_off + t + 1] - 1
        while p >= s and iarena[p] > core:
            c = slot[iarena[p]]
            iarena[occn[c]] = t
            occn[c] += 1
            p -= 1
    for c in range(ncand):
        slot[cands[c]] = -1
    return iarena, larena, pos, ltop + ncand + 1, cand_off, bptr_off


@njit(cache=True)
def _prefix_shared(iarena, larena, ptr_off, b0, b1, j, buf):
    """Whether an item below ``j`` is in every occurrence ``iarena[b0:b1]`` of ``j``, i.e.
    the extension by ``j`` is not prefix-preserving.

    Intersects the items below ``j`` row by row and stops as soon as nothing is left, which
    for an extension that passes usually takes a few rows; a failing one is then skipped
    without counting its occurrences.
    """
    t = iarena[b0]
    nb = 0
    for p in range(larena[ptr_off + t], larena[ptr_off + t + 1]):
        k = iarena[p]
        if k >= j:
            break
        buf[nb] = k
        nb += 1
    q = b0 + 1
    while nb > 0 and q < b1:
        t = iarena[q]
        p = larena[ptr_off + t]
        e = larena[ptr_off + t + 1]
        x = 0
        out = 0
        while x < nb and p < e:
            u = buf[x]
            v = iarena[p]
            if v >= j:
                break
            if u == v:
                buf[out] = u
                out += 1
                x += 1
                p += 1
            elif u < v:
                x += 1
            else:
                p += 1
        nb = out
        q += 1
    return nb > 0


@njit(cache=True)
def _count(iarena, larena, ptr_off, w_off, b0, b1, cnt, touched, batch):
    """Weighted item counts over the occurrence list ``iarena[b0:b1]`` of a candidate.

    The rows lie anywhere in the arena, so each costs a wait on memory: their bounds and
    weights are read ``_COUNT_BATCH`` rows at a time into ``batch`` (``[3, _COUNT_BATCH]``
    int64), loads that do not wait for each other, before their items are counted. An item
    is listed in ``touched`` by writing it at the end of the list whatever its count and
    moving the end when the count was zero, not by a branch that the processor mispredicts
    once per new item (``touched`` holds one more than the items). On retail at 0.1 % (one
    core of an Intel Xeon), counting every frequent item's occurrences took 67.7 ms one row
    at a time with a branch, 39.5 ms without it and 31-33 ms with the batches; the whole
    search 116.2 -> 83.7 ms, Quest T10I4D100K 161.8 -> 143.8 ms (best of 11, interleaved;
    chess and mushroom, mined from bits, unchanged).

    Returns:
        ``(support, n_touched)``; ``cnt[k]`` holds the support of the candidate extended
        by ``k`` for the ``n_touched`` items listed in ``touched``.
    """
    supp = 0
    ntouch = 0
    starts = batch[0]
    ends = batch[1]
    weights = batch[2]
    for q0 in range(b0, b1, _COUNT_BATCH):
        nb = min(_COUNT_BATCH, b1 - q0)
        for i in range(nb):
            t = iarena[q0 + i]
            starts[i] = larena[ptr_off + t]
            ends[i] = larena[ptr_off + t + 1]
            weights[i] = larena[w_off + t]
        for i in range(nb):
            wt = weights[i]
            supp += wt
            for p in range(starts[i], ends[i]):
                k = iarena[p]
                touched[ntouch] = k
                ntouch += cnt[k] == 0
                cnt[k] += wt
    return supp, ntouch


@njit(cache=True)
def _close(cnt, touched, ntouch, supp, j, minsup, iset, ilen, cand_buf):
    """Prefix-preserving closure test of the extension by ``j``.

    Returns:
        ``(n_closure, n_candidates)``: -1 closure items when an item below ``j`` is in every
        occurrence (the closure is reached from another parent); otherwise the closure items
        (``j`` among them) are written to ``iset[ilen:]`` and the child's extension
        candidates (frequent, above ``j``, not in the closure) to ``cand_buf``.
    """
    nclo = 0
    nc = 0
    for x in range(ntouch):
        k = touched[x]
        c = cnt[k]
        if c == supp:
            if k < j:
                return -1, 0
            iset[ilen + nclo] = k
            nclo += 1
        elif c >= minsup and k > j:
            cand_buf[nc] = k
            nc += 1
    return nclo, nc


@njit(cache=True)
def _build_child(
    iarena,
    larena,
    itop,
    ltop,
    ptr_off,
    w_off,
    b0,
    b1,
    j,
    supp,
    minsup,
    cnt,
    r_start,
    r_end,
    s_w,
    s_start,
    s_len,
    s_next,
    s_hash,
    s_tail,
    table,
):
    """Write the reduced conditional database of the extension by ``j`` at the arena tops,
    from its occurrence list ``iarena[b0:b1]`` in the node database at ``larena[ptr_off:]``
    (weights at ``larena[w_off:]``); see :func:`_build_merged`.

    Returns:
        ``(iarena, larena, m, itop, ltop)``: ``m`` transactions, ``ptr`` at the old
        ``ltop``, weights right after it.
    """
    nocc = b1 - b0
    for x in range(nocc):
        t = iarena[b0 + x]
        r_start[x] = larena[ptr_off + t]
        r_end[x] = larena[ptr_off + t + 1]
        s_w[x] = larena[w_off + t]
    return _build_merged(
        iarena,
        iarena,
        larena,
        itop,
        ltop,
        nocc,
        j,
        cnt,
        minsup,
        supp,
        r_start,
        r_end,
        s_w,
        s_start,
        s_len,
        s_next,
        s_hash,
        s_tail,
        table,
    )


@njit(cache=True)
def _trie_of_rows(ptr0, items0, n_items, max_nodes):
    """Prefix tree of the rows read from their last (most frequent) item down.

    A node stands for the rows whose items from the node's item up are exactly those on
    its path from the tree's root (node 0); the rows containing item ``j`` are therefore
    split by their items above ``j`` among the nodes of ``j``, which categorical data such
    as mushroom or chess share heavily. Children are found through a hash table on
    ``(parent, item)``.

    Args:
        ptr0, items0: unit-weight rows (items increasing).
        n_items: number of internal item ids.
        max_nodes: give up (return 0 nodes) once the tree would have more nodes than this.

    Returns:
        ``(n_nodes, item, parent, count, depth, ends)``: ``[cap]`` arrays of which the
        first ``n_nodes`` entries are used (node 0, the root, has item -1): a node's item,
        its parent, the number of rows through it, its depth (the root's is 0) and whether
        a row ends there.
    """
    n = ptr0.shape[0] - 1
    cap = min(items0.shape[0], max_nodes) + 1
    t_item = np.empty(cap, np.int32)
    t_parent = np.empty(cap, np.int32)
    t_count = np.zeros(cap, np.int64)
    t_depth = np.empty(cap, np.int32)
    t_end = np.zeros(cap, np.bool_)
    t_item[0] = -1
    t_parent[0] = -1
    t_depth[0] = 0
    tsize = 1
    while tsize < 2 * cap:
        tsize *= 2
    mask = tsize - 1
    table = np.zeros(tsize, np.int32)
    nn = 1
    for t in range(n):
        v = 0
        for p in range(ptr0[t + 1] - 1, ptr0[t] - 1, -1):
            k = items0[p]
            h = (np.int64(v) * n_items + k + 1) * _HASH_MULT
            slot = (h ^ (h >> 31)) & mask
            while True:
                u = table[slot]
                if u == 0:
                    if nn == cap:
                        return 0, t_item, t_parent, t_count, t_depth, t_end
                    u = nn
                    nn += 1
                    t_item[u] = k
                    t_parent[u] = v
                    t_depth[u] = t_depth[v] + 1
                    table[slot] = u
                    break
                if t_parent[u] == v and t_item[u] == k:
                    break
                slot = (slot + 1) & mask
            t_count[u] += 1
            v = u
        t_end[v] = True
    return nn, t_item, t_parent, t_count, t_depth, t_end


@njit(cache=True)
def _build_trie(ptr0, items0, n_items, max_nodes):
    """:func:`_trie_of_rows`, given up early (no tree) when a tree of the first sixteenth of
    many rows needs a node for more than 3 of their items in 4: rows that share little show
    it early, and the full attempt allocates for ``max_nodes`` nodes."""
    n = ptr0.shape[0] - 1
    if n >= 1024:
        head = n // 16
        if _trie_of_rows(ptr0[: head + 1], items0, n_items, 3 * ptr0[head] // 4)[0] == 0:
            none = _trie_of_rows(ptr0[:1], items0, n_items, 0)
            return 0, none[1], none[2], none[3], none[4], none[5]
    return _trie_of_rows(ptr0, items0, n_items, max_nodes)


@njit(cache=True)
def _trie_below(n_nodes, t_item, t_parent, t_end, n_words):
    """``[n_nodes, n_words] uint64``: bit ``k`` of row ``v`` is set when item ``k`` is in
    every row through node ``v`` below the node's item (none when a row ends at ``v``).

    Children are numbered after their parents, so one pass from the last node up
    intersects every node's children into it.
    """
    below = np.empty((n_nodes, n_words), np.uint64)
    full = ~np.uint64(0)
    for v in range(n_nodes):
        for w in range(n_words):
            below[v, w] = np.uint64(0) if t_end[v] else full
    one = np.uint64(1)
    for v in range(n_nodes - 1, 0, -1):
        p = t_parent[v]
        k = t_item[v]
        for w in range(n_words):
            word = below[v, w]
            if w == k >> 6:
                word |= one << np.uint64(k & 63)
            below[p, w] &= word
    return below


@njit(cache=True)
def _trie_nodes_by_item(n_nodes, t_item, n_items):
    """The tree's nodes grouped by item: those of item ``k`` are
    ``nodes[start[k]:start[k + 1]]``."""
    start = np.zeros(n_items + 1, np.int64)
    for v in range(1, n_nodes):
        start[t_item[v] + 1] += 1
    for k in range(n_items):
        start[k + 1] += start[k]
    fill = start[:n_items].copy()
    nodes = np.empty(max(n_nodes - 1, 1), np.int32)
    for v in range(1, n_nodes):
        k = t_item[v]
        nodes[fill[k]] = v
        fill[k] += 1
    return start, nodes


@njit(cache=True)
def _trie_child(
    iarena,
    larena,
    itop,
    ltop,
    t_item,
    t_parent,
    t_count,
    t_depth,
    t_below,
    nodes,
    lo,
    hi,
    j,
    cnt,
    minsup,
    supp,
    s_w,
    s_start,
    s_len,
    s_hash,
    s_rep,
    table,
    pre,
):
    """Reduced conditional database of the extension by ``j`` of a unit-weight root, built
    from the prefix tree's nodes of ``j`` (``nodes[lo:hi]``) instead of its rows.

    The result is the one :func:`_build_merged` makes from the rows containing ``j`` (up to
    the order of the rows): a node's items above ``j`` are its ancestors' items, read in
    increasing order on the way up, and its prefix items are the bits of ``t_below``; a
    merged row keeps the intersection of its nodes' bits. Each node is one row of weight
    ``t_count``, so the work is the tree's paths rather than the rows' items. ``s_*`` are
    scratch of at least ``hi - lo`` entries, ``pre`` ``[hi - lo, words] uint64`` scratch,
    ``table`` a zeroed hash table of at least ``2 (hi - lo)`` slots, zeroed again on return.

    Returns:
        ``(iarena, larena, m, itop, ltop)`` as :func:`_build_merged`.
    """
    n = hi - lo
    n_words = t_below.shape[1]
    above = 0
    bound = 0
    for x in range(n):
        v = nodes[lo + x]
        above += t_depth[v] - 1
        for w in range(n_words):
            bound += np.int64(_popcount(t_below[v, w]))
    # Kept items above j are first written to a scratch area past room for every prefix,
    # so that the output, written from itop, never overtakes them.
    iarena = _grow(iarena, itop + bound + above)
    larena = _grow(larena, ltop + 2 * n + 1)
    tsize = 1
    while tsize < 2 * n:
        tsize *= 2
    mask = tsize - 1
    wpos = itop + bound
    n_rep = 0
    for x in range(n):
        v = nodes[lo + x]
        st = wpos
        u = t_parent[v]
        while u > 0:
            k = t_item[u]
            c = cnt[k]
            iarena[wpos] = k
            wpos += np.int64((c >= minsup) & (c < supp))
            u = t_parent[u]
        ln = wpos - st
        s_rep[x] = -1
        if ln == 0:
            continue
        h = _row_hash(iarena, st, wpos)
        s_hash[x] = h
        s_start[x] = st
        s_len[x] = ln
        slot, r = _same_row(table, mask, h, st, ln, iarena, s_hash, s_start, s_len)
        if r >= 0:
            s_w[r] += t_count[v]
            for w in range(n_words):
                pre[r, w] &= t_below[v, w]
            wpos = st
        else:
            table[slot] = x + 1
            s_rep[x] = x
            s_w[x] = t_count[v]
            for w in range(n_words):
                pre[x, w] = t_below[v, w]
            n_rep += 1
    for s in range(tsize):
        table[s] = 0
    one = np.uint64(1)
    w_off = ltop + n_rep + 1
    out = itop
    m = 0
    for x in range(n):
        if s_rep[x] != x:
            continue
        larena[ltop + m] = out
        larena[w_off + m] = s_w[x]
        for w in range(n_words):
            word = pre[x, w]
            while word:
                k = w * 64 + np.int64(_lowest_bit(word))
                c = cnt[k]
                iarena[out] = k
                out += np.int64((c >= minsup) & (c < supp))
                word &= word - one
        st = s_start[x]
        for z in range(s_len[x]):
            iarena[out + z] = iarena[st + z]
        out += s_len[x]
        m += 1
    larena[ltop + m] = out
    return iarena, larena, m, out, ltop + 2 * m + 1


@njit(cache=True)
def _weighted_count(x, w, base, unit):
    """Total weight of the rows in bit mask ``x`` (row ``base + b`` for bit ``b``; ``w``:
    row weights; ``unit``: all 1)."""
    if unit:
        return np.int64(_popcount(x))
    total = 0
    one = np.uint64(1)
    while x:
        total += w[base + np.int64(_lowest_bit(x))]
        x &= x - one
    return total


@njit(cache=True)
def _mine_small(
    iarena,
    larena,
    ptr_off,
    n,
    core,
    ncand,
    iset,
    ilen0,
    minsup,
    max_size,
    slot,
    litem,
    sarena,
    out_items,
    out_ptr,
    out_supp,
    n_out,
):
    """Depth-first LCM below a node of at most ``SMALL_MAX_ROWS`` (merged) rows, from one bit
    mask per item.

    Bit ``t`` of an item's mask is set when row ``t`` of the node database (at
    ``larena[ptr_off:]``, weights after the ``n + 1`` offsets) holds the item, a prefix item
    of a merged row counting only when every merged row had it (as the rows path tests
    prefix preservation). Below the node every occurrence set is a mask ``O``: an extension
    by ``j`` occurs in ``O & mask[j]``, is not prefix-preserving when an item below ``j``
    (and not in the set) has a mask containing it, and its closure is the items above ``j``
    whose masks contain it; a node keeps the items that still occur (below its core) or are
    frequent (above), so one pass over them per extension does the whole test and builds
    the child. Masks of more than one word are squeezed to one (the child's live items'
    bits at its occurrences only) as soon as a child occurs in at most 64 rows, so that
    deep nodes cost a word per item whatever the node's size. ``slot`` is ``-1`` everywhere
    and so on return; ``litem`` scratch of ``n_items`` entries.

    Declines (returns ``ok = False``, nothing written) when the pass over all the node's
    items per extension would cost more than counting its rows (sparse data).

    Returns:
        ``(ok, sarena, out_items, out_ptr, out_supp, n_out)``.
    """
    one = np.uint64(1)
    w_off = ptr_off + n + 1
    nw0 = (n + 63) // 64
    unit = True
    sumsq = 0
    L = 0
    for t in range(n):
        if larena[w_off + t] != 1:
            unit = False
        s = larena[ptr_off + t]
        e = larena[ptr_off + t + 1]
        sumsq += (e - s) * (e - s)
        for p in range(s, e):
            k = iarena[p]
            if slot[k] < 0:
                slot[k] = 0
                litem[L] = k
                L += 1
    if ncand * L * nw0 > SMALL_COST * sumsq:
        for x in range(L):
            slot[litem[x]] = -1
        return False, sarena, out_items, out_ptr, out_supp, n_out
    items = np.sort(litem[:L])
    for x in range(L):
        litem[x] = items[x]
        slot[items[x]] = x
    # Mask tables: item k's mask at a frame is marena[f_moff + k * f_nw:][:f_nw], row weights
    # warena[f_woff:]; the node's own first, one-word tables of squeezed frames after it.
    marena = np.zeros(L * nw0 + 4 * L + 64, np.uint64)
    warena = np.empty(n + 4 * 64, np.int64)
    for t in range(n):
        warena[t] = larena[w_off + t]
        bit = one << np.uint64(t & 63)
        tw = t >> 6
        for p in range(larena[ptr_off + t], larena[ptr_off + t + 1]):
            marena[slot[iarena[p]] * nw0 + tw] |= bit
    # Bit planes of the weights (bit t of planes[b * nw0 + y]: bit b of row 64 y + t's weight)
    # count a mask of many rows in n_planes popcounts a word.
    n_planes = 0
    if nw0 > 1 and not unit:
        heaviest = 1
        for t in range(n):
            heaviest = max(heaviest, warena[t])
        while heaviest >> n_planes:
            n_planes += 1
    planes = np.zeros(n_planes * nw0, np.uint64)
    for t in range(n if n_planes > 0 else 0):
        for b in range(n_planes):
            if warena[t] >> b & 1:
                planes[b * nw0 + (t >> 6)] |= one << np.uint64(t & 63)
    first = L
    for x in range(L):
        slot[litem[x]] = -1
        if litem[x] > core and first == L:
            first = x
    # Frames: occurrence mask (f_occ[d * MAXW:][:f_nw]), mask and weight tables, their ends,
    # live items (local ids, increasing) at sarena[f_a:f_a + f_na], the next one to extend
    # by (those before the first candidate are prefix items), set size.
    maxw = SMALL_MAX_ROWS // 64
    depth_cap = L + 2
    f_occ = np.empty(depth_cap * maxw, np.uint64)
    f_nw = np.empty(depth_cap, np.int64)
    f_moff = np.empty(depth_cap, np.int64)
    f_woff = np.empty(depth_cap, np.int64)
    f_mend = np.empty(depth_cap, np.int64)
    f_wend = np.empty(depth_cap, np.int64)
    f_a = np.empty(depth_cap, np.int64)
    f_na = np.empty(depth_cap, np.int64)
    f_cur = np.empty(depth_cap, np.int64)
    f_len = np.empty(depth_cap, np.int64)
    pos = np.empty(64, np.int64)
    sarena = _grow(sarena, (L + 1) * (L + 2))
    for x in range(L):
        sarena[x] = x
    for y in range(nw0):
        bits_left = n - 64 * y
        f_occ[y] = (one << np.uint64(bits_left)) - one if bits_left < 64 else ~np.uint64(0)
    f_nw[0] = nw0
    f_moff[0] = 0
    f_woff[0] = 0
    f_mend[0] = L * nw0
    f_wend[0] = n
    f_a[0] = 0
    f_na[0] = L
    f_cur[0] = first
    f_len[0] = ilen0
    d = 0
    while d >= 0:
        if f_cur[d] == f_na[d]:
            d -= 1
            continue
        a_off = f_a[d]
        nw = f_nw[d]
        moff = f_moff[d]
        woff = f_woff[d]
        jl = sarena[a_off + f_cur[d]]
        f_cur[d] += 1
        # The extension's occurrences, in the next frame's slot.
        ob = (d + 1) * maxw
        nocc = 0
        for y in range(nw):
            f_occ[ob + y] = f_occ[d * maxw + y] & marena[moff + jl * nw + y]
            nocc += np.int64(_popcount(f_occ[ob + y]))
        supp = 0
        for y in range(nw):
            supp += _weighted_count(f_occ[ob + y], warena, woff + 64 * y, unit)
        ilen = f_len[d]
        base = a_off + f_na[d]
        top = base
        nclo = 0
        fail = False
        nprefix = 0
        for q in range(a_off, a_off + f_na[d]):
            k = sarena[q]
            if k == jl:
                continue
            km = moff + k * nw
            inside = True
            meets = False
            for y in range(nw):
                x = f_occ[ob + y] & marena[km + y]
                inside &= x == f_occ[ob + y]
                meets |= x != 0
            if k < jl:
                if inside:
                    fail = True
                    break
                if meets:
                    sarena[top] = k
                    top += 1
                    nprefix += 1
            elif inside:
                iset[ilen + 1 + nclo] = litem[k]
                nclo += 1
            elif meets:
                # The weight of the rows holding k, or of those that do not when fewer.
                hits = 0
                for y in range(nw):
                    hits += np.int64(_popcount(f_occ[ob + y] & marena[km + y]))
                c = 0
                if unit:
                    c = hits
                elif nw > 1 and min(hits, nocc - hits) > n_planes:
                    # Frames of several words use the node's own rows: popcounts per bit of
                    # the weights.
                    for y in range(nw):
                        x = f_occ[ob + y] & marena[km + y]
                        for b in range(n_planes):
                            c += np.int64(_popcount(x & planes[b * nw0 + y])) << b
                elif 2 * hits <= nocc:
                    for y in range(nw):
                        c += _weighted_count(f_occ[ob + y] & marena[km + y], warena, woff + 64 * y, unit)
                else:
                    c = supp
                    for y in range(nw):
                        c -= _weighted_count(f_occ[ob + y] & ~marena[km + y], warena, woff + 64 * y, unit)
                if c >= minsup:
                    sarena[top] = k
                    top += 1
        if fail:
            continue
        size = ilen + 1 + nclo
        if max_size >= 0 and size > max_size:
            continue
        iset[ilen] = litem[jl]
        if n_out + 2 > out_supp.shape[0]:
            out_supp = _grow(out_supp, n_out + 2)
            out_ptr = _grow(out_ptr, n_out + 2)
        out_items = _grow(out_items, out_ptr[n_out] + size)
        start = out_ptr[n_out]
        for x in range(size):
            out_items[start + x] = iset[x]
        out_ptr[n_out + 1] = start + size
        out_supp[n_out] = supp
        n_out += 1
        na = top - base
        if na > nprefix and (max_size < 0 or size < max_size):
            nd = d + 1
            f_a[nd] = base
            f_na[nd] = na
            f_cur[nd] = nprefix
            f_len[nd] = size
            if nw > 1 and nocc <= 64:
                # Squeeze: bit i of a live item's new mask is its bit at the i-th occurrence.
                mtop = f_mend[d]
                wtop = f_wend[d]
                marena = _grow(marena, mtop + L)
                warena = _grow(warena, wtop + nocc)
                i = 0
                for y in range(nw):
                    word = f_occ[ob + y]
                    while word:
                        t = 64 * y + np.int64(_lowest_bit(word))
                        pos[i] = t
                        warena[wtop + i] = warena[woff + t]
                        i += 1
                        word &= word - one
                for q in range(base, top):
                    k = sarena[q]
                    km = moff + k * nw
                    new = np.uint64(0)
                    for i in range(nocc):
                        t = pos[i]
                        new |= ((marena[km + (t >> 6)] >> np.uint64(t & 63)) & one) << np.uint64(i)
                    marena[mtop + k] = new
                f_occ[nd * maxw] = (one << np.uint64(nocc)) - one if nocc < 64 else ~np.uint64(0)
                f_nw[nd] = 1
                f_moff[nd] = mtop
                f_woff[nd] = wtop
                f_mend[nd] = mtop + L
                f_wend[nd] = wtop + nocc
            else:
                f_nw[nd] = nw
                f_moff[nd] = moff
                f_woff[nd] = woff
                f_mend[nd] = f_mend[d]
                f_wend[nd] = f_wend[d]
            d = nd
    return True, sarena, out_items, out_ptr, out_supp, n_out


@njit(cache=True)
def _store_unmerged(larena, ltop, n, s_start, s_len):
    """Record ``n`` rows written consecutively (by :func:`_fill_child_rows` or
    :func:`_root_child_rows`) as a node database with unit weights: ``ptr`` at
    ``larena[ltop:]``, weights after it."""
    for t in range(n):
        larena[ltop + t] = s_start[t]
        larena[ltop + n + 1 + t] = 1
    larena[ltop + n] = s_start[n - 1] + s_len[n - 1] if n > 0 else 0
    return ltop + 2 * n + 1


@njit(cache=True, nogil=True)
def enumerate_closed(ptr0, items0, w0, n_items, core0, iset0, minsup, max_size, first_level_only, bits_mode, only):
    """Depth-first LCM below one node of the enumeration tree.

    Args:
        ptr0, items0, w0: conditional database of the node (see the module docstring);
            items may include prefix items below ``core0``.
        n_items: number of internal item ids.
        core0: core item of the node, -1 for the root.
        iset0: ``[size] int32`` internal items of the node's closed itemset (without the
            items common to the whole database, which the caller adds).
        minsup: absolute minimum support (weighted rows), >= 1.
        max_size: largest reported itemset size counted in internal items, -1 for no limit.
        first_level_only: report the node's children and stop there, keeping each child's
            conditional database for the caller instead of descending into it (unmerged
            when the child would be mined from bits, so that it still can be).
        bits_mode: ``BITS_NEVER``, ``BITS_AUTO`` or ``BITS_ALWAYS``.
        only: ``[n_items] bool``, the extension items of the node whose children (and
            everything below them) are searched, the others skipped; empty: all. The node
            itself is still counted in full, so a child searched comes out exactly as in
            the whole search (which is how a task of the distributed search mines its
            share of the first level).

    Returns:
        ``(out_items, out_ptr, out_supp, n_out, iarena, larena, children)``: the itemsets
        found (closed sets strictly below the node) as CSR ``out_items[out_ptr[i]:
        out_ptr[i + 1]]`` (unsorted internal ids, ``iset0`` included) with supports; with
        ``first_level_only``, ``children[i] = (core, ptr_off, n, items_lo, items_hi)``
        locates itemset ``i``'s database in the arenas (``n = 0``: a leaf), else empty.
    """
    n0 = ptr0.shape[0] - 1
    nnz0 = items0.shape[0]
    nscr = n0 if n0 > 1 else 1
    iarena = np.empty(max(1024, 2 * nnz0 + 2 * n_items), np.int32)
    larena = np.empty(max(1024, 4 * n0 + 2 * n_items + 4), np.int64)
    barena = np.empty(1024, np.uint64)
    s_start = np.empty(nscr, np.int64)
    s_len = np.empty(nscr, np.int64)
    s_plen = np.empty(nscr, np.int64)
    s_w = np.empty(nscr, np.int64)
    s_hash = np.empty(nscr, np.int64)
    s_rep = np.empty(nscr, np.int64)
    r_start = np.empty(nscr, np.int64)
    r_end = np.empty(nscr, np.int64)
    tsize = 1
    while tsize < 2 * nscr:
        tsize *= 2
    table = np.zeros(tsize, np.int64)
    cnt = np.zeros(n_items, np.int64)
    touched = np.empty(n_items + 1, np.int32)  # _count writes one past its last item
    batch = np.empty((3, _COUNT_BATCH), np.int64)
    cand_buf = np.empty(n_items, np.int32)
    keep = np.empty(n_items, np.int64)
    rank = np.empty((n0 + 63) // 64 + 1, np.int64)
    slot = np.full(n_items, -1, np.int32)
    occn = np.empty(n_items + 1, np.int64)
    depth_cap = n_items + 2
    iset = np.empty(n_items + 1, np.int32)
    litem = np.empty(n_items, np.int32)
    sarena = np.empty(1024, np.int32)
    f_dense = np.zeros(depth_cap, np.bool_)
    f_ptr = np.empty(depth_cap, np.int64)
    f_w = np.empty(depth_cap, np.int64)
    f_len = np.empty(depth_cap, np.int64)
    f_cand = np.empty(depth_cap, np.int64)
    f_bptr = np.empty(depth_cap, np.int64)
    f_ncand = np.empty(depth_cap, np.int64)
    f_cur = np.empty(depth_cap, np.int64)
    f_itop = np.empty(depth_cap, np.int64)
    f_ltop = np.empty(depth_cap, np.int64)
    f_btop = np.empty(depth_cap, np.int64)
    f_m = np.empty(depth_cap, np.int64)
    f_loc = np.empty(depth_cap, np.int64)
    f_bits = np.empty(depth_cap, np.int64)
    f_nw = np.empty(depth_cap, np.int64)
    f_pairs = np.empty(depth_cap, np.int64)
    out_items = np.empty(4096, np.int32)
    out_ptr = np.zeros(1024, np.int64)
    out_supp = np.empty(1024, np.int64)
    n_out = 0
    children = np.empty((1024 if first_level_only else 0, 5), np.int64)

    ilen0 = iset0.shape[0]
    for x in range(ilen0):
        iset[x] = iset0[x]
    f_itop[0] = 0
    f_ltop[0] = 0
    f_btop[0] = 0
    f_len[0] = ilen0
    f_cur[0] = 0

    # Items present in the node, increasing: the local items of a bit matrix.
    m0 = 0
    for p in range(nnz0):
        k = items0[p]
        if cnt[k] == 0:
            cnt[k] = 1
            cand_buf[m0] = k
            m0 += 1
    for x in range(m0):
        cnt[cand_buf[x]] = 0
    present = np.sort(cand_buf[:m0])
    unit = True
    sumsq = 0
    for t in range(n0):
        if w0[t] != 1:
            unit = False
        ln = ptr0[t + 1] - ptr0[t]
        sumsq += ln * ln
    if unit and _prefer_bits(m0, n0, sumsq, BITS_ALWAYS if bits_mode == BITS_ROOT else bits_mode):
        nw = (n0 + 63) // 64
        iarena[:m0] = present
        nc = 0
        for x in range(m0):
            slot[present[x]] = x
            if present[x] > core0:
                iarena[m0 + nc] = x
                nc += 1
        barena = _grow(barena, m0 * nw)
        bits = barena[: m0 * nw].reshape((m0, nw))
        bits[:, :] = 0
        for t in range(n0):
            bit = np.uint64(1) << np.uint64(t & 63)
            for p in range(ptr0[t], ptr0[t + 1]):
                bits[slot[items0[p]], t >> 6] |= bit
        for x in range(m0):
            slot[present[x]] = -1
        larena = _grow(larena, m0 * m0)
        pairs = larena[: m0 * m0].reshape((m0, m0))
        pairs[:, :] = 0
        _pair_counts_into(bits, pairs)
        itop = m0 + nc
        ltop = m0 * m0
        btop = m0 * nw
        f_dense[0] = True
        f_loc[0] = 0
        f_m[0] = m0
        f_cand[0] = m0
        f_ncand[0] = nc
        f_bits[0] = 0
        f_nw[0] = nw
        f_pairs[0] = 0
    else:
        for t in range(n0):
            s_start[t] = ptr0[t]
            s_len[t] = ptr0[t + 1] - ptr0[t]
            s_w[t] = w0[t]
            pl = 0
            for p in range(ptr0[t], ptr0[t + 1]):
                if items0[p] < core0:
                    pl += 1
            s_plen[t] = pl
        for p in range(nnz0):
            iarena[p] = items0[p]
        m, itop, ltop = _reduce(iarena, larena, 0, 0, n0, core0, s_start, s_len, s_plen, s_w, s_hash, s_rep, table)
        btop = 0
        nc = 0
        for x in range(m0):
            if present[x] > core0:
                cand_buf[nc] = present[x]
                nc += 1
        f_ptr[0] = 0
        f_w[0] = m + 1
        f_ncand[0] = nc
        iarena, larena, itop, ltop, f_cand[0], f_bptr[0] = _deliver(
            iarena, larena, itop, ltop, 0, m, core0, cand_buf, nc, slot, occn
        )

    # Prefix tree of the root's rows, built when a child of a root mined from bits is
    # first built from rows (0: not yet tried, 1: built, -1: not used).
    trie_state = 0
    t_item = np.empty(0, np.int32)
    t_parent = np.empty(0, np.int32)
    t_count = np.empty(0, np.int64)
    t_depth = np.empty(0, np.int32)
    t_below = np.empty((0, 1), np.uint64)
    t_start = np.zeros(n_items + 1, np.int64)
    t_nodes = np.empty(0, np.int32)
    t_pre = np.empty((0, 1), np.uint64)

    d = 0
    while d >= 0:
        if f_cur[d] == f_ncand[d]:
            itop = f_itop[d]
            ltop = f_ltop[d]
            btop = f_btop[d]
            d -= 1
            continue
        c = f_cur[d]
        f_cur[d] += 1
        dense = f_dense[d]
        a = 0
        b0 = 0
        b1 = 0
        if dense:
            a = iarena[f_cand[d] + c]
            md = f_m[d]
            loc = f_loc[d]
            row = f_pairs[d] + a * md
            j = iarena[loc + a]
            if d == 0 and only.shape[0] > 0 and not only[j]:
                continue
            supp = larena[row + a]
            ntouch = md
            for x in range(md):
                k = iarena[loc + x]
                cnt[k] = larena[row + x]
                touched[x] = k
        else:
            j = iarena[f_cand[d] + c]
            if d == 0 and only.shape[0] > 0 and not only[j]:
                continue
            b0 = larena[f_bptr[d] + c]
            b1 = larena[f_bptr[d] + c + 1]
            if _prefix_shared(iarena, larena, f_ptr[d], b0, b1, j, touched):
                continue
            supp, ntouch = _count(iarena, larena, f_ptr[d], f_w[d], b0, b1, cnt, touched, batch)
        ilen = f_len[d]
        nclo, nc = _close(cnt, touched, ntouch, supp, j, minsup, iset, ilen, cand_buf)
        size = ilen + nclo
        if nclo < 0 or (max_size >= 0 and size > max_size):
            for x in range(ntouch):
                cnt[touched[x]] = 0
            continue
        if n_out + 2 > out_supp.shape[0]:
            out_supp = _grow(out_supp, n_out + 2)
            out_ptr = _grow(out_ptr, n_out + 2)
        out_items = _grow(out_items, out_ptr[n_out] + size)
        base = out_ptr[n_out]
        for x in range(size):
            out_items[base + x] = iset[x]
        out_ptr[n_out + 1] = base + size
        out_supp[n_out] = supp
        n_out += 1
        descend = nc > 0 and (max_size < 0 or size < max_size)
        if first_level_only:
            if n_out > children.shape[0]:
                grown = np.empty((2 * children.shape[0], 5), np.int64)
                grown[: children.shape[0]] = children
                children = grown
            children[n_out - 1, 0] = j
            children[n_out - 1, 1] = ltop
            children[n_out - 1, 2] = 0
            children[n_out - 1, 3] = itop
            children[n_out - 1, 4] = itop
        if not descend:
            for x in range(ntouch):
                cnt[touched[x]] = 0
            continue
        base_i = itop
        base_l = ltop
        base_b = btop
        child_dense = False
        mc = 0
        if dense:
            md = f_m[d]
            loc = f_loc[d]
            nw = f_nw[d]
            n_keep = 0
            for x in range(md):
                k = iarena[loc + x]
                if x != a and cnt[k] >= minsup and cnt[k] < supp:
                    keep[n_keep] = x
                    n_keep += 1
            bits = barena[f_bits[d] : f_bits[d] + md * nw].reshape((md, nw))
            # Under the root the rows themselves are at hand: copying the occurrences'
            # kept items from them beats extracting them from bits unless few are kept.
            row_items = 0
            kept_items = 0
            for x in range(md):
                row_items += cnt[iarena[loc + x]]
            for x in range(n_keep):
                kept_items += cnt[iarena[loc + keep[x]]]
            from_rows = d == 0 and (bits_mode == BITS_ROOT or row_items <= 2 * (kept_items + n_keep * nw))
            if from_rows and trie_state == 0:
                trie_state = -1
                top = present[m0 - 1] + 1
                if top <= TRIE_MAX_ITEMS:
                    max_nodes = nnz0 if bits_mode == BITS_ROOT else int(TRIE_MAX_FRACTION * nnz0)
                    t_n, t_item, t_parent, t_count, t_depth, t_end = _build_trie(ptr0, items0, n_items, max_nodes)
                    if t_n > 0:
                        trie_state = 1
                        n_words = (top + 63) // 64
                        t_below = _trie_below(t_n, t_item, t_parent, t_end, n_words)
                        t_start, t_nodes = _trie_nodes_by_item(t_n, t_item, n_items)
                        widest = 1
                        for k in range(n_items):
                            widest = max(widest, t_start[k + 1] - t_start[k])
                        t_pre = np.empty((widest, n_words), np.uint64)
            if from_rows and trie_state == 1:
                nocc = supp
                iarena, larena, mc, itop, ltop = _trie_child(
                    iarena,
                    larena,
                    itop,
                    ltop,
                    t_item,
                    t_parent,
                    t_count,
                    t_depth,
                    t_below,
                    t_nodes,
                    t_start[j],
                    t_start[j + 1],
                    j,
                    cnt,
                    minsup,
                    supp,
                    s_w,
                    s_start,
                    s_len,
                    s_hash,
                    s_rep,
                    table,
                    t_pre,
                )
            elif from_rows:
                nocc = _root_occurrences(ptr0, bits, a, r_start, r_end, s_w)
                iarena, larena, mc, itop, ltop = _build_merged(
                    items0,
                    iarena,
                    larena,
                    itop,
                    ltop,
                    nocc,
                    j,
                    cnt,
                    minsup,
                    supp,
                    r_start,
                    r_end,
                    s_w,
                    s_start,
                    s_len,
                    s_plen,
                    s_hash,
                    s_rep,
                    table,
                )
            if from_rows:
                # Rows that merge well (categorical data) are cheaper to mine than any bit
                # matrix, which cannot merge.
                child_dense = False
                if bits_mode == BITS_ALWAYS or 2 * mc > nocc:
                    sumsq = _root_child_sumsq(ptr0, items0, bits, a, cnt, minsup, supp)
                    child_dense = _prefer_bits(n_keep, nocc, sumsq, bits_mode)
                if child_dense:
                    itop = base_i
                    ltop = base_l
                    _occurrence_ranks(bits, a, rank)
                    if first_level_only:
                        # Handed over unmerged so that the branch can still be mined from
                        # bits.
                        itop, sumsq = _root_child_rows(
                            iarena, itop, ptr0, items0, bits, a, cnt, minsup, supp, j, s_start, s_len, s_plen, s_w
                        )
                        mc = nocc
                        ltop = _store_unmerged(larena, ltop, nocc, s_start, s_len)
            else:
                nocc = _occurrence_ranks(bits, a, rank)
                sumsq = _child_row_lengths(bits, a, keep, n_keep, rank, nocc, s_len, s_plen)
                child_dense = _prefer_bits(n_keep, nocc, sumsq, bits_mode)
            if child_dense and not first_level_only:
                nwc = (nocc + 63) // 64
                iarena = _grow(iarena, itop + 2 * n_keep)
                nloc = 0
                for x in range(n_keep):
                    iarena[itop + x] = iarena[loc + keep[x]]
                    if keep[x] > a:
                        iarena[itop + n_keep + nloc] = x
                        nloc += 1
                itop += n_keep + nloc
                barena = _grow(barena, btop + n_keep * nwc)
                bits = barena[f_bits[d] : f_bits[d] + md * nw].reshape((md, nw))
                child = barena[btop : btop + n_keep * nwc].reshape((n_keep, nwc))
                child[:, :] = 0
                _fill_child_bits(bits, a, keep, n_keep, rank, child)
                larena = _grow(larena, ltop + n_keep * n_keep)
                pairs = larena[ltop : ltop + n_keep * n_keep].reshape((n_keep, n_keep))
                pairs[:, :] = 0
                _pair_counts_into(child, pairs)
                ltop += n_keep * n_keep
                btop += n_keep * nwc
                for x in range(ntouch):
                    cnt[touched[x]] = 0
                nd = d + 1
                f_dense[nd] = True
                f_itop[nd] = base_i
                f_ltop[nd] = base_l
                f_btop[nd] = base_b
                f_len[nd] = size
                f_cur[nd] = 0
                f_loc[nd] = base_i
                f_m[nd] = n_keep
                f_cand[nd] = base_i + n_keep
                f_ncand[nd] = nloc
                f_bits[nd] = base_b
                f_nw[nd] = nwc
                f_pairs[nd] = base_l
                d = nd
                continue
            if not from_rows:
                total = 0
                for r in range(nocc):
                    total += s_len[r]
                iarena = _grow(iarena, itop + total)
                larena = _grow(larena, ltop + 2 * nocc + 1)
                # s_hash serves as the fill cursor; _reduce recomputes it afterwards.
                itop = _fill_child_rows(
                    iarena, itop, bits, a, keep, n_keep, iarena[loc : loc + md], rank, nocc, s_start, s_len, s_w, s_hash
                )
                if child_dense:
                    # Handed over unmerged so that the branch can still be mined from bits.
                    mc = nocc
                    ltop = _store_unmerged(larena, ltop, nocc, s_start, s_len)
                else:
                    mc, itop, ltop = _reduce(
                        iarena, larena, base_i, ltop, nocc, j, s_start, s_len, s_plen, s_w, s_hash, s_rep, table
                    )
        else:
            iarena, larena, mc, itop, ltop = _build_child(
                iarena,
                larena,
                itop,
                ltop,
                f_ptr[d],
                f_w[d],
                b0,
                b1,
                j,
                supp,
                minsup,
                cnt,
                r_start,
                r_end,
                s_w,
                s_start,
                s_len,
                s_plen,
                s_hash,
                s_rep,
                table,
            )
        for x in range(ntouch):
            cnt[touched[x]] = 0
        if first_level_only:
            # The child's database stays in the arenas for the caller to slice out.
            children[n_out - 1, 2] = mc
            children[n_out - 1, 4] = itop
            continue
        if 0 < mc <= SMALL_MAX_ROWS:
            small, sarena, out_items, out_ptr, out_supp, n_out = _mine_small(
                iarena,
                larena,
                base_l,
                mc,
                j,
                nc,
                iset,
                size,
                minsup,
                max_size,
                slot,
                litem,
                sarena,
                out_items,
                out_ptr,
                out_supp,
                n_out,
            )
            if small:
                itop = base_i
                ltop = base_l
                btop = base_b
                continue
        nd = d + 1
        f_dense[nd] = False
        f_itop[nd] = base_i
        f_ltop[nd] = base_l
        f_btop[nd] = base_b
        f_ptr[nd] = base_l
        f_w[nd] = base_l + mc + 1
        f_len[nd] = size
        f_cur[nd] = 0
        f_ncand[nd] = nc
        iarena, larena, itop, ltop, f_cand[nd], f_bptr[nd] = _deliver(
            iarena, larena, itop, ltop, base_l, mc, j, cand_buf, nc, slot, occn
        )
        d = nd
    return (
        out_items[: out_ptr[n_out]],
        out_ptr[: n_out + 1],
        out_supp[:n_out],
        n_out,
        iarena,
        larena,
        children[: n_out if first_level_only else 0],
    )


@njit(cache=True)
def first_level_costs(ptr, items, n_items):  # pragma: no cover - compiled
    """``[n_items] float64`` the scheduling estimate of every first-level branch, from the
    database itself (the branches are not built on the coordinator): for item ``j``, the sum
    over the rows containing it of row length times the items above ``j`` in the row (rows
    are sorted), as ``neurolake.mining.lcm._branch_cost`` counts on a branch's own database. One pass over
    the rows, which the coordinator makes before any task can start."""
    costs = np.zeros(n_items, np.float64)
    for t in range(ptr.shape[0] - 1):
        length = ptr[t + 1] - ptr[t]
        for p in range(ptr[t], ptr[t + 1]):
            costs[items[p]] += length * (ptr[t + 1] - p - 1)
    return costs


@njit(cache=True, nogil=True)
def finish_itemsets(out_items, out_ptr, labels, common):
    """Itemsets in original item ids: every set gets the ``common`` items and is sorted.

    Args:
        out_items: ``int32`` internal ids, set ``i`` at ``out_items[out_ptr[i]:out_ptr[i+1]]``.
        out_ptr: ``[n + 1] int64``.
        labels: ``[n_items] int64`` original id of every internal id.
        common: ``[c] int64`` original ids of the items in every row.

    Returns:
        ``(values, offsets)``: ``[out_ptr[n] + n c] int64`` and ``[n + 1] int64``.
    """
    n = out_ptr.shape[0] - 1
    nc = common.shape[0]
    offsets = np.empty(n + 1, np.int64)
    values = np.empty(out_ptr[n] - out_ptr[0] + n * nc, np.int64)
    pos = 0
    offsets[0] = 0
    for i in range(n):
        start = pos
        for p in range(out_ptr[i], out_ptr[i + 1]):
            values[pos] = labels[out_items[p]]
            pos += 1
        for x in range(nc):
            values[pos] = common[x]
            pos += 1
        # Insertion sort in place: itemsets are short, and a sort call per set would
        # allocate a temporary each time.
        for x in range(start + 1, pos):
            v = values[x]
            y = x - 1
            while y >= start and values[y] > v:
                values[y + 1] = values[y]
                y -= 1
            values[y + 1] = v
        offsets[i + 1] = pos
    return values, offsets
