"""Compile in worker processes (one per core) before the tests need the programs.

Compiling is the slow part of these tests and runs in one thread; a test
module hands :func:`prewarm` the jobs its selected tests will need --
``(module, function, args)`` triples naming a function that builds and runs a
program once -- and worker processes run them into the shared
``$GRAPHC_CACHE_DIR``.  The tests then build the same graphs (hence the same
generated source and cache key) and load the native code from Numba's cache.
A job that fails in a worker is only reported: the test compiles in-process
and shows the real failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

TESTS_DIR = str(Path(__file__).resolve().parent.parent)

_CODE = """
import importlib, json, sys, traceback
sys.path.insert(0, {tests!r})
for module, function, args in json.loads(sys.argv[1]):
    try:
        getattr(importlib.import_module(module), function)(*args)
    except Exception:
        traceback.print_exc()
"""


def workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
               else os.cpu_count() or 1)


def prewarm(jobs: list[tuple[str, str, list]]) -> None:
    """Run the jobs, split round-robin over one worker process per core."""
    jobs = list(dict.fromkeys((m, f, tuple(a)) for m, f, a in jobs))
    n = min(len(jobs), workers())
    if n <= 1:
        return  # the tests compile as they go
    code = _CODE.format(tests=TESTS_DIR)
    procs = [subprocess.Popen([sys.executable, "-c", code, json.dumps(jobs[w::n])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for w in range(n)]
    for p in procs:
        _, err = p.communicate()
        if err.strip():
            sys.stderr.write(f"warm.prewarm: a worker reported:\n{err[-3000:]}\n")


def selected(request, module_name: str) -> list:
    """The parametrize values of this module's selected tests: [(test name, params)]."""
    return [(item.originalname, item.callspec.params) for item in request.session.items
            if item.module.__name__ == module_name and hasattr(item, "callspec")]
