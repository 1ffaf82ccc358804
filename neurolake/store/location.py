"""URLs of the lake: one small wrapper over an fsspec filesystem and a root path.

Every path in the lake is handled here, so the rest of the store never touches
``os.path`` and works the same on a local directory, ``memory://``, ``s3://`` or ``gs://``.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import threading
import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec

from neurolake.errors import CorruptFileError, LakeError

#: botocore's retries of an S3 request, unless the storage options set their own
#: (``config_kwargs={"retries": ...}``): "adaptive" backs off exponentially on 5xx answers, resets
#: and throttling (``SlowDown``), and slows the client's request rate while it is throttled. Ten
#: attempts (botocore's default is five) keep an ingest going through a store that fails one
#: request in three (``benchmarks/s3_faults.py``); a request that fails ten times in a row fails its
#: part, and the part is run again by the next ingest.
S3_RETRIES: dict[str, Any] = {"total_max_attempts": 10, "mode": "adaptive"}


def with_retry_defaults(url: str, storage_options: Mapping[str, Any]) -> dict[str, Any]:
    """``storage_options`` with :data:`S3_RETRIES` added for an ``s3://`` URL, unless they or the
    environment (``AWS_MAX_ATTEMPTS``, ``AWS_RETRY_MODE``) set retries."""
    options = dict(storage_options)
    protocol = fsspec.core.split_protocol(str(url))[0]
    if protocol not in ("s3", "s3a") or "AWS_MAX_ATTEMPTS" in os.environ or "AWS_RETRY_MODE" in os.environ:
        return options
    config = dict(options.get("config_kwargs") or {})
    config.setdefault("retries", dict(S3_RETRIES))
    options["config_kwargs"] = config
    return options


#: Seconds the first connection to an S3 endpoint may take before the endpoint counts as
#: unreachable (unless ``config_kwargs={"connect_timeout": ...}`` says otherwise).
ENDPOINT_CONNECT_TIMEOUT_S = 5.0

_reached: set[tuple[str, int]] = set()
_reached_lock = threading.Lock()


def s3_endpoint(storage_options: Mapping[str, Any]) -> str | None:
    """The S3 endpoint URL that ``storage_options`` or the environment name (``endpoint_url``,
    ``client_kwargs={"endpoint_url": ...}``, ``AWS_ENDPOINT_URL_S3``, ``AWS_ENDPOINT_URL``), else
    ``None`` (AWS itself)."""
    client = storage_options.get("client_kwargs") or {}
    return (
        storage_options.get("endpoint_url")
        or client.get("endpoint_url")
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )


def check_endpoint(url: str, storage_options: Mapping[str, Any]) -> None:
    """Raise :class:`LakeError` at once when the S3 endpoint of ``url`` takes no connection.

    botocore retries a refused connection like a throttled request, with backoff: with the lake's
    ten attempts (:data:`S3_RETRIES`) a store where nothing listens would fail only after about a
    minute. One TCP connection to the endpoint tells it in milliseconds (a refused connection, a
    name that does not resolve) or after ``connect_timeout`` (an address that does not answer).
    An endpoint reached once in this process is not probed again, so an outage later on is met
    by the retries, as any other fault. Not probed: other protocols, AWS's own endpoints (no
    endpoint URL), and endpoints reached through a proxy."""
    protocol = fsspec.core.split_protocol(str(url))[0]
    if protocol not in ("s3", "s3a"):
        return
    endpoint = s3_endpoint(storage_options)
    config = storage_options.get("config_kwargs") or {}
    if (
        not endpoint
        or config.get("proxies")
        or any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"))
    ):
        return
    parsed = urllib.parse.urlsplit(str(endpoint))
    if not parsed.hostname:
        return
    try:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except ValueError:
        return  # a malformed port: botocore's own message says more
    key = (parsed.hostname, port)
    if key in _reached:
        return
    timeout = float(config.get("connect_timeout") or ENDPOINT_CONNECT_TIMEOUT_S)
    try:
        socket.create_connection(key, timeout=timeout).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc) or type(exc).__name__)
        raise LakeError(
            f"cannot reach the storage endpoint {endpoint} for {url} ({reason}); start the server, or check the "
            "endpoint (endpoint_url in the storage options, AWS_ENDPOINT_URL)"
        ) from exc
    with _reached_lock:
        _reached.add(key)


def _is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


@dataclass(frozen=True)
class Location:
    """A directory-like place: an fsspec filesystem plus a root path inside it.

    ``url`` is the form a user gave (normalised), ``path`` the filesystem's own path.
    """

    fs: fsspec.AbstractFileSystem
    path: str
    storage_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_url(cls, url: str, storage_options: dict[str, Any] | None = None) -> Location:
        """The location of ``url``; an S3 endpoint that takes no connection is a
        :class:`LakeError` at once (:func:`check_endpoint`)."""
        options = with_retry_defaults(url, storage_options or {})
        check_endpoint(url, options)
        return cls._open(url, options)

    @classmethod
    def _open(cls, url: str, options: dict[str, Any]) -> Location:
        try:
            fs, path = fsspec.core.url_to_fs(str(url), **options)
        except (ImportError, ValueError) as exc:
            raise LakeError(f"cannot open {url!r}: {exc}") from exc
        return cls(fs=fs, path=path.rstrip("/") or "/", storage_options=options)

    @classmethod
    def of(cls, where: str | Location, storage_options: Mapping[str, Any] | None = None) -> Location:
        """``where`` itself when it is a Location (it carries its own options), else the
        Location of the URL with ``storage_options``."""
        if isinstance(where, Location):
            return where
        return cls.from_url(where, dict(storage_options or {}))

    def with_retries(self, max_attempts: int) -> Location:
        """This location with at most ``max_attempts`` tries per S3 request (the same location
        elsewhere: other filesystems have retries of their own)."""
        if self.protocol not in ("s3", "s3a"):
            return self
        config = dict(self.storage_options.get("config_kwargs") or {})
        config["retries"] = {"total_max_attempts": int(max_attempts), "mode": "standard"}
        # Not probed: this is how a caller asks whether storage that went away answers again.
        return Location._open(self.url, dict(self.storage_options, config_kwargs=config))

    # ------------------------------------------------------------ naming

    @property
    def protocol(self) -> str:
        p = self.fs.protocol
        return p if isinstance(p, str) else p[0]

    @property
    def is_local(self) -> bool:
        return _is_local(self.fs)

    @property
    def url(self) -> str:
        """The location as a URL that fsspec and zarr understand."""
        if self.is_local:
            return self.path
        return f"{self.protocol}://{self.path.lstrip('/')}" if self.protocol != "memory" else f"memory://{self.path}"

    def child(self, *parts: str) -> Location:
        return Location(self.fs, posixpath.join(self.path, *parts), self.storage_options)

    def join(self, *parts: str) -> str:
        """Filesystem path of a key below this location."""
        return posixpath.join(self.path, *parts)

    def __str__(self) -> str:
        return self.url

    # ------------------------------------------------------------ reading

    def _fresh(self, path: str) -> None:
        # Object-store filesystems cache listings; other processes commit parts meanwhile.
        if not self.is_local:
            self.fs.invalidate_cache(path)

    def exists(self, *parts: str) -> bool:
        path = self.join(*parts)
        self._fresh(path)
        return self.fs.exists(path)

    def read_bytes(self, *parts: str) -> bytes:
        return self.fs.cat_file(self.join(*parts))

    def read_json(self, *parts: str) -> Any:
        """Parse a JSON file; a file that is not valid JSON is a :class:`CorruptFileError`."""
        raw = self.read_bytes(*parts)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise CorruptFileError(
                f"{self.describe(*parts)} is not valid JSON ({exc}); restore it or remove the run it belongs to"
            ) from exc

    def stamp(self, *parts: str) -> str | None:
        """A token that changes whenever the file is replaced (``None`` if it does not exist), or
        ``""`` where this storage offers none, so that callers read it every time: inode, mtime and
        size on a local disk, the ETag on S3 (one HEAD request)."""
        path = self.join(*parts)
        if self.is_local:
            try:
                st = os.stat(path)
            except FileNotFoundError:
                return None
            return f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"
        if self.protocol not in ("s3", "s3a"):
            return ""
        self._fresh(path)
        try:
            info = self.fs.info(path)
        except FileNotFoundError:
            return None
        return str(info.get("ETag") or "")

    def list_names(self, *parts: str) -> list[str]:
        """Base names of the entries directly below a directory; empty if it does not exist."""
        path = self.join(*parts)
        if self.is_local:  # fsspec's local ls costs ~20 us an entry; a run lists thousands of markers
            try:
                return sorted(entry.name for entry in os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                return []
        self._fresh(path)
        try:
            entries = self.fs.ls(path, detail=False)
        except FileNotFoundError:
            return []
        names = sorted({posixpath.basename(e.rstrip("/")) for e in entries})
        return [n for n in names if n and posixpath.join(path, n) != path]

    def find(self, *parts: str) -> list[str]:
        """Every file below a directory, as paths relative to it."""
        base = self.join(*parts).rstrip("/")
        self._fresh(base)
        if self.is_local:
            # os.walk lists each directory with scandir; fsspec's stats every entry (10x slower
            # on a layer's thousand shard directories).
            return sorted(
                posixpath.relpath(posixpath.join(d.replace(os.sep, "/"), f), base)
                for d, _, files in os.walk(base)
                for f in files
            )
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        return sorted(posixpath.relpath(f, base) for f in found)

    def size(self, *parts: str) -> int:
        """Total bytes below a directory (0 if absent)."""
        try:
            return int(self.fs.du(self.join(*parts), total=True))
        except FileNotFoundError:
            return 0

    def describe(self, *parts: str) -> str:
        """A path that a user can find again, for error messages."""
        return self.child(*parts).url if parts else self.url

    # ------------------------------------------------------------ writing

    def makedirs(self, *parts: str) -> None:
        if self.is_local:
            self.fs.makedirs(self.join(*parts), exist_ok=True)

    def write_bytes(self, data: bytes, *parts: str) -> None:
        """Write a whole file so that readers see either nothing or all of it.

        Object stores make a PUT visible atomically; on a local disk we write a
        temporary file beside the target and rename it.
        """
        target = self.join(*parts)
        if self.is_local:
            directory = posixpath.dirname(target)
            tmp = posixpath.join(directory, f".{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp")
            try:
                fh = open(tmp, "wb")
            except FileNotFoundError:  # a new directory (each shard has its own; its parent exists)
                try:
                    os.mkdir(directory)
                except FileExistsError:  # made meanwhile by another writer
                    pass
                except FileNotFoundError:
                    os.makedirs(directory, exist_ok=True)
                fh = open(tmp, "wb")
            with fh:
                fh.write(data)
            os.replace(tmp, target)
        else:
            self.fs.pipe_file(target, data)

    def create_exclusive(self, data: bytes, *parts: str) -> bool:
        """Write a whole file only if none exists there; ``True`` if this call created it.

        Of several processes racing to create one key exactly one wins, on a local disk (a
        hard link, which fails if the name exists) and on S3 (a conditional PUT,
        ``If-None-Match: *``). Other filesystems check and then write, which is only as good
        as their own consistency. On S3 a key that holds exactly ``data`` counts as created by
        this call: its own first attempt, applied although the answer was lost.
        """
        target = self.join(*parts)
        if self.is_local:
            directory = posixpath.dirname(target)
            os.makedirs(directory, exist_ok=True)
            tmp = posixpath.join(directory, f".{posixpath.basename(target)}.{uuid.uuid4().hex}.tmp")
            with open(tmp, "wb") as fh:
                fh.write(data)
            try:
                os.link(tmp, target)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        if self.protocol in ("s3", "s3a"):
            try:
                self.fs.pipe_file(target, data, mode="create")
                return True
            except FileExistsError:
                pass
            except OSError as exc:
                if "PreconditionFailed" not in str(exc) and "412" not in str(exc):
                    raise
            # A retried PUT whose first attempt was applied but whose answer was lost (a reset
            # connection) finds the key taken, by itself: the same bytes there mean this call
            # created it. (Every caller writes bytes of its own: a lease record names its owner.)
            return self._holds(target, data)
        self._fresh(target)
        if self.fs.exists(target):
            return False
        self.fs.pipe_file(target, data)
        return True

    def _holds(self, target: str, data: bytes) -> bool:
        self._fresh(target)
        try:
            return bool(self.fs.cat_file(target) == data)
        except FileNotFoundError:
            return False

    def write_json(self, obj: Any, *parts: str) -> None:
        self.write_bytes(canonical_json(obj, indent=1).encode("utf-8"), *parts)

    def remove_tree(self, *parts: str) -> None:
        """Delete a directory and everything below it (nothing if absent)."""
        path = self.join(*parts)
        self._fresh(path)
        try:
            self.fs.rm(path, recursive=True)
        except FileNotFoundError:
            pass

    def remove_many(self, keys: list[str]) -> None:
        """Delete files below this location (relative keys; one request per thousand on S3)."""
        if keys:
            try:
                self.fs.rm([self.join(key) for key in keys])
            except FileNotFoundError:
                pass

    def remove(self, *parts: str) -> None:
        try:
            self.fs.rm_file(self.join(*parts))
        except FileNotFoundError:
            pass


def canonical_json(obj: Any, indent: int | None = None) -> str:
    """JSON with sorted keys, so equal objects give equal bytes (and equal hashes)."""
    if indent is None:
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(obj, sort_keys=True, indent=indent, ensure_ascii=False) + "\n"
