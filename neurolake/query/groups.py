"""Contrast groups: named sets of frames of one run, chosen by an SQL predicate.

A group is materialised (its frame ids written once) as derived data of its run,
``derived/groups/<spec-hash>/``: ``frames.parquet`` (name, run_id, frame_id),
``group.json`` (size, creation time) and ``spec.json`` (name, run, predicate and the
committed parts it was computed over). Group names are unique in a lake. The
``groups`` and ``group_frames`` views show them to SQL, so a predicate can use another
group (e.g. its complement).
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import duckdb
import numpy as np
import pyarrow as pa

from neurolake.errors import GroupError
from neurolake.query import registry
from neurolake.query.engine import DEFAULT_TIMEOUT_S, QueryEngine
from neurolake.query.fingerprint import commits_fingerprint
from neurolake.query.guard import parse_predicate
from neurolake.store import Derived, Lake
from neurolake.store.tables import decode_parquet, encode_parquet

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}\Z")
KIND = registry.KIND


@dataclass(frozen=True)
class Group:
    name: str
    run_id: str
    predicate: str
    n_frames: int
    created_at: str
    derived: Derived

    def _repr_html_(self) -> str:
        from neurolake.notebook import card

        facts = [
            ("run", self.run_id),
            ("where", self.predicate),
            ("frames", f"{self.n_frames:,}"),
            ("created", self.created_at),
        ]
        return card(f"group {self.name}", facts)

    def frame_ids(self) -> np.ndarray:
        """The group's frame ids, ascending. ``[n_frames] int64``"""
        table = decode_parquet(self.derived.read_bytes("frames.parquet"))
        return table.column("frame_id").to_numpy()


def group_relation(engine: QueryEngine, run_id: str, predicate: str) -> duckdb.DuckDBPyRelation:
    """The frame ids of ``run_id`` satisfying ``predicate``, as a DuckDB relation.

    Frames join their utterance on an integer key: an utterance owns the rows
    ``[first_frame_id, first_frame_id + n_frames)`` and ``frame_index`` counts from its first
    row, so ``frame_id - frame_index = first_frame_id`` (1.8 s against 2.5 s for the string key
    on 100 M rows). Both sides are narrowed to the run first; ``utterances`` leaves out the
    columns ``frames`` has, so every column name is unambiguous, and the aliases keep
    ``frames.x`` and ``utterances.x`` usable. The ids come back unordered: sorting them in
    numpy is cheaper than in SQL.
    """
    return _joined(engine, run_id).filter(predicate).project("frames.frame_id AS frame_id")


def _joined(engine: QueryEngine, run_id: str) -> duckdb.DuckDBPyRelation:
    """A run's frames joined with their utterance (see :func:`group_relation`)."""
    frames = engine.relation("frames", run_id).set_alias("frames")
    utterances = engine.relation("utterances", run_id).project("* EXCLUDE (run_id, utterance_id)")
    return frames.join(
        utterances.set_alias("utterances"), "frames.frame_id - frames.frame_index = utterances.first_frame_id"
    )


def group_frame_ids_many(
    engine: QueryEngine, run_id: str, predicates: Sequence[str], batch: int = 63
) -> list[np.ndarray]:
    """:func:`group_frame_ids` of every predicate of ``predicates``, in order (a predicate
    given twice is evaluated once). Those over frame columns only, and those over frame and
    utterance columns, are each read in one pass over the run's frames per ``batch`` (at most
    63) predicates, as the bits of one integer per frame, instead of one pass each (a scan's 40
    slices and their backgrounds: 80 passes); those over utterance columns only go by
    :func:`group_frame_ids`, from the utterance rows."""
    if not 1 <= batch <= 63:
        raise ValueError(f"batch must be 1 to 63 predicates (the bits of an int64), got {batch}")
    checked = [engine.check_predicate(p) for p in predicates]
    unique = list(dict.fromkeys(checked))
    found: dict[str, np.ndarray] = {}
    kinds: dict[bool, list[str]] = {False: [], True: []}  # joined with the utterances or not
    for start in range(0, len(unique), batch):
        part = unique[start : start + batch]
        if engine.binds_relation(partial(_flagged, engine, run_id, False, part)):
            kinds[False] += part  # all over frame columns: one bind for all
            continue
        for p in part:
            kind = _predicate_kind(engine, run_id, p)
            if kind == "frames":
                kinds[False].append(p)
            elif kind == "joined" and engine.binds_relation(partial(group_relation, engine, run_id, p)):
                kinds[True].append(p)
            else:  # over utterance columns only, or an error to report
                found[p] = _ids_of(engine, run_id, p, kind)
    for joined, todo in kinds.items():
        for start in range(0, len(todo), batch):
            part = todo[start : start + batch]
            table = engine.rows(partial(_flagged, engine, run_id, joined, part))
            ids, bits = table.column("frame_id").to_numpy(), table.column("bits").to_numpy()
            if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
                order = np.argsort(ids, kind="stable")
                ids, bits = ids[order], bits[order]
            for i, p in enumerate(part):
                found[p] = ids[(bits & np.int64(1 << i)) != 0]
    return [found[p] for p in checked]


