"""Hugging Face ``datasets`` audio datasets on disk: a ``save_to_disk`` directory or Parquet shards.

Two layouts, both with one row per utterance and an ``Audio`` column (Arrow storage
``struct<bytes: binary, path: string>``: the encoded file's bytes, or a path to it):

- what ``Dataset.save_to_disk`` writes (``state.json``, ``dataset_info.json`` and Arrow stream
  shards ``data-NNNNN-of-NNNNN.arrow``), or ``DatasetDict.save_to_disk`` (``dataset_dict.json``
  naming the splits, one such directory per split);
- a directory holding Parquet shards anywhere below it (``Dataset.to_parquet``, or a copy of a
  dataset from the Hub: ``data/train-00000-of-00014.parquet``). The split is the name's part
  before ``-NNNNN-of-NNNNN``, else the shard's folder below the root.

The audio column is the one the ``huggingface`` schema metadata declares ``Audio`` (else the one
named ``audio`` of that storage type). Other columns: ``id`` / ``utterance_id`` / ``key`` (default:
the audio path's file name without extension), ``text`` / ``transcript`` / ``sentence`` /
``normalized_text``, ``speaker_id`` / ``speaker`` / ``client_id``, ``chapter_id``; the rest go to
``extra``. A local copy of LibriSpeech in HF format (``file``, ``audio``, ``text``,
``speaker_id``, ``chapter_id``, ``id``) therefore reads with the ids, speakers and chapters of the
LibriSpeech tree.

Addressing one row's audio. An utterance's ``audio_uri`` is the row's address,
``SHARD#COLUMN=ROW`` (``/data/ls/train/data-00000-of-00003.arrow#audio=17``: row 17, counted
from 0, of that shard's ``audio`` column). :func:`read_row_audio` reads that one cell and
:mod:`neurolake.corpora.audio` decodes its bytes, so headers are read and audio decoded one
utterance at a time, as for files. A row whose cell holds only a path (no bytes) gets that file's
URL instead (a relative path from the working directory, as ``datasets`` opens it). Reading a row:

- Arrow shards on a local disk are memory-mapped: only the row's bytes are read.
- Parquet shards are read one row group at a time (``datasets`` writes groups of up to ~100 MB);
  the last few row groups read stay cached in the process, so the planner, which reads headers
  in row order, reads each group once.
- Arrow shards on a remote filesystem are read whole, once per process and shard (the stream
  format has no index to seek by): on an object store, prefer Parquet shards.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from neurolake.corpora.records import Corpus, CorpusError, Utterance, open_url, url_of
from neurolake.errors import InputError, SpecError

__all__ = ["is_hf_dataset_directory", "parse_row_address", "read_hf_dataset", "read_row_audio", "row_address"]

_ID_COLUMNS = ("id", "utterance_id", "key")
_TEXT_COLUMNS = ("text", "transcript", "sentence", "normalized_text")
_SPEAKER_COLUMNS = ("speaker_id", "speaker", "client_id")
_CHAPTER_COLUMNS = ("chapter_id",)
_SHARD_NAME = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}\.parquet$")
_ROW_ADDRESS = re.compile(r"^(?P<shard>.+\.(?:arrow|parquet))#(?P<column>[^#=]+)=(?P<row>\d+)$")


# ------------------------------------------------------------------------- addresses


def row_address(shard_url: str, column: str, row: int) -> str:
    """The ``audio_uri`` of one row's audio: ``SHARD#COLUMN=ROW``."""
    return f"{shard_url}#{column}={row}"


def parse_row_address(uri: str) -> tuple[str, str, int] | None:
    """``(shard URL, column, row)`` of a row address, ``None`` for any other URL."""
    match = _ROW_ADDRESS.match(uri)
    return (match.group("shard"), match.group("column"), int(match.group("row"))) if match else None


# ------------------------------------------------------------------------- detection


def is_hf_dataset_directory(spec: str, *, storage_options: Mapping[str, Any] | None = None) -> bool:
    """Whether the directory ``spec`` is a ``save_to_disk`` directory or holds Parquet shards."""
    fs, root = open_url(spec, storage_options)
    root = root.rstrip("/")
    if fs.exists(f"{root}/dataset_dict.json") or fs.exists(f"{root}/state.json"):
        return True
    return any(path.endswith(".parquet") for path in fs.find(root))


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Shard:
    path: str
    split: str | None
    kind: str  # "arrow" or "parquet"


