"""The differential fuzzer's own checks can fail: a harness that accepts everything would
pass every campaign.

:func:`.tolerances.mismatch` is tested on hand-made arrays (a NaN or inf that moved, a
value just past the tolerance), and :func:`.harness.check_case` on a real case whose
compiled observation is tampered with after the fact -- a value off by 1e-6 relative in
float64 (10^4 tolerances, but less than a wrong formula would move it) and a NaN that
only the compiled side has -- through every allowance it then tries.  The failure
report must carry what the module docstring of ``test_differential`` promises: the
seeds, the graph as ``graphc dump`` text and a script that reruns the case.
"""

from __future__ import annotations

import runpy

import numpy as np
import pytest

from . import harness
from .harness import check_case
from .strategies import Case, case
from .tolerances import F64_RTOL, mismatch


@pytest.mark.parametrize("label,got", [
    ("NaN", [1.0, np.nan, 3.0]),
    ("+inf", [1.0, 2.0, np.inf]),
    ("-inf", [-np.inf, 2.0, 3.0]),
])
def test_a_non_finite_value_the_reference_does_not_have_is_a_mismatch(label, got):
    msg = mismatch("v", np.array(got), np.array([1.0, 2.0, 3.0]), 1.0)  # any tolerance
    assert msg is not None and f"{label} at different positions" in msg


def test_inf_signs_and_nan_positions_must_agree():
    assert mismatch("v", np.array([np.inf]), np.array([-np.inf]), 1.0) is not None
    assert mismatch("v", np.array([np.nan, 1.0]), np.array([1.0, np.nan]), 1.0) is not None
    assert mismatch("v", np.array([np.nan, np.inf, 1.0]), np.array([np.nan, np.inf, 1.0]),
                    0.0) is None


def test_the_tolerance_is_relative_to_the_array_scale_and_no_wider():
    want = np.array([1.0, -2.0, 1e-9])
    bound = F64_RTOL * (np.abs(want) + 2.0)  # |entry| + the array's largest
    assert mismatch("v", want + 0.99 * bound, want, F64_RTOL) is None
    off = want.copy()
    off[2] += 1.01 * bound[2]
    msg = mismatch("v", off, want, F64_RTOL)
    assert msg is not None and "1 of 3 entries off, worst at (2,)" in msg


def test_shape_dtype_and_integer_values_are_exact():
    assert "shape" in mismatch("v", np.zeros(3), np.zeros(4), 1.0)
    assert "dtype" in mismatch("v", np.zeros(3, np.float32), np.zeros(3), 1.0)
    assert mismatch("v", np.array([1, 2]), np.array([1, 3]), 1.0) is not None


SMALL = case('''
    def model():
        x = gc.input("x", (None, 3))
        h0 = gc.dense(x, 4, activation="tanh", name="l0")
        y = gc.input("y", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(gc.dense(h0, 2, name="l1"), y)
        return {"loss": loss, "out": h0}
    ''', '''
    def feeds(rng, n):
        return {"x": rng.standard_normal((n, 3)), "y": rng.integers(0, 2, n)}
    ''', batches=(3, 4, 2), optimizer="gc.optim.Adam(lr=0.01)", depth=2)


def _tamper(monkeypatch, key: str, how) -> None:
    """Make ``observe`` return the compiled observation ``key`` changed by ``how``."""
    real = harness.observe

    def observe(case: Case, backend: str, *args, **kw):
        res = real(case, backend, *args, **kw)
        if backend == "compiled":
            v = np.array(res[key])
            res[key] = how(v).astype(v.dtype)
        return res

    monkeypatch.setattr(harness, "observe", observe)


def test_the_untampered_case_passes():
    check_case(SMALL)


