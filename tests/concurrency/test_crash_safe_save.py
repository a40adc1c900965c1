"""Crash-safe ``Program.save``: a process killed in the middle of a large save leaves the
previous model file intact, and it still loads bit-exactly with ``gc.load``.

``Program.save`` -> ``graphc.io.save_program`` -> ``graphc.io.save_model``: the zip is
written to a hidden temp file in the same directory, flushed and fsynced, renamed
over the target, and the directory fsynced.  (tests/io/test_model_file.py kills a
bare ``save_model``; this is the same at the Program level, optimizer state and all.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
import graphc.io

SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import graphc as gc

    x = gc.input("x", (None, 1000))
    y = gc.input("y", (None,), dtype="int64")
    logits = gc.dense(gc.dense(x, 4000, activation="relu", name="big1"), 10, name="big2")
    # The reference backend: no compile, the save is what takes time (~100 MB with Adam).
    net = gc.compile(loss=gc.softmax_cross_entropy(logits, y), optimizer=gc.optim.Adam(1e-3),
                     dtype="float64", seed=0, backend="reference")
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((4, 1000)), "y": rng.integers(0, 10, 4)}
    net.step(feeds)
    net.save(sys.argv[1])          # the previous model
    print("saved", flush=True)
    sys.stdin.readline()           # the test has read it
    net.step(feeds)                # the new one differs
    print("saving", flush=True)
    net.save(sys.argv[1])
    print("done", flush=True)
    """
)


def snapshot(program) -> dict:
    out = {k: v.tobytes() for k, v in {**program.params, **program.state}.items()}
    out["step_count"] = program.step_count
    return out


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_program_save_keeps_the_previous_model(tmp_path: Path) -> None:
    path = tmp_path / "model.gcm"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saved"
        before_bytes = path.read_bytes()
        before = snapshot(gc.load(path, backend="reference"))
        assert before["step_count"] == 1
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "saving"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # kill once the temp file holds data: mid-save
            temps = [p for p in tmp_path.iterdir() if p != path]
            if temps and temps[0].stat().st_size > 1 << 20:
                break
            assert proc.poll() is None, "the save finished before it could be interrupted"
            time.sleep(0.002)
        else:
            pytest.fail("the temp file never appeared")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stdin.close()
    assert proc.returncode == -signal.SIGKILL

    assert path.read_bytes() == before_bytes
    for backend in ("reference", "compiled"):
        assert snapshot(gc.load(path, backend=backend)) == before, backend
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert leftovers, "the kill came after the rename: nothing was interrupted"
    for p in leftovers:  # hidden, not a .gcm, and refused as a model
        assert p.name.startswith(".") and not p.name.endswith(".gcm")
        with pytest.raises(gc.ModelFileError):
            gc.load(p)


def test_program_save_goes_through_the_atomic_writer(tmp_path, monkeypatch):
    calls = []
    real = graphc.io.save_model

    def spy(path, meta, arrays):
        calls.append((Path(path), sorted(arrays)))
        return real(path, meta, arrays)

    monkeypatch.setattr(graphc.io, "save_model", spy)
    x = gc.input("x", (None, 2))
    net = gc.compile(loss=gc.mean(gc.dense(x, 1, name="fc")), optimizer=gc.optim.Adam(0.1),
                     backend="reference")
    net.save(tmp_path / "m.gcm")
    assert calls == [(tmp_path / "m.gcm", ["fc/W", "fc/W:exp_avg", "fc/W:exp_avg_sq", "fc/b",
                                           "fc/b:exp_avg", "fc/b:exp_avg_sq"])]
    assert [p.name for p in tmp_path.iterdir()] == ["m.gcm"]  # no temp file left behind
    loaded = gc.load(tmp_path / "m.gcm", backend="reference")
    assert all(np.array_equal(loaded.params[k], v) for k, v in net.params.items())