def _shards(fs: fsspec.AbstractFileSystem, root: str, url: str) -> list[_Shard]:
    """The shards of a dataset directory, in split order and then the order ``datasets`` wrote them."""

    def saved(directory: str, split: str | None) -> list[_Shard]:
        try:
            state = json.loads(fs.cat_file(f"{directory}/state.json"))
            names = [entry["filename"] for entry in state["_data_files"]]
        except (FileNotFoundError, ValueError, KeyError, TypeError) as exc:
            raise SpecError(f"{directory}/state.json is not a datasets state file ({exc})") from exc
        return [_Shard(f"{directory}/{name}", split, "arrow") for name in names]

    if fs.exists(f"{root}/dataset_dict.json"):
        try:
            splits = json.loads(fs.cat_file(f"{root}/dataset_dict.json"))["splits"]
        except (ValueError, KeyError, TypeError) as exc:
            raise SpecError(f"{url}/dataset_dict.json does not list the splits ({exc})") from exc
        return [shard for split in splits for shard in saved(f"{root}/{split}", str(split))]
    if fs.exists(f"{root}/state.json"):
        return saved(root, posixpath.basename(root) or None)
    shards = []
    for path in sorted(p for p in fs.find(root) if p.endswith(".parquet")):
        relative = path[len(root) + 1 :]
        named = _SHARD_NAME.match(posixpath.basename(path))
        folder = posixpath.dirname(relative)
        split = named.group("split") if named else (folder.split("/")[-1] if folder else None)
        shards.append(_Shard(path, split, "parquet"))
    return shards


def _audio_column(schema: pa.Schema) -> str | None:
    """The column the ``huggingface`` metadata declares ``Audio``, else an ``audio`` column of that storage."""
    features: dict = {}
    try:
        features = json.loads((schema.metadata or {}).get(b"huggingface", b"{}"))["info"]["features"]
    except (ValueError, KeyError, TypeError):
        pass
    for name, feature in features.items():
        if isinstance(feature, dict) and feature.get("_type") == "Audio" and name in schema.names:
            return name
    if "audio" in schema.names:
        kind = schema.field("audio").type
        if pa.types.is_struct(kind) and {kind.field(i).name for i in range(kind.num_fields)} >= {"bytes", "path"}:
            return "audio"
    return None


def _read_shard(fs: fsspec.AbstractFileSystem, shard: _Shard) -> tuple[str, pa.Table, list[str | None], list[bool]]:
    """The shard's audio column name, its other columns, each row's audio path, and whether each
    row's audio bytes are in the shard (rather than only a path).

    Raises:
        InputError: the shard is unreadable or has no audio column.
    """
    try:
        if shard.kind == "parquet":
            with fs.open(shard.path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                column = _audio_column(parquet.schema_arrow)
                if column is None:
                    raise InputError("it has no Audio column")
                others = [name for name in parquet.schema_arrow.names if name != column]
                table = parquet.read(columns=others)
                paths = _leaf(parquet.read(columns=[f"{column}.path"])).to_pylist()
                embedded = _parquet_embedded(parquet, column)
        else:
            table = _arrow_table(fs, shard.path)
            column = _audio_column(table.schema)
            if column is None:
                raise InputError("it has no Audio column")
            cells = table.column(column).combine_chunks()
            paths = cells.field("path").to_pylist()
            # Validity only: the mapped bytes themselves are not touched.
            embedded = cells.field("bytes").is_valid().to_pylist()
            table = table.drop_columns([column])
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"unreadable shard ({exc})") from exc
    return column, table, paths, embedded


def _parquet_embedded(parquet: pq.ParquetFile, column: str) -> list[bool]:
    """Whether each row of a Parquet shard holds its audio bytes: from the row groups' null counts
    where they say all do, else from the bytes column of that group (cheap when it is null)."""
    leaf = f"{column}.bytes"
    index = next(i for i in range(parquet.metadata.num_columns) if parquet.schema.column(i).path == leaf)
    out: list[bool] = []
    for group in range(parquet.metadata.num_row_groups):
        meta = parquet.metadata.row_group(group)
        stats = meta.column(index).statistics
        if stats is not None and stats.has_null_count and stats.null_count == 0:
            out.extend([True] * meta.num_rows)
        else:
            out.extend(_leaf(parquet.read_row_group(group, columns=[leaf])).is_valid().to_pylist())
    return out


