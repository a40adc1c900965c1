import numpy as np
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "nojit: runs kernels in a subprocess with NUMBA_DISABLE_JIT=1")


DTYPES = [np.float64, np.float32]


def tol(dtype):
    """(rtol, atol) for comparing a kernel against a float64 NumPy reference."""
    if dtype == np.float64:
        return dict(rtol=1e-12, atol=1e-12)
    return dict(rtol=1e-5, atol=1e-5)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
