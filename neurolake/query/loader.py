"""Activations out to training code: a PyTorch ``IterableDataset`` over a run's or a group's
frames, with their metadata, shuffled through a bounded buffer and sharded by worker and rank.

Frames are read in blocks of whole chunks (every chunk decoded once, as
:meth:`~neurolake.store.Run.read_rows` does), never row by row. The blocks are dealt round-robin,
in an order shuffled by ``seed`` and ``epoch`` (the same order in every process), to the
``world_size x num_workers`` shards: rank ``r``'s DataLoader worker ``w`` takes every block whose
position is ``r * num_workers + w`` modulo that count, so the shards are disjoint and cover every
frame once. Within a shard, rows pass through a shuffle buffer of ``buffer_size`` rows (each
row leaves at a random position once the buffer is full), which bounds memory whatever the run's
size. Without ``shuffle``, frames come in frame-id order within each shard.

With ``batch_size``, the dataset yields whole batches instead (use ``DataLoader(data,
batch_size=None)``): the buffer is then held as arrays and rows leave it a batch at a time, which
costs a fraction of building one dict per row.

Each item is a dict: ``frame_id``, one ``float32`` tensor per layer, and each asked ``frames``
or ``utterances`` column (strings, numbers or booleans as the table has them), so the default
``collate_fn`` gives batches directly (a null becomes ``""`` in text columns, NaN in float
columns, -1 in integer columns and False in boolean ones)::

    from torch.utils.data import DataLoader
    from neurolake.query.loader import ActivationDataset

    data = ActivationDataset("./lake", "demo", ["conv7"], columns=["phoneme"], group="vowels")
    for batch in DataLoader(data, batch_size=256, num_workers=2):
        x, y = batch["conv7"], batch["phoneme"]
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from neurolake.errors import GroupError, SpecError

__all__ = ["ActivationDataset", "frame_columns", "frames_of"]


def frames_of(lake: Any, run_id: str | None, group: str | None) -> tuple[Any, np.ndarray]:
    """``(run, frame ids)``: the committed frames of ``run_id``, or the frames of ``group``.

    Raises:
        SpecError: neither is named. GroupError: the group belongs to another run.
    """
    from neurolake.query.groups import get_group

    if group is not None:
        g = get_group(lake, group)
        if run_id is not None and run_id != g.run_id:
            raise GroupError(f"group {group!r} belongs to run {g.run_id!r}, not {run_id!r}")
        run = lake.run(g.run_id)
        return run, np.asarray(g.frame_ids(), dtype=np.int64)
    if run_id is None:
        raise SpecError("name a run or a group")
    run = lake.run(run_id)
    return run, np.asarray(run.committed_frame_ids(), dtype=np.int64)


def frame_columns(lake: Any, run_id: str, ids: np.ndarray, columns: Sequence[str]) -> pa.Table:
    """``frames`` and ``utterances`` ``columns`` of the frames ``ids`` (sorted), in that order, nulls kept.

    Raises:
        SpecError: a column that neither table has.
    """
    from neurolake.query.engine import QueryEngine
    from neurolake.schemas import SCHEMAS

    frames = {f.name for f in SCHEMAS["frames"]}
    known = frames | {f.name for f in SCHEMAS["utterances"]}
    unknown = [c for c in columns if c not in known]
    if unknown:
        raise SpecError(f"{unknown[0]!r} is not a frames or utterances column")
    if not columns:
        return pa.table({})
    select = ", ".join(f'{"f" if c in frames else "u"}."{c}"' for c in columns)
    with QueryEngine(lake) as q:
        table = q.sql(
            f"SELECT f.frame_id, {select} FROM frames f JOIN utterances u ON f.run_id = u.run_id "
            "AND f.frame_id - f.frame_index = u.first_frame_id WHERE f.run_id = ? ORDER BY f.frame_id",
            [run_id],
        )
    position = np.searchsorted(table.column("frame_id").to_numpy(), ids)
    return table.select(list(columns)).take(pa.array(position))


def _filled(column: Any) -> Any:
    """A column without nulls, which batches cannot hold: ``""`` for text, NaN for floats, -1 for
    integers, False for booleans."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.fill_null("")
    if pa.types.is_floating(kind):
        return column.fill_null(float("nan"))
    if pa.types.is_integer(kind):
        return column.fill_null(-1)
    if pa.types.is_boolean(kind):
        return column.fill_null(False)
    return column


