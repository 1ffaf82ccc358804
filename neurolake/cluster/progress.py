"""The one progress facility: a tqdm bar on stderr (quiet when not a terminal or when asked),
and a notice when numba compiles the package's kernels (a first run's long silent wait)."""

from __future__ import annotations

import logging
import sys
import time
from typing import IO, Any

from numba.core import event
from tqdm.auto import tqdm

log = logging.getLogger(__name__)

COMPILE_NOTICE = (
    "neurolake: compiling numba kernels for this machine (their first use after an install; they are cached afterwards)"
)


def progress_bar(total: float, desc: str, unit: str = "it", enabled: bool | None = None, **kwargs: Any) -> tqdm:
    """A bar that stays out of the way of piped output unless explicitly enabled."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, dynamic_ncols=True, **kwargs)


class CompileNotice(event.Listener):
    """Listens to numba's compile events (sent only when a kernel is not in numba's disk cache):
    the first compile of a function of ``package`` writes :data:`COMPILE_NOTICE` to ``stream``
    once (through tqdm, so that a bar on the same stream stays whole), and each outermost
    compile of one is logged at debug level with its time. On a fresh install the demo's
    first mining step took 47 s on 2 cores (1.1 s with the kernels cached), and nothing else
    would be printed meanwhile."""

    def __init__(self, stream: IO[str] | None, package: str = "neurolake") -> None:
        self.stream = stream
        self.package = package
        self.told = False
        self._open: list[tuple[str, float]] = []  # compiles in progress, outermost first

    def _name(self, data: dict) -> str | None:
        func = getattr(data.get("dispatcher"), "py_func", None)
        module = getattr(func, "__module__", None) or ""
        if module != self.package and not module.startswith(self.package + "."):
            return None
        return f"{module}.{func.__qualname__}"  # type: ignore[union-attr]

    def on_start(self, ev: event.Event) -> None:
        name = self._name(ev.data)
        if name is None:
            return
        self.tell()
        self._open.append((name, time.perf_counter()))

    def on_end(self, ev: event.Event) -> None:
        if self._name(ev.data) is None or not self._open:
            return
        name, start = self._open.pop()
        if not self._open:
            log.debug("numba compiled %s in %.1f s", name, time.perf_counter() - start)

    def tell(self) -> None:
        """Write the notice unless it was written (also for a wait on kernels that another
        process compiles)."""
        if not self.told and self.stream is not None:
            self.told = True
            tqdm.write(COMPILE_NOTICE, file=self.stream)

    def install(self) -> CompileNotice:
        event.register("numba:compile", self)
        return self

    def remove(self) -> None:
        event.unregister("numba:compile", self)


_notice: CompileNotice | None = None


def announce_compiles() -> None:
    """Install, once per process, the :class:`CompileNotice` of the command line: the notice
    on stderr where it is a terminal (as the bars), the debug log lines in any case."""
    global _notice
    if _notice is None:
        _notice = CompileNotice(sys.stderr if sys.stderr.isatty() else None).install()


def tell_compiling() -> None:
    """The command line's notice now (see :meth:`CompileNotice.tell`), installing it if need be."""
    announce_compiles()
    if _notice is not None:
        _notice.tell()
