"""Numerics mode: ``check_numerics=True`` / ``GRAPHC_CHECK_NUMERICS=1``.

A different generated module checks every value each kernel writes -- tuple elements,
parameters updated in place (also by the SGD folded into the dense backward) and
optimizer state -- and stops at the first non-finite one; the runtime raises
``NumericsError`` naming the value, the op, the user's layer and line, the entry and
step, and which inputs were already non-finite, and puts back the weights from
before that step.  Off, the module has no check at all.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import graphc as gc

HERE = __file__.rsplit("/", 1)[-1]


def _net(opt, check=True, dtype="float32", act="relu"):
    x = gc.input("x", (None, 4))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 5, activation=act, name="fc1")
    logits = gc.dense(h, 3, name="fc2")
    loss = gc.softmax_cross_entropy(logits, y)
    return gc.compile(loss=loss, outputs={"logits": logits}, optimizer=opt, dtype=dtype,
                      check_numerics=check)


def _data(n=8, dtype=np.float32):
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, 4)).astype(dtype), rng.integers(0, 3, n)


def _blocks(src: str, entry: str) -> list[str]:
    """The per-node blocks ("    # %id op ...") of one generated entry function."""
    body = src.split(f"def {entry}(", 1)[1].split("\n@njit", 1)[0]
    return re.split(r"\n(?=    # %\d+ )", body)[1:]


def test_off_by_default_and_a_different_module(monkeypatch):
    monkeypatch.delenv("GRAPHC_CHECK_NUMERICS", raising=False)
    off = _net(gc.optim.SGD(lr=0.1), check=None)
    on = _net(gc.optim.SGD(lr=0.1), check=True)
    assert off.options["check_numerics"] is False
    assert "all_finite" not in off._impl.source
    assert "all_finite" in on._impl.source
    assert off._impl.key != on._impl.key


def test_environment_variable(monkeypatch):
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "1")
    assert _net(gc.optim.SGD(lr=0.1), check=None).options["check_numerics"] is True
    assert _net(gc.optim.SGD(lr=0.1), check=False).options["check_numerics"] is False
    x = gc.input("x", (None, 2))
    f = gc.function([x], [gc.sigmoid(x)])
    assert "all_finite" in f.program._impl.source
    monkeypatch.setenv("GRAPHC_CHECK_NUMERICS", "0")
    assert _net(gc.optim.SGD(lr=0.1), check=None).options["check_numerics"] is False


@pytest.mark.parametrize("opt", ["sgd-folded", "adam", "sgd-momentum"])
def test_every_kernel_block_is_checked(opt):
    o = {"sgd-folded": gc.optim.SGD(lr=0.1), "adam": gc.optim.Adam(lr=0.01),
         "sgd-momentum": gc.optim.SGD(lr=0.1, momentum=0.9)}[opt]
    net = _net(o)
    src = net._impl.source
    for entry in ("train_step", "forward", "evaluate"):
        for block in _blocks(src, entry):
            # a kernel call (views carved by K_view are declarations, not kernels)
            if re.search(r"K_(?!view\.)", block) and not re.match(r"    # %\d+ constant", block):
                assert "K_ew.all_finite(" in block, f"{entry}: unchecked kernel\n{block}"
    blocks = _blocks(src, "train_step")
    if opt == "sgd-folded":
        folded = [b for b in blocks if re.search(r"dense_bwd_sgd(_small)?\(", b)]
        assert folded, "expected the SGD update folded into the dense backward"
        for b in folded:  # W and b of the layer, updated in place (+ dx when it is used)
            assert len(re.findall(r"all_finite\(K_view\.carve\(p\d+,", b)) == 2, b
    else:
        updates = [b for b in blocks if "K_opt." in b]
        assert len(updates) == 4  # fc1/W, fc1/b, fc2/W, fc2/b
        slots = 1 + (2 if opt == "adam" else 1)  # the parameter and its state slots
        for b in updates:
            assert b.count("K_ew.all_finite(") == slots, b


def test_nan_feed_names_layer_op_step_and_input():
    net = _net(gc.optim.SGD(lr=0.1))
    X, Y = _data()
    net.step({"x": X, "y": Y})
    before, count = net.params, net.step_count
    X[3, 1] = np.nan
    with pytest.raises(gc.NumericsError) as ei:
        net.step({"x": X, "y": Y})
    msg = str(ei.value)
    for words in ("NaN", "dense", "'fc1'", HERE, "train_step", "step 2", "feed 'x' (NaN)"):
        assert words in msg, (words, msg)
    after = net.params
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert net.step_count == count
    X[3, 1] = 0.0
    assert np.isfinite(net.step({"x": X, "y": Y}))  # and it goes on


def test_run_and_evaluate_are_checked_too():
    net = _net(gc.optim.SGD(lr=0.1))
    X, Y = _data()
    X[0, 0] = np.inf
    with pytest.raises(gc.NumericsError, match=r"\+inf.*forward.*feed 'x' \(\+inf\)"):
        net.run({"x": X})
    with pytest.raises(gc.NumericsError, match="evaluate"):
        net.evaluate({"x": X, "y": Y})


def test_tuple_outputs_are_checked():
    # dW of a fused (linear) dense backward overflows float32 while dx and db stay finite
    x = gc.input("x", (None, 2))
    g = gc.input("g", (None, 3))
    W = gc.parameter("lay/W", (2, 3), init="ones")
    b = gc.parameter("lay/b", (3,), init="zeros")
    y = gc.matmul(x, W) + b
    dx, dW, db = gc.grad(gc.sum(y * g), [x, W, b])
    f = gc.function([x, g], [dx, dW, db], check_numerics=True)
    assert re.search(r"K_dense\.dense_bwd(_small)?\(", f.program._impl.source)
    f.set_params({"lay/W": np.full((2, 3), 1e-10, np.float32)})  # keeps y * g finite
    xv = np.full((4, 2), 1e-3, np.float32)
    xv[:, 0] = 1e30
    gv = np.full((4, 3), 1e8, np.float32)  # dW = x.T @ g = 4e38 > float32's max
    with pytest.raises(gc.NumericsError) as ei:
        f(xv, gv)
    assert "output dW of dense_bwd" in str(ei.value), str(ei.value)
    assert "all its inputs are finite" in str(ei.value)
    # the loss element of the fused cross-entropy
    z = gc.input("z", (None, 3))
    lab = gc.input("lab", (None,), dtype="int64")
    loss = gc.softmax_cross_entropy(z, lab)
    f2 = gc.function([z, lab], [loss, gc.grad(loss, [z])[0]], check_numerics=True)
    assert "K_loss.sce_fwd(" in f2.program._impl.source
    with pytest.raises(gc.NumericsError, match="output loss of sce_fused"):
        f2(np.array([[-np.inf, 0.0, 1.0]], np.float32), np.array([0]))


def test_folded_sgd_update_is_checked():
    net = _net(gc.optim.SGD(lr=1e30))
    assert re.search(r"dense_bwd_sgd(_small)?\(", net._impl.source)
    X, Y = _data()
    X *= 1e10
    before = net.params
    with pytest.raises(gc.NumericsError) as ei:
        net.step({"x": X, "y": Y})
    msg = str(ei.value)
    assert re.search(r"parameter 'fc\d/[Wb]' after its sgd update", msg), msg
    assert all(np.array_equal(before[k], v) for k, v in net.params.items())
    assert net.step_count == 0


def test_optimizer_state_is_checked():
    net = _net(gc.optim.Adam(lr=0.01))
    X, Y = _data()
    X *= 1e25  # dW ~ 1e25: its square overflows the second-moment estimate
    with pytest.raises(gc.NumericsError) as ei:
        net.step({"x": X, "y": Y})
    assert re.search(r"optimizer state 'fc\d/W:exp_avg_sq' after its adam update", str(ei.value)), \
        str(ei.value)
    assert all(np.isfinite(v).all() for v in net.params.values())


def test_fit_in_numerics_mode_raises_with_the_last_finite_weights():
    net = _net(gc.optim.SGD(lr=0.1, momentum=0.9))
    X, Y = _data(64)
    X[8 * 3 + 2, 0] = np.nan  # the 4th minibatch of 8
    ref = _net(gc.optim.SGD(lr=0.1, momentum=0.9), check=False)
    for k in range(3):
        ref.step({"x": X[8 * k:8 * k + 8], "y": Y[8 * k:8 * k + 8]})
    with pytest.raises(gc.NumericsError, match="step 4"):
        net.fit({"x": X, "y": Y}, epochs=2, batch_size=8, shuffle=False, progress=False)
    assert net.step_count == 3
    got = net.params
    for k, v in ref.params.items():
        np.testing.assert_array_equal(got[k], v)
