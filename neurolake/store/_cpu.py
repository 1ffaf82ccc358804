"""What the machine code numba compiles may use."""

from __future__ import annotations

import functools

import numba


@functools.cache
def numba_cpu_features() -> frozenset[str]:
    """The CPU features numba compiles for (``+avx2``, ``+f16c``, ...): those it is told to
    compile for (``NUMBA_CPU_FEATURES``), else the host's, as numba itself chooses them.
    Kernels that use an instruction only some CPUs have (through an LLVM intrinsic that
    would otherwise become slow generic code) check here and keep a portable version."""
    import llvmlite.binding as llvm

    features = getattr(numba.config, "CPU_FEATURES", None) or llvm.get_host_cpu_features().flatten()
    return frozenset(f for f in features.split(",") if f.startswith("+"))
