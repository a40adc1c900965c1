"""Thread-count environment variables; dependency-free so it can run before NumPy loads."""

from __future__ import annotations

import os

THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def set_thread_env(n: int) -> None:
    """Set the thread-count environment variables; only effective before the libraries load.

    Called by ``python -m benchmarks`` before NumPy/torch/jax are imported. Variables the user
    set already are left alone. With n == 1, XLA's Eigen pool is also switched off; for n > 1
    XLA has no thread-count flag: its pool follows the CPU affinity, which
    `harness.pin_threads` sets.
    """
    for var in THREAD_ENV:
        os.environ.setdefault(var, str(n))
    if n == 1:
        flags = os.environ.get("XLA_FLAGS", "")
        if "xla_cpu_multi_thread_eigen" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_multi_thread_eigen=false").strip()
