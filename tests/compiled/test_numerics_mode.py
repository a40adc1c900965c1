"""Numerics mode (``gc.compile(..., check_numerics=True)``) and the fastmath flags.

With the mode on, the generated code checks every value a kernel writes and
the first non-finite one stops the call: :class:`graphc.NumericsError` names
the op, its layer and the entry point, and a failed step leaves the weights,
the optimizer state and the step counter as they were.  Off (the default) the
generated source carries no check at all.  And no generated source, in either
mode, ever asks for the ``nnan`` / ``ninf`` fast-math flags, which would let
LLVM fold those very checks (and every ``isnan`` in the kernels) away; nor does
any kernel.
"""

from __future__ import annotations

import numpy as np
import pytest
from graphc.kernels import _util

import graphc as gc

from .opgroups import Group, groups
from .test_training_compiled import CASES, build


def regression(check_numerics=None, dtype="float32"):
    x = gc.input("x", (None, 3))
    y = gc.input("y", (None, 2))
    h = gc.dense(x, 5, activation="relu", name="fc1")
    out = gc.dense(h, 2, name="fc2")
    return gc.compile(loss=gc.mse(out, y), outputs={"out": out},
                      optimizer=gc.optim.Adam(lr=0.1), dtype=dtype,
                      check_numerics=check_numerics)


@pytest.fixture(scope="module")
def checked():
    return regression(True)


def feeds(n=4):
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((n, 3)).astype(np.float32),
            "y": rng.standard_normal((n, 2)).astype(np.float32)}


def test_an_inf_feed_stops_the_step_naming_the_op(checked):
    net = checked
    good = feeds()
    net.step(good)
    params, state, steps = net.params, net.state, net.step_count
    bad = {**good, "x": good["x"].copy()}
    bad["x"][1, 2] = np.inf
    with pytest.raises(gc.NumericsError,
                       match=r"inf in the output of dense \(act relu\) of layer 'fc1'.*"
                             r"in train_step at step 2.*feed 'x'"):
        net.step(bad)
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, params[k])
    for k, v in net.state.items():
        np.testing.assert_array_equal(v, state[k])
    assert net.step_count == steps
    assert np.isfinite(net.step(good))  # and the program carries on


def test_run_and_evaluate_name_the_entry(checked):
    bad = feeds()
    bad["x"][0, 0] = -np.inf
    with pytest.raises(gc.NumericsError, match=r"inf in the output of dense .*'fc1'.* in forward"):
        checked.run({"x": bad["x"]})
    with pytest.raises(gc.NumericsError, match=r"in evaluate"):
        checked.evaluate(bad)


def test_an_op_that_overflows_by_itself(checked):
    """All inputs finite, the op produced the inf: the message says so."""
    big = feeds()
    big["x"][0, 0] = 1e30  # finite in float32; its square in the mse is not
    with pytest.raises(gc.NumericsError, match=r"inf in the output of (mse|dense)"):
        checked.step(big)


def test_fit_in_numerics_mode_raises(checked):
    data = feeds(6)
    data["x"][4, 1] = np.nan
    with pytest.raises(gc.NumericsError, match=r"NaN in the output of dense .*'fc1'"):
        checked.fit(data, epochs=1, batch_size=2, shuffle=False, progress=False)


def test_off_by_default(monkeypatch):
    monkeypatch.delenv("GRAPHC_CHECK_NUMERICS", raising=False)
    off = regression()
    assert not off._impl.check_numerics
    assert "all_finite" not in off._impl.source
    bad = feeds()
    bad["x"][1, 2] = np.inf
    assert off.run({"x": bad["x"]})["out"].shape == (4, 2)  # no check, no error
    on = regression(True)
    assert "all_finite" in on._impl.source
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    assert "all_finite" in regression()._impl.source
    assert "all_finite" not in regression(False)._impl.source


def _sources():
    """Generated sources of many programs (built, not run: generating is cheap)."""
    for case in CASES:
        for dtype in ("float32", "float64"):
            net = build(case, dtype, "compiled")
            yield case.id, net._impl.source
    for check in (False, True):
        yield f"regression-{check}", regression(check)._impl.source
    for gi, specs in enumerate(groups()):
        yield f"op group {gi}", Group(specs, 7, "float64", "compiled").fn.program._impl.source


def test_no_generated_source_asks_for_nnan_or_ninf():
    n = 0
    for what, src in _sources():
        assert "nnan" not in src and "ninf" not in src, what
        assert "fastmath=True" not in src, what
        assert "FASTMATH = {'reassoc', 'contract', 'arcp', 'nsz', 'afn'}" in src, what
        n += 1
    assert n > 30


def test_no_kernel_asks_for_nnan_or_ninf():
    from kernel_dispatchers import kernel_dispatchers

    assert not {"nnan", "ninf", "fast"} & set(_util.FASTMATH)
    seen = 0
    for name, obj in kernel_dispatchers().items():
        fm = obj.targetoptions.get("fastmath")
        flags = set(getattr(fm, "flags", fm or ()))
        assert fm is not True and not {"nnan", "ninf", "fast"} & flags, f"{name}: fastmath={fm}"
        seen += 1
    assert seen > 20
