"""A process killed while it compiles into the cache leaves a cache the next process can use.

graphc writes each generated module atomically (temp file + fsync + rename) under
an ``flock`` on ``.g_<key>.lock`` and imports it only once complete; Numba writes
its index and data files by temp file + rename too, and a file it cannot read
costs one warning and a recompile (``CompiledImpl._first_call``).  So a SIGKILL at
any point of a compile -- after the module is written, or while Numba writes its
files -- must leave a directory in which the next process computes exactly what a
process with a cache of its own computes.

Eight processes compiling one graph into one empty directory at the same moment:
``tests/compiled/test_cache.py::test_eight_processes_compile_into_one_empty_directory``.
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

CHILD = textwrap.dedent(
    """
    import hashlib, json, sys, time, warnings
    from pathlib import Path
    import numpy as np
    import graphc as gc

    warnings.simplefilter("always")
    go = Path(sys.argv[1])
    print("ready", flush=True)
    while not go.exists():  # everyone starts compiling at the same moment
        time.sleep(0.001)
    x = gc.input("x", (None, 6))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 9, activation="elu", name="mp1")
    logits = gc.dense(h, 3, name="mp2")
    net = gc.compile(loss=gc.softmax_cross_entropy(logits, y), outputs={"logits": logits},
                     optimizer=gc.optim.Adam(0.01), dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((20, 6)), rng.integers(0, 3, 20)
    losses = [net.step({"x": X, "y": Y}) for _ in range(2)]
    net.fit({"x": X, "y": Y}, epochs=1, batch_size=8, shuffle=False, progress=False)
    out = net.run({"x": X})["logits"]
    blob = b"".join(v.tobytes() for v in net.params.values()) + out.tobytes()
    print(json.dumps({"digest": hashlib.sha256(blob).hexdigest(), "losses": losses,
                      "on_disk": net._impl.on_disk, "path": str(net._impl.path)}), flush=True)
    """
)


def spawn(go: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(go)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def finish(proc: subprocess.Popen, timeout: float = 600) -> dict:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{err}"
    assert "Traceback" not in err and "graphc:" not in err, err  # no error, no fallback warning
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def expected(tmp_path_factory) -> dict:
    """What one process alone, with a cache directory of its own, computes."""
    d = tmp_path_factory.mktemp("alone")
    (d / "go").touch()
    return finish(spawn(d / "go", {**os.environ, "GRAPHC_CACHE_DIR": str(d / "cache")}))


@pytest.mark.parametrize("stage", ["module", "numba"])
def test_a_process_killed_while_compiling_leaves_a_usable_cache(tmp_path, stage, expected):
    """SIGKILL one compiler mid-way: the next process still compiles (or loads) correctly."""
    import signal

    cache = tmp_path / "cache"
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache)}
    go = tmp_path / "go"
    go.touch()
    victim = spawn(go, env)
    try:
        assert victim.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 300
        # "module": kill as soon as the generated module exists; "numba": once Numba has
        # started writing its cache files.
        probe = (lambda: list(cache.glob("g_*.py"))) if stage == "module" else (
            lambda: list((cache / "__pycache__").glob("*.nb*")) if (cache / "__pycache__").is_dir()
            else [])
        while not probe():
            if victim.poll() is not None or time.monotonic() > deadline:
                pytest.skip("the compile finished before it could be interrupted")
            time.sleep(0.001)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=60)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
        victim.stdout.close()
        victim.stderr.close()
    assert finish(spawn(go, env))["digest"] == expected["digest"]