@pytest.mark.parametrize("key,how,says", [
    ("gradient of l0/W", lambda v: v * (1 + 1e-6), "gradient of l0/W: max abs error"),
    ("after 2 steps: l1/b", lambda v: np.where(np.arange(v.size) == 0, np.nan, v),
     "after 2 steps: l1/b: NaN at different positions"),
    ("run: out", lambda v: v + 1e-6 * np.abs(v).max(), "run: out: max abs error"),
    # after the steps, where the optimizer-spread allowance (up to ~lr for Adam) applies
    ("after 2 steps: l0/W", lambda v: v * (1 + 1e-3), "after 2 steps: l0/W: max abs error"),
])
def test_a_tampered_compiled_value_fails_with_a_reproduction(monkeypatch, key, how, says):
    _tamper(monkeypatch, key, how)
    with pytest.raises(AssertionError) as err:
        check_case(SMALL)
    text = str(err.value)
    assert says in text
    assert text.startswith("differential fuzz failure: hypothesis seed ")
    assert "case seed 0, dtype float64, depth 2" in text
    graph = text.split("--- the graph (graphc dump --stage input) ---")[1]
    assert "dense" in graph and "l0/W" in graph
    script = text.split("(or `graphc dump repro.py:model`) ---\n", 1)[1]
    assert script == SMALL.snippet().rstrip()
    compile(script, "repro.py", "exec")


SMALL32 = case('''
    def model():
        x = gc.input("x", (None, 3))
        h0 = gc.dense(x, 4, activation="tanh", name="l0")
        y = gc.input("y", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(gc.dense(h0, 2, name="l1"), y)
        return {"loss": loss, "out": h0}
    ''', '''
    def feeds(rng, n):
        return {"x": rng.standard_normal((n, 3)).astype("float32"), "y": rng.integers(0, 2, n)}
    ''', dtype="float32", batches=(3, 4, 2), optimizer="gc.optim.Adam(lr=0.01)", depth=2)


@pytest.mark.parametrize("key", ["after 2 steps: l0/W", "run after the steps: out"])
def test_a_float32_value_off_by_a_wrong_formula_fails_the_float64_truth_too(monkeypatch, key):
    """float32 values after an update get every allowance there is -- the optimizer
    spread, then the float64 truth judged against the farthest of the float32
    reference and its rounding-noise reruns -- and a value 1% off still fails."""
    check_case(SMALL32)
    _tamper(monkeypatch, key, lambda v: v * np.float32(1.01))
    with pytest.raises(AssertionError) as err:
        check_case(SMALL32)
    assert f"{key}: max abs error" in str(err.value)
    assert "against the float64 truth the compiled float32 value is off by" in str(err.value)


def test_the_reproduction_script_runs_on_its_own(monkeypatch, tmp_path, capsys):
    """The snippet of a failure report, run as a script, rebuilds the network and prints
    the backends' differences for every observation."""
    path = tmp_path / "repro.py"
    path.write_text(SMALL.snippet(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    runpy.run_path(str(path), run_name="__main__")
    out = capsys.readouterr().out
    for key in ("loss", "gradient of l0/W", "run: out", "step 2: loss", "after the steps: l1/b"):
        assert key in out, key
    assert "NaN in different places" not in out


def test_a_campaign_with_seen_skips_the_networks_earlier_rounds_tested(tmp_path):
    """``campaign --seen``: a round drawn after another skips the networks it recorded,
    and ``--replay`` of it skips exactly what the file held before that round."""
    from .campaign import read_seen, record_seen
    from .runner import draw_cases, network_key

    path = str(tmp_path / "seen.txt")
    first = draw_cases(20, 5, True)
    record_seen(path, 5, [network_key(c) for c in first])
    again = draw_cases(20, 5, True, read_seen(path))
    assert len(again) == 20
    assert not {network_key(c) for c in first} & {network_key(c) for c in again}
    record_seen(path, 6, [network_key(c) for c in again])
    assert len(read_seen(path)) == 40
    assert read_seen(path, before_seed=6) == {network_key(c) for c in first}
    replayed = draw_cases(20, 5, True, read_seen(path, before_seed=6))
    assert [c.model_src for c in replayed] == [c.model_src for c in again]
