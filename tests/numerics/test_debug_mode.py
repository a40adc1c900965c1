"""Debug mode: ``GRAPHC_DEBUG=1`` compiles kernels and generated code with Numba's
bounds checking, into a cache of its own (see ``graphc.kernels``).

Numba's cache index ignores compile flags, so with a shared cache a bound-checked
kernel would be served to a normal run and an unchecked one to a debug run; each
mode therefore reports where its kernels' cache lives and whether an out-of-bounds
read raises.  Each runs in a subprocess, since the mode is fixed at import.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import json, numpy as np
    import graphc as gc
    from graphc import kernels
    from graphc.kernels import activations as A
    from numba.core import config
    out = {"debug": kernels.DEBUG, "boundscheck": config.BOUNDSCHECK,
           "cache": str(A.act_fwd._cache._cache_path)}
    x = gc.input("x", (None, 2))
    f = gc.function([x], [gc.sigmoid(x)])
    out["key"] = f.program._impl.key
    out["source_flag"] = "boundscheck=True" in f.program._impl.source
    out["ok"] = bool(np.allclose(f(np.zeros((3, 2), np.float32))[0], 0.5))
    if kernels.DEBUG:  # an out-of-bounds read (slope of size 1 for 3 units)
        z = np.ones((1, 3)); y = np.empty_like(z)
        try:
            A.act_fwd(A.PRELU, 0.0, np.ones(1), z, y)
            out["oob"] = "no error"
        except IndexError as e:
            out["oob"] = "IndexError: " + str(e)
    print(json.dumps(out))
""")


def _probe(debug: bool, cache_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("GRAPHC_DEBUG", "NUMBA_BOUNDSCHECK", "NUMBA_CACHE_DIR")}
    env["GRAPHC_CACHE_DIR"] = cache_dir
    if debug:
        env["GRAPHC_DEBUG"] = "1"
    r = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_debug_and_normal_builds_never_share_compiled_code(graphc_cache_dir):
    debug = _probe(True, graphc_cache_dir)
    normal = _probe(False, graphc_cache_dir)
    debug2 = _probe(True, graphc_cache_dir)  # a second debug run reuses the debug cache
    assert debug["debug"] and debug["boundscheck"] == 1 and debug["ok"]
    assert debug["oob"].startswith("IndexError"), debug["oob"]
    assert debug["source_flag"] and not normal["source_flag"]
    assert debug["key"] != normal["key"] and debug["key"] == debug2["key"]
    debug_root = str(Path(graphc_cache_dir) / "numba-debug")
    assert debug["cache"].startswith(debug_root), debug["cache"]
    assert not normal["debug"] and normal["boundscheck"] is None and normal["ok"]
    assert not normal["cache"].startswith(debug_root), normal["cache"]
    assert debug2["oob"].startswith("IndexError")  # served from the debug cache: still checked


@pytest.mark.debugmode
def test_kernel_suite_under_debug_mode(graphc_cache_dir):
    """CI runs the kernel tests once with bounds checking (a cold compile of every kernel
    with boundscheck, into the session's private cache)."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_BOUNDSCHECK", "NUMBA_CACHE_DIR")}
    env.update(GRAPHC_DEBUG="1", GRAPHC_CACHE_DIR=graphc_cache_dir)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pytest", "tests/kernels", "-q", "-p",
                        "no:cacheprovider"], env=env, cwd=ROOT, capture_output=True, text=True,
                       timeout=900)
    tail = (r.stdout + r.stderr)[-4000:]
    assert r.returncode == 0, tail
    assert " passed" in tail and "failed" not in tail, tail
    print(f"tests/kernels under GRAPHC_DEBUG=1: {time.perf_counter() - t0:.0f} s")