def _leaf(table: pa.Table) -> pa.Array:
    """The one leaf column of a table read with a single ``column.field`` selection (pyarrow gives
    it as a struct of that one field, or as the field itself)."""
    values = table.column(0).combine_chunks()
    return values.field(0) if pa.types.is_struct(values.type) else values


def _file_of(fs: fsspec.AbstractFileSystem, shard_path: str, value: str) -> str:
    """The URL of the file a path-only audio cell names: URLs and absolute paths as they are; a
    relative path from the working directory as ``datasets`` opens it (local shards), or from the
    shard's folder (remote shards, where there is no working directory)."""
    if "://" in value or value.startswith("/"):
        return value
    if _is_local(fs):
        return os.path.abspath(value)
    return url_of(fs, posixpath.normpath(posixpath.join(posixpath.dirname(shard_path), value)))


def read_hf_dataset(url: str, *, storage_options: Mapping[str, Any] | None = None) -> Corpus:
    """Read a ``datasets`` audio dataset saved on disk (layouts in the module docstring).

    Reads every column but the audio (only its paths); the audio is addressed by row
    (:func:`row_address`). A shard that cannot be read, and a row with an empty transcript or an
    id seen before, each become a :class:`CorpusError`; a row without audio is found when its
    header is read.

    Raises:
        SpecError: ``url`` is not a directory, names no shards, or no shard has an audio column
            and a transcript column.
    """
    fs, root = open_url(url, storage_options)
    root = root.rstrip("/")
    if not fs.isdir(root):
        raise SpecError(f"datasets corpus {url!r} is not a directory")
    shards = _shards(fs, root, url)
    if not shards:
        raise SpecError(f"no datasets shards in {url!r}: expected dataset_dict.json, state.json or *.parquet files")
    utterances: list[Utterance] = []
    errors: list[CorpusError] = []
    seen: set[str] = set()
    for shard in shards:
        source = url_of(fs, shard.path)
        try:
            column, table, paths, embedded = _read_shard(fs, shard)
        except InputError as exc:
            errors.append(CorpusError(source, f"cannot read this shard: {exc}"))
            continue
        names = set(table.column_names)
        text_column = next((c for c in _TEXT_COLUMNS if c in names), None)
        if text_column is None:
            errors.append(
                CorpusError(
                    source, f"no transcript column ({', '.join(_TEXT_COLUMNS)}); its columns are {sorted(names)}"
                )
            )
            continue
        id_column = next((c for c in _ID_COLUMNS if c in names), None)
        speaker_column = next((c for c in _SPEAKER_COLUMNS if c in names), None)
        chapter_column = next((c for c in _CHAPTER_COLUMNS if c in names), None)
        used = {text_column, id_column, speaker_column, chapter_column}
        for row, (record, path, inside) in enumerate(zip(table.to_pylist(), paths, embedded, strict=True)):
            # A row holding only a path is read from that file, like any corpus's audio; a row
            # without either becomes an error when its header is read.
            audio_uri = _file_of(fs, shard.path, path) if path and not inside else row_address(source, column, row)
            utterance_id = _text(record.get(id_column)) if id_column else None
            if utterance_id is None and path:
                utterance_id = posixpath.splitext(posixpath.basename(path))[0] or None
            utterance_id = utterance_id or f"{posixpath.splitext(posixpath.basename(shard.path))[0]}-{row}"
            text = " ".join((_text(record.get(text_column)) or "").split())
            if not text:
                errors.append(
                    CorpusError(
                        source,
                        f"row {row} ({utterance_id}) has an empty transcript",
                        utterance_id=utterance_id,
                        audio_uri=audio_uri,
                        line=row + 1,
                    )
                )
                continue
            if utterance_id in seen:
                # No utterance id on the row: the id belongs to the row ingested before it.
                errors.append(
                    CorpusError(
                        source,
                        f"row {row}: utterance id {utterance_id!r} appears more than once (its first row is ingested)",
                        audio_uri=audio_uri,
                        line=row + 1,
                    )
                )
                continue
            seen.add(utterance_id)
            extra = {k: v for k, v in record.items() if k not in used}
            if path:
                extra["audio_path"] = path
            utterances.append(
                Utterance(
                    utterance_id=utterance_id,
                    speaker_id=_text(record.get(speaker_column)) if speaker_column else None,
                    chapter_id=_text(record.get(chapter_column)) if chapter_column else None,
                    audio_uri=audio_uri,
                    transcript=text,
                    split=shard.split,
                    extra=extra,
                )
            )
    if not utterances and errors and all(e.line is None for e in errors):
        raise SpecError(f"no shard of {url!r} can be read; first: {errors[0].source_uri}: {errors[0].message}")
    return Corpus(url, tuple(utterances), tuple(errors), format="hf-datasets")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


