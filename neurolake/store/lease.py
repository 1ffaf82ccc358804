"""One writer per run: a lease with an owner, an expiry and a heartbeat, on any store.

The lease is a sequence of epoch files, ``runs/<id>/lease/<epoch>.json``; the newest epoch is the
lease. Taking it means creating the next epoch's file exclusively (a hard link on a local disk, a
conditional PUT on S3), so of two processes taking it at once exactly one succeeds, and a newer
epoch tells every older holder that it has lost the lease. The holder renews its expiry (a
heartbeat) and marks it released when done. A lease is free when it is released, expired, or held
by a process of this host that no longer exists (a killed ingest need not wait for its expiry).

Writers check the lease before each commit marker, so a part written by a process that lost the
lease (an orphaned actor of a killed driver, say) never becomes visible.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from neurolake.errors import RunBusyError, RunLeaseLostError
from neurolake.store.location import Location, canonical_json

DEFAULT_TTL_S = 60.0
DIRECTORY = "lease"


@dataclass(frozen=True)
class LeaseToken:
    """What a writer needs to check that its lease still holds (picklable, sent to actors)."""

    run_loc: Location
    epoch: int
    owner: str

    def check_epoch(self) -> dict[str, Any]:
        """Raise :class:`RunLeaseLostError` if a newer epoch exists; returns this epoch's record."""
        epoch, record = _current(self.run_loc)
        if epoch != self.epoch or record is None or record.get("owner") != self.owner:
            raise RunLeaseLostError(
                f"run {self.run_loc.url} is now written by another ingest (lease epoch {epoch}); "
                "this writer stops without committing"
            )
        return record

    def check(self) -> None:
        """Raise :class:`RunLeaseLostError` unless this token's epoch is the run's live lease."""
        record = self.check_epoch()
        if record.get("released") or float(record.get("expires_at", 0)) < time.time():
            raise RunLeaseLostError(f"the lease on {self.run_loc.url} expired (no heartbeat); this writer stops")


def _epoch_name(epoch: int) -> str:
    return f"{epoch:012d}.json"


def _current(run_loc: Location) -> tuple[int, dict[str, Any] | None]:
    epochs = [int(n[:-5]) for n in run_loc.list_names(DIRECTORY) if n.endswith(".json") and n[:-5].isdigit()]
    if not epochs:
        return 0, None
    epoch = max(epochs)
    try:
        return epoch, run_loc.read_json(DIRECTORY, _epoch_name(epoch))
    except FileNotFoundError:
        return epoch, None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free(record: dict[str, Any] | None) -> bool:
    if record is None or record.get("released"):
        return True
    if float(record.get("expires_at", 0)) < time.time():
        return True
    return record.get("host") == socket.gethostname() and not _pid_alive(int(record.get("pid", -1)))


class RunLease:
    """The write lease of one run; use as a context manager around an ingest."""

    def __init__(self, run_loc: Location, ttl_s: float = DEFAULT_TTL_S, purpose: str = "ingest"):
        self.run_loc = run_loc
        self.ttl_s = float(ttl_s)
        self.purpose = purpose
        self.owner = uuid.uuid4().hex
        self.epoch = 0
        self.lost: RunLeaseLostError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def token(self) -> LeaseToken:
        return LeaseToken(self.run_loc, self.epoch, self.owner)

    def _record(self, released: bool = False) -> bytes:
        now = time.time()
        return canonical_json(
            {
                "owner": self.owner,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "purpose": self.purpose,
                "heartbeat_at": now,
                "expires_at": now + self.ttl_s,
                "released": released,
            },
            indent=1,
        ).encode("utf-8")

    def acquire(self) -> RunLease:
        """Take the lease, or raise :class:`RunBusyError` naming who holds it."""
        epoch, record = _current(self.run_loc)
        if not _free(record):
            raise _busy(self.run_loc, record)
        if not self.run_loc.create_exclusive(self._record(), DIRECTORY, _epoch_name(epoch + 1)):
            raise _busy(self.run_loc, _current(self.run_loc)[1])
        self.epoch = epoch + 1
        for old in range(max(1, epoch - 8), epoch):  # keep the few newest epochs, for diagnosis
            self.run_loc.remove(DIRECTORY, _epoch_name(old))
        self._thread = threading.Thread(target=self._beat, name="neurolake-lease", daemon=True)
        self._thread.start()
        return self

    def renew(self) -> None:
        """Extend the expiry; raise :class:`RunLeaseLostError` if another writer took the lease."""
        self.token.check_epoch()
        self.run_loc.write_bytes(self._record(), DIRECTORY, _epoch_name(self.epoch))

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self.renew()
            except RunLeaseLostError as exc:
                self.lost = exc
                return
            except Exception:
                continue

    def check(self) -> None:
        """Raise if the lease was lost (the driver calls this between parts)."""
        if self.lost is not None:
            raise self.lost

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.epoch and self.lost is None:
            epoch, record = _current(self.run_loc)
            if epoch == self.epoch and record is not None and record.get("owner") == self.owner:
                self.run_loc.write_bytes(self._record(released=True), DIRECTORY, _epoch_name(self.epoch))

    def abandon(self) -> None:
        """Stop the heartbeat without writing anything (for storage that answers no more): the
        lease is free again once it expires."""
        self._stop.set()

    def __enter__(self) -> RunLease:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _busy(run_loc: Location, record: dict[str, Any] | None) -> RunBusyError:
    if record is None:
        return RunBusyError(f"another ingest took the lease on {run_loc.url} at this moment; try again")
    left = max(0.0, float(record.get("expires_at", 0)) - time.time())
    return RunBusyError(
        f"run {run_loc.url} is being written by another {record.get('purpose', 'ingest')} "
        f"(host {record.get('host')}, pid {record.get('pid')}); one writer per run: wait for it to finish "
        f"(its lease expires {left:.0f} s after its last heartbeat)"
    )
