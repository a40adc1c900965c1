import itertools

import numpy as np
import pytest
from graphc.kernels.blas import choose_gemm, gemm, gemm_auto, gemm_loops

from .conftest import DTYPES

SHAPES = [(3, 5, 7), (1, 1, 1), (17, 9, 33), (1, 13, 4), (6, 1, 9), (70, 40, 30)]
DEGENERATE = [(0, 3, 2), (3, 0, 2), (3, 4, 0), (0, 0, 0)]
FLAGS = list(itertools.product([False, True], repeat=2))


def _operands(rng, dtype, m, n, k, ta, tb):
    A = rng.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    B = rng.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    C = rng.standard_normal((m, n)).astype(dtype)
    return A, B, C


def _ref(alpha, A, B, beta, C, ta, tb):
    A64, B64 = A.astype(np.float64), B.astype(np.float64)
    return alpha * ((A64.T if ta else A64) @ (B64.T if tb else B64)) + beta * C.astype(np.float64)


def _tol(dtype, k):
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-12 * max(k, 1))
    return dict(rtol=1e-5, atol=2e-6 * max(k, 1))


@pytest.mark.parametrize("fn", [gemm, gemm_loops, gemm_auto], ids=["blas", "loops", "auto"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_gemm_matches_numpy(fn, dtype, rng):
    for (m, n, k), (ta, tb) in itertools.product(SHAPES + DEGENERATE, FLAGS):
        for alpha, beta in [(1.0, 0.0), (0.7, 0.3), (-0.5, 1.0)]:
            A, B, C = _operands(rng, dtype, m, n, k, ta, tb)
            ref = _ref(alpha, A, B, beta, C, ta, tb)
            fn(ta, tb, alpha, A, B, beta, C)
            np.testing.assert_allclose(C, ref, **_tol(dtype, k), err_msg=str((m, n, k, ta, tb)))


@pytest.mark.parametrize("fn", [gemm, gemm_loops])
def test_beta_zero_ignores_nan_in_c(fn, rng):
    A, B, _ = _operands(rng, np.float64, 4, 3, 5, False, False)
    C = np.full((4, 3), np.nan)
    fn(False, False, 1.0, A, B, 0.0, C)
    np.testing.assert_allclose(C, A @ B, rtol=1e-12)
    C = np.full((4, 3), np.nan)
    fn(False, False, 1.0, A[:, :0].copy(), B[:0].copy(), 0.0, C)  # k == 0
    assert (C == 0).all()


def test_gemm_k0_scales_c():
    C = np.full((2, 3), 2.0, np.float32)
    gemm(False, False, 1.0, np.zeros((2, 0), np.float32), np.zeros((0, 3), np.float32), 0.5, C)
    assert (C == 1.0).all()


def test_choose_gemm():
    assert choose_gemm(4, 8, 2) == "loops"
    assert choose_gemm(64, 128, 784) == "blas"
    assert choose_gemm(4, 8, 2, transa=True, transb=True) == "blas"
    assert choose_gemm(8, 8, 8, transb=True) == "loops"


def test_gemm_callable_from_cached_njit(tmp_path):
    # The direct BLAS call must not make callers uncacheable (no dynamic globals).
    import subprocess
    import sys

    src = tmp_path / "user_mod.py"
    src.write_text(
        "import numpy as np\n"
        "from numba import njit\n"
        "from graphc.kernels.blas import gemm\n"
        "@njit(cache=True)\n"
        "def f(A, B, C):\n"
        "    gemm(False, True, 2.0, A, B, 0.0, C)\n"
        "A = np.arange(6.0).reshape(2, 3); B = np.ones((4, 3)); C = np.zeros((2, 4))\n"
        "f(A, B, C)\n"
        "assert np.allclose(C, 2 * A @ B.T)\n"
        "print(sum(f.stats.cache_hits.values()))\n"
    )
    out = [
        subprocess.run(
            [sys.executable, str(src)], capture_output=True, text=True, cwd=tmp_path, check=True
        ).stdout.strip()
        for _ in range(2)
    ]
    assert out == ["0", "1"]


# --- which BLAS: MKL when installed, else OpenBLAS; both paths, and fork safety -------------

_PROGRAM = """
import os, sys
import numpy as np
import graphc as gc
from graphc.kernels.blas import BLAS
x = gc.input("x", (None, 40)); y = gc.input("y", (None,), dtype="int64")
h = gc.dense(x, 48, activation="relu", name="l0")  # GEMMs past the loop-kernel sizes
loss = gc.softmax_cross_entropy(gc.dense(h, 5, name="l1"), y)
rng = np.random.default_rng(0)
feed = {"x": rng.standard_normal((33, 40)), "y": rng.integers(0, 5, 33)}
nets = [gc.compile(loss=loss, optimizer=gc.optim.SGD(lr=0.1), dtype="float64", seed=1,
                   backend=b) for b in ("compiled", "reference")]
losses = [[n.step(feed) for _ in range(3)] for n in nets]
np.testing.assert_allclose(losses[0], losses[1], rtol=1e-12)
for k, v in nets[1].params.items():
    np.testing.assert_allclose(nets[0].params[k], v, rtol=1e-10, atol=1e-12)
if "fork" in sys.argv:  # a forked child must be able to run BLAS too (GNU OpenMP hangs)
    pid = os.fork()
    if pid == 0:
        nets[0].step(feed)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
print(BLAS)
"""


def _run_program(blas: str, *args: str, init_at_fork: str | None = None) -> str:
    import os
    import subprocess
    import sys

    # Not inherited: importing scikit-learn (as other tests do) sets KMP_INIT_AT_FORK.
    env = {k: v for k, v in os.environ.items() if k != "KMP_INIT_AT_FORK"}
    env["GRAPHC_BLAS"] = blas
    if init_at_fork is not None:
        env["KMP_INIT_AT_FORK"] = init_at_fork
    res = subprocess.run([sys.executable, "-c", _PROGRAM, *args], env=env, capture_output=True,
                         text=True, timeout=150)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip().splitlines()[-1]


def test_openblas_path_matches_the_reference():
    assert "OpenBLAS" in _run_program("openblas")


@pytest.mark.parametrize("init_at_fork", [None, "FALSE"])
def test_default_blas_is_mkl_when_installed_and_survives_fork(init_at_fork):
    """A forked child runs its step, also with KMP_INIT_AT_FORK=FALSE, which
    ``import sklearn`` sets and under which the child's first threaded MKL GEMM used to
    wait forever (the 300 s timeout; seen on an AMD EPYC)."""
    from importlib import metadata

    try:
        metadata.version("mkl")
        installed = True
    except metadata.PackageNotFoundError:
        installed = False
    name = _run_program("auto", "fork", init_at_fork=init_at_fork)
    assert ("Math Kernel Library" if installed else "OpenBLAS") in name


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gemm_in_the_one_thread_band_is_exact_and_restores_the_thread_count(dtype, rng):
    """GEMMs of GEMM_ONE_THREAD_MNK run on the calling thread (MKL's per-thread setting,
    a no-op on OpenBLAS); the caller's setting is put back after the call."""
    from graphc.kernels import blas

    lo, hi = blas.GEMM_ONE_THREAD_MNK
    m = n = k = 100
    assert lo < m * n * k <= hi
    A, B = rng.standard_normal((m, k)).astype(dtype), rng.standard_normal((k, n)).astype(dtype)
    C = np.empty((m, n), dtype)
    mkl = blas.MKL_LIB is not None
    get = blas.MKL_LIB.MKL_Get_Max_Threads if mkl else None
    before = get() if mkl else None
    gemm(False, False, 1.0, A, B, 0.0, C)
    np.testing.assert_allclose(C, A.astype(np.float64) @ B, rtol=1e-4 if dtype == np.float32
                               else 1e-12, atol=1e-4 if dtype == np.float32 else 1e-12)
    if mkl:
        assert get() == before
