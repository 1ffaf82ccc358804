"""The notice that numba is compiling the package's kernels: written once, for the package's
functions only, and only when numba really compiles (not when it loads its cache)."""

from __future__ import annotations

import io
import logging
import types

import numba
import numpy as np

from neurolake.cluster.progress import COMPILE_NOTICE, CompileNotice


def _kernel(module: str, name: str):
    """A fresh jitted function whose ``__module__`` is ``module`` (so numba has never compiled it)."""
    namespace = types.ModuleType(module)
    exec(
        f"def {name}(x):\n    total = 0.0\n    for v in x:\n        total += v * v\n    return total\n", vars(namespace)
    )
    func = getattr(namespace, name)
    func.__module__ = module
    return numba.njit(func)


def test_the_notice_is_written_once_for_the_package_and_never_for_others(caplog):
    stream = io.StringIO()
    notice = CompileNotice(stream, package="mypkg").install()
    try:
        other = _kernel("elsewhere.kernels", "other")
        assert other(np.arange(3.0)) == 5.0
        assert stream.getvalue() == ""  # numba compiled it, but it is not the package's
        first, second = _kernel("mypkg.kernels", "first"), _kernel("mypkg", "second")
        with caplog.at_level(logging.DEBUG, logger="neurolake.cluster.progress"):
            assert first(np.arange(4.0)) == 14.0
            assert second(np.ones(2)) == 2.0
            assert first(np.arange(2.0)) == 1.0  # compiled already: no event at all
            assert first(np.arange(3, dtype=np.int64)) == 5.0  # a new signature: compiled again
        assert stream.getvalue() == COMPILE_NOTICE + "\n"
        compiled = [r.getMessage() for r in caplog.records if r.getMessage().startswith("numba compiled")]
        assert [m.split(" in ")[0] for m in compiled] == [
            "numba compiled mypkg.kernels.first",
            "numba compiled mypkg.second",
            "numba compiled mypkg.kernels.first",
        ]
    finally:
        notice.remove()
    after = _kernel("mypkg.kernels", "third")
    assert after(np.ones(1)) == 1.0
    assert stream.getvalue() == COMPILE_NOTICE + "\n"  # removed: told nothing more


def test_a_notice_told_beforehand_is_not_written_again_when_numba_compiles():
    """The demo tells the notice while it waits for kernels another process compiles; the
    compiles in this process that follow do not repeat it."""
    stream = io.StringIO()
    notice = CompileNotice(stream, package="toldpkg").install()
    try:
        notice.tell()
        assert stream.getvalue() == COMPILE_NOTICE + "\n"
        assert _kernel("toldpkg.k", "f")(np.ones(2)) == 2.0
        notice.tell()
    finally:
        notice.remove()
    assert stream.getvalue() == COMPILE_NOTICE + "\n"


def test_a_notice_without_a_stream_only_logs(caplog):
    notice = CompileNotice(None, package="quietpkg").install()
    try:
        with caplog.at_level(logging.DEBUG, logger="neurolake.cluster.progress"):
            assert _kernel("quietpkg.k", "f")(np.ones(3)) == 3.0
    finally:
        notice.remove()
    assert any(r.getMessage().startswith("numba compiled quietpkg.k.f in ") for r in caplog.records)


def _load(path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_no_notice_when_numba_loads_a_kernel_from_its_cache(tmp_path):
    source = tmp_path / "cached_kernels.py"
    source.write_text("import numba\n\n\n@numba.njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    compiled, loaded = io.StringIO(), io.StringIO()
    notice = CompileNotice(compiled, package="cachepkg").install()
    try:
        assert _load(source, "cachepkg.first").twice(21) == 42  # compiled, and saved in the cache
    finally:
        notice.remove()
    notice = CompileNotice(loaded, package="cachepkg").install()
    try:
        again = _load(source, "cachepkg.again").twice  # a new dispatcher over the same file
        assert again(4) == 8
    finally:
        notice.remove()
    assert compiled.getvalue() == COMPILE_NOTICE + "\n"
    assert sum(again.stats.cache_hits.values()) == 1  # read from numba's cache: nothing said
    assert loaded.getvalue() == ""