class ActivationDataset(torch.utils.data.IterableDataset):
    """Frames of ``run_id`` (or of ``group``) with ``layers`` and ``columns`` (module docstring)."""

    def __init__(
        self,
        lake_url: str,
        run_id: str | None,
        layers: Sequence[str],
        *,
        group: str | None = None,
        columns: Sequence[str] = (),
        shuffle: bool = True,
        buffer_size: int = 16_384,
        block_chunks: int = 16,
        seed: int = 0,
        epoch: int = 0,
        batch_size: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        from neurolake.store import Lake

        super().__init__()
        if buffer_size < 1 or block_chunks < 1 or (batch_size is not None and batch_size < 1):
            raise SpecError("buffer_size, block_chunks and batch_size must be at least 1")
        lake = Lake.open(lake_url, storage_options)
        run, ids = frames_of(lake, run_id, group)
        if not layers:
            raise SpecError(f"name at least one layer; run {run.run_id!r} has: {', '.join(run.layer_names)}")
        for layer in layers:
            run.layer(layer)
        self.lake_url, self.storage_options = lake_url, dict(storage_options or {})
        self.run_id, self.layers, self.columns = run.run_id, list(layers), list(columns)
        self.frame_ids = ids
        self.metadata: dict[str, np.ndarray] = {}
        if columns:
            table = frame_columns(lake, self.run_id, ids, columns)
            for c in columns:
                column = _filled(table.column(c))
                text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
                self.metadata[c] = np.asarray(column.to_pylist(), object) if text else column.to_numpy()
        self.shuffle, self.buffer_size, self.seed, self.epoch = shuffle, buffer_size, seed, epoch
        self.rank, self.world_size, self.batch_size = rank, world_size, batch_size
        block_rows = run.plan.chunk_rows * block_chunks
        bounds = np.flatnonzero(np.diff(self.frame_ids // block_rows)) + 1
        self._blocks = np.split(np.arange(self.frame_ids.size), bounds) if self.frame_ids.size else []
        self._run: Any = None

    def __len__(self) -> int:
        return int(self.frame_ids.size)

    def set_epoch(self, epoch: int) -> None:
        """Another block order and buffer draw for the next pass (as ``DistributedSampler`` does)."""
        self.epoch = epoch

    def _shard(self) -> tuple[int, int]:
        """``(this shard, shards)`` from the DataLoader worker and the distributed rank."""
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        rank, world = self.rank, self.world_size
        if rank is None or world is None:
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
            else:
                rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        if not 0 <= rank < world:
            raise SpecError(f"rank {rank} outside a world of {world}")
        return rank * workers + worker, world * workers

    def _rows(self, block: np.ndarray) -> dict[str, np.ndarray]:
        if self._run is None:
            from neurolake.store import Lake

            self._run = Lake.open(self.lake_url, self.storage_options or None).run(self.run_id)
        ids = self.frame_ids[block]
        return {layer: np.asarray(self._run.read_rows(layer, ids), dtype=np.float32) for layer in self.layers}

    def _item(self, position: int, rows: Mapping[str, np.ndarray], i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"frame_id": int(self.frame_ids[position])}
        for layer in self.layers:
            item[layer] = torch.from_numpy(rows[layer][i])
        for c in self.columns:
            value = self.metadata[c][position]
            item[c] = value.item() if isinstance(value, np.generic) else value
        return item

    def __iter__(self) -> Iterator[dict[str, Any]]:
        shard, shards = self._shard()
        order = np.arange(len(self._blocks))
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(order)
        mine = order[shard::shards]
        rng = np.random.default_rng([self.seed, self.epoch, shard, 1])
        if self.batch_size is not None:
            yield from self._batches(mine, rng, self.batch_size)
            return
        buffer: list[dict[str, Any]] = []
        for b in mine:
            block = self._blocks[int(b)]
            rows = self._rows(block)
            for i, position in enumerate(block.tolist()):
                item = self._item(position, rows, i)
                if not self.shuffle:
                    yield item
                    continue
                if len(buffer) < self.buffer_size:
                    buffer.append(item)
                    continue
                k = int(rng.integers(len(buffer)))
                buffer[k], item = item, buffer[k]
                yield item
        rng.shuffle(buffer)
        yield from buffer

    def _batch(self, positions: np.ndarray, rows: Mapping[str, np.ndarray]) -> dict[str, Any]:
        batch: dict[str, Any] = {"frame_id": torch.from_numpy(self.frame_ids[positions])}
        for layer in self.layers:
            batch[layer] = torch.from_numpy(np.ascontiguousarray(rows[layer]))
        for c in self.columns:
            values = self.metadata[c][positions]
            batch[c] = values.tolist() if values.dtype == object else torch.from_numpy(np.ascontiguousarray(values))
        return batch

    def _batches(self, blocks: np.ndarray, rng: np.random.Generator, size: int) -> Iterator[dict[str, Any]]:
        """Whole batches from a shuffle buffer held as arrays (``batch_size`` mode): after each
        block, batches of rows drawn at random leave while more than ``buffer_size`` remain."""
        positions = np.zeros(0, np.int64)
        pool: dict[str, np.ndarray] = {}
        for b in blocks:
            block = self._blocks[int(b)]
            rows = self._rows(block)
            positions = np.concatenate([positions, block])
            pool = {layer: np.concatenate([pool[layer], rows[layer]]) if pool else rows[layer] for layer in self.layers}
            if not self.shuffle:
                while positions.size >= size:
                    yield self._batch(positions[:size], {k: v[:size] for k, v in pool.items()})
                    positions, pool = positions[size:], {k: v[size:] for k, v in pool.items()}
                continue
            while positions.size >= self.buffer_size + size:
                take = rng.choice(positions.size, size, replace=False)
                keep = np.ones(positions.size, bool)
                keep[take] = False
                yield self._batch(positions[take], {k: v[take] for k, v in pool.items()})
                positions, pool = positions[keep], {k: v[keep] for k, v in pool.items()}
        if self.shuffle and positions.size:
            order = rng.permutation(positions.size)
            positions, pool = positions[order], {k: v[order] for k, v in pool.items()}
        for start in range(0, positions.size, size):
            yield self._batch(positions[start : start + size], {k: v[start : start + size] for k, v in pool.items()})