# ------------------------------------------------------------------- one row's audio


class _Cache:
    """A small LRU of loaded shard pieces. One load at a time: the planner's header threads ask
    for the rows of one row group together, and should wait for it rather than each read it."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = load()
            self._items[key] = value
            if len(self._items) > self._size:
                self._items.popitem(last=False)
            return value


# Memory-mapped Arrow tables cost address space, not memory; remote ones are held whole.
_ARROW_TABLES = _Cache(8)
# (ParquetFile, first row of each row group) per shard, and decoded audio columns of row groups.
_PARQUET_FILES = _Cache(32)
_ROW_GROUPS = _Cache(3)


def _options_key(fs: fsspec.AbstractFileSystem) -> str:
    return json.dumps(fs.storage_options, sort_keys=True, default=str)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocols = (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)
    return "file" in protocols or "local" in protocols


def _arrow_table(fs: fsspec.AbstractFileSystem, path: str) -> pa.Table:
    """An Arrow shard (stream format, as ``datasets`` writes it; the file format is read too)."""

    def load() -> pa.Table:
        source: Any = pa.memory_map(path) if _is_local(fs) else pa.BufferReader(fs.cat_file(path))
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            source.seek(0)
            return pa.ipc.open_file(source).read_all()

    return _ARROW_TABLES.get((fs.protocol, _options_key(fs), path), load)


def _parquet_cell(fs: fsspec.AbstractFileSystem, path: str, column: str, row: int) -> dict | None:
    key = (fs.protocol, _options_key(fs), path)

    def open_file() -> tuple[pq.ParquetFile, list[int]]:
        parquet = pq.ParquetFile(fs.open(path, "rb"))
        starts = [0]
        for group in range(parquet.metadata.num_row_groups):
            starts.append(starts[-1] + parquet.metadata.row_group(group).num_rows)
        return parquet, starts

    parquet, starts = _PARQUET_FILES.get(key, open_file)
    if not 0 <= row < starts[-1]:
        raise IndexError(row)
    group = next(g for g in range(len(starts) - 1) if starts[g] <= row < starts[g + 1])
    if column not in parquet.schema_arrow.names:
        raise KeyError(column)
    cells = _ROW_GROUPS.get(
        (*key, column, group), lambda: parquet.read_row_group(group, columns=[column]).column(0).combine_chunks()
    )
    return cells[row - starts[group]].as_py()


def read_row_audio(uri: str, *, storage_options: Mapping[str, Any] | None = None) -> tuple[bytes | None, str | None]:
    """One row's audio, by its address: ``(encoded bytes, None)``, or ``(None, URL of the file)``
    for a cell that holds only a path.

    Raises:
        InputError: not a row address, the shard is unreadable, or it has no such row, column or
            audio.
    """
    parsed = parse_row_address(uri)
    if parsed is None:
        raise InputError(f"{uri}: not a dataset row address (SHARD#COLUMN=ROW)")
    shard, column, row = parsed
    try:
        fs, path = open_url(shard, storage_options)
    except SpecError as exc:
        raise InputError(f"{uri}: {exc}") from exc
    try:
        if path.endswith(".parquet"):
            cell = _parquet_cell(fs, path, column, row)
        else:
            table = _arrow_table(fs, path)
            if column not in table.column_names:
                raise KeyError(column)
            cell = table.column(column)[row].as_py()
    except FileNotFoundError as exc:
        raise InputError(f"{uri}: dataset shard not found") from exc
    except KeyError as exc:
        raise InputError(f"{uri}: the shard has no column {column!r}") from exc
    except IndexError as exc:
        raise InputError(f"{uri}: the shard has no row {row}") from exc
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{uri}: unreadable dataset shard ({exc})") from exc
    if not isinstance(cell, dict):
        raise InputError(f"{uri}: the row holds no audio")
    if cell.get("bytes"):
        return cell["bytes"], None
    if cell.get("path"):
        return None, _file_of(fs, path, str(cell["path"]))
    raise InputError(f"{uri}: the row holds no audio (neither bytes nor a path)")
