"""Shared pytest setup: a private compile cache per session, and the ``nojit`` marker."""

import os
import shutil
import tempfile

import pytest

_CACHE = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "nojit: runs kernels in a subprocess with NUMBA_DISABLE_JIT=1")
    # Before any test runs (and inherited by subprocesses): tests never write to ~/.cache.
    _CACHE["old"] = os.environ.get("GRAPHC_CACHE_DIR")
    _CACHE["dir"] = tempfile.mkdtemp(prefix="graphc-test-cache-")
    os.environ["GRAPHC_CACHE_DIR"] = _CACHE["dir"]


def pytest_unconfigure(config):
    if "dir" not in _CACHE:
        return
    shutil.rmtree(_CACHE.pop("dir"), ignore_errors=True)
    old = _CACHE.pop("old")
    if old is None:
        os.environ.pop("GRAPHC_CACHE_DIR", None)
    else:
        os.environ["GRAPHC_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def graphc_cache_dir():
    """The session's private compile cache (``$GRAPHC_CACHE_DIR``)."""
    return _CACHE["dir"]