def _flagged(engine: QueryEngine, run_id: str, joined: bool, predicates: Sequence[str]) -> duckdb.DuckDBPyRelation:
    """Every frame id of the run and ``bits``: bit ``i`` set where ``predicates[i]`` holds (at
    most 63), over the frames alone or joined with their utterances."""
    bits = " | ".join(f"(CASE WHEN ({p}) THEN {1 << i} ELSE 0 END)::BIGINT" for i, p in enumerate(predicates))
    if joined:
        return _joined(engine, run_id).project(f"frames.frame_id AS frame_id, {bits} AS bits")
    return engine.relation("frames", run_id).project(f"frame_id, {bits} AS bits")


def _frames_only(engine: QueryEngine, run_id: str, predicate: str) -> duckdb.DuckDBPyRelation:
    return engine.relation("frames", run_id).filter(predicate).project("frame_id")


def _utterances_only(engine: QueryEngine, run_id: str, predicate: str) -> duckdb.DuckDBPyRelation:
    return (
        engine.relation("utterances", run_id)
        .filter(predicate)
        .project("first_frame_id, n_frames")
        .order("first_frame_id")
    )


def ranges_to_ids(first: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``concat(arange(f, f + n) for f, n in zip(first, counts))`` without a Python loop. ``int64``"""
    first, counts = np.asarray(first, np.int64), np.asarray(counts, np.int64)
    keep = counts > 0
    first, counts = first[keep], counts[keep]
    if first.size == 0:
        return np.zeros(0, np.int64)
    # Each id is its range's first id plus its position within the range.
    starts = np.cumsum(counts) - counts
    return np.repeat(first - starts, counts) + np.arange(int(counts.sum()), dtype=np.int64)


def group_frame_ids(engine: QueryEngine, run_id: str, predicate: str) -> np.ndarray:
    """Frame ids of ``run_id`` satisfying ``predicate``, ascending. ``[n] int64``

    DuckDB's binder tells which kind of predicate it is:

    - over frame columns only (``word_error``, ``phoneme = 'AH'``): no join;
    - over utterance columns only (``wer > 0.3``): whole utterances are selected, and an
      utterance owns the rows ``[first_frame_id, first_frame_id + n_frames)``, so the ids
      come from the utterance rows without reading ``frames`` at all (0.1 s instead of
      1.7 s for 21 M ids out of 100 M);
    - both: frames joined with their utterance.
    """
    predicate = engine.check_predicate(predicate)  # one allowed expression, or nothing runs
    return _ids_of(engine, run_id, predicate, _predicate_kind(engine, run_id, predicate))


def _predicate_kind(engine: QueryEngine, run_id: str, predicate: str) -> str:
    """``"frames"``, ``"utterances"`` or ``"joined"``: the columns a checked predicate is over,
    as DuckDB's binder tells (``"joined"`` also for a predicate that binds nowhere)."""
    if engine.binds_relation(partial(_frames_only, engine, run_id, predicate)):
        return "frames"
    if engine.binds_relation(partial(_utterances_only, engine, run_id, predicate)):
        return "utterances"
    return "joined"


def _ids_of(engine: QueryEngine, run_id: str, predicate: str, kind: str) -> np.ndarray:
    """:func:`group_frame_ids` of a checked predicate of that ``kind`` (a predicate that binds
    nowhere reports its error from the join)."""
    if kind == "utterances":
        table = engine.rows(partial(_utterances_only, engine, run_id, predicate))
        return ranges_to_ids(table.column("first_frame_id").to_numpy(), table.column("n_frames").to_numpy())
    relation = _frames_only if kind == "frames" else group_relation
    ids = engine.rows(partial(relation, engine, run_id, predicate)).column("frame_id").to_numpy()
    # A scan keeps the files' order: on a compacted run (files in frame order) the ids come
    # back sorted, and checking that costs a tenth of sorting 19 M of them. The join returns
    # sorted runs of ids; a stable (merge) sort is fast on those.
    if ids.size > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        ids = np.sort(ids, kind="stable")
    return ids


def _all_groups(lake: Lake) -> list[Group]:
    out = []
    for _, d in registry.visible_groups(lake):
        out.append(_group(d))
    return sorted(out, key=lambda g: g.name)


def _group(d: Derived) -> Group:
    info = d.read_json("group.json")
    return Group(
        d.spec["name"], d.spec["run_id"], d.spec["predicate"], int(info["n_frames"]), str(info["created_at"]), d
    )


def list_groups(lake: Lake) -> list[Group]:
    return _all_groups(lake)


def get_group(lake: Lake, name: str) -> Group:
    return get_groups(lake, [name])[0]


def get_groups(lake: Lake, names: Sequence[str]) -> list[Group]:
    """The groups ``names``, in order, from one listing of the lake's groups."""
    groups = _all_groups(lake)
    by_name = {g.name: g for g in groups}
    for name in names:
        if name not in by_name:
            raise _unknown(name, [g.name for g in groups])
    return [by_name[name] for name in names]


def _unknown(name: str, known: list[str]) -> GroupError:
    hint = (
        f"; groups in this lake: {', '.join(known)}"
        if known
        else "; the lake has no groups yet (neurolake group create)"
    )
    return GroupError(f"no group named {name!r}{hint}")


def _check_committed(engine: QueryEngine, run_id: str, ids: np.ndarray) -> None:
    """Every id once, and each a committed frame of the run (an utterance owns a range of rows)."""
    if ids.size > 1 and bool(np.any(ids[1:] == ids[:-1])):
        raise GroupError("the predicate selected some frames twice; a group is a set of frames")
    spans = engine.arrow(
        "SELECT first_frame_id, n_frames FROM utterances WHERE run_id = ? ORDER BY first_frame_id", [run_id]
    )
    first = spans.column("first_frame_id").to_numpy().astype(np.int64)
    ends = first + spans.column("n_frames").to_numpy().astype(np.int64)
    at = np.searchsorted(first, ids, side="right") - 1
    inside = (at >= 0) & (ids < ends[np.clip(at, 0, None)]) if first.size else np.zeros(ids.size, bool)
    if not bool(np.all(inside)):
        raise GroupError(f"{int((~inside).sum())} selected frame ids are not committed frames of run {run_id!r}")


def create_group(
    lake: Lake,
    name: str,
    run_id: str,
    where: str,
    replace: bool = False,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    memory_limit: str | None = None,
) -> Group:
    """Materialise the frames of ``run_id`` that satisfy ``where`` as group ``name``.

    ``where`` is an SQL predicate over the columns of ``frames`` joined with
    ``utterances`` (e.g. ``word_error AND wer > 0.3``). Asking again with the same name,
    run and predicate over the same committed parts returns the stored group. A name
    taken by a different group is refused unless ``replace``.
    """
    if not _NAME.match(name):
        raise GroupError(f"invalid group name {name!r}: letters, digits, '_', '.', '-', starting with a letter or '_'")
    if not where or not where.strip():
        raise GroupError('give a predicate with --where, e.g. --where "word_error"')
    predicate = where.strip()
    parse_predicate(predicate)  # one expression, or nothing runs
    run = lake.run(run_id)
    spec = {"name": name, "run_id": run_id, "predicate": predicate, "commits": commits_fingerprint(run)}
    derived = run.derived(KIND, spec)
    old = _current(lake, name)
    if old is not None and old.derived.spec == derived.spec:
        return old
    if old is not None and not replace:
        raise _name_taken(name, old)

    with QueryEngine(lake, timeout_s=timeout_s, memory_limit=memory_limit) as engine:
        ids = group_frame_ids(engine, run_id, predicate)
        _check_committed(engine, run_id, ids)
    if ids.size == 0:
        raise GroupError(f"the predicate {where!r} selects no frames of run {run_id!r}; an empty group cannot be mined")
    frames = pa.table(
        {
            "name": pa.array([name] * ids.size, pa.string()),
            "run_id": pa.array([run_id] * ids.size, pa.string()),
            "frame_id": pa.array(ids, pa.int64()),
        }
    )
    created = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
    derived.write_bytes(encode_parquet(frames), "frames.parquet")
    derived.write_json({"n_frames": int(ids.size), "created_at": created}, "group.json")
    group = Group(name, run_id, predicate, int(ids.size), created, derived)
    if replace and registry.read_pointer(lake, name) is not None:
        # Commit while the pointer still names the old group (so the new one stays hidden), then
        # switch the pointer in one write: readers see the old group or the new one.
        derived.commit()
        registry.switch(lake, run_id, derived)
    elif registry.claim(lake, run_id, derived):
        derived.commit()
    elif replace:
        derived.commit()
        registry.switch(lake, run_id, derived)
    else:
        winner = _current(lake, name)
        if winner is not None and winner.derived.spec == derived.spec:
            return winner
        derived.loc.remove_tree()
        raise _name_taken(name, winner, meanwhile=True)
    if old is not None and old.derived.loc.path != derived.loc.path:
        old.derived.loc.remove("spec.json")
        old.derived.loc.remove_tree()
    return group


def _current(lake: Lake, name: str) -> Group | None:
    """The group a reader sees under ``name`` (the pointer's, or an old lake's unpointed one)."""
    for _, d in registry.visible_groups(lake):
        if d.spec.get("name") == name:
            return _group(d) if d.loc.exists("group.json") else None
    return None


def _name_taken(name: str, old: Group | None, meanwhile: bool = False) -> GroupError:
    what = f" (run {old.run_id}, predicate {old.predicate!r})" if old is not None else ""
    if meanwhile:
        return GroupError(
            f"the group name {name!r} was taken by another process meanwhile{what}; "
            "choose another name or replace it with --replace"
        )
    return GroupError(f"a group named {name!r} already exists{what}; choose another name or replace it with --replace")
