"""``fit(on_nan=...)``: stop (default), raise or continue at a non-finite loss.

"stop" and "raise" keep the last finite weights and optimizer state (momentum) -- those
a separate program reaches by stepping through the same minibatches up to the failing
one -- also when the loss is still finite but an update overflowed the parameters;
"continue" runs every step.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc

BS, N = 8, 64


def _net(backend, lr=0.1):
    x = gc.input("x", (None, 4))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 6, activation="relu", name="h1")
    logits = gc.dense(h, 3, name="out")
    loss = gc.softmax_cross_entropy(logits, y)
    return gc.compile(loss=loss, outputs={"logits": logits},
                      optimizer=gc.optim.SGD(lr=lr, momentum=0.9), dtype="float32",
                      backend=backend, check_numerics=False)


def _data(bad_step=None):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((N, 4)).astype(np.float32)
    Y = rng.integers(0, 3, N)
    if bad_step is not None:
        X[BS * (bad_step - 1) + 2, 1] = np.nan
    return X, Y


def _stepped(backend, X, Y, steps, lr=0.1):
    """Parameters and optimizer state after ``steps`` plain steps, by name."""
    ref = _net(backend, lr)
    for k in range(steps):
        ref.step({"x": X[BS * k:BS * (k + 1)], "y": Y[BS * k:BS * (k + 1)]})
    return {**ref.params, **ref.state}


def _weights_and_state(net) -> dict:
    both = {**net.params, **net.state}
    assert len(both) > len(net.params), "the optimizer keeps state (momentum)"
    return both


BACKENDS = ["compiled", "reference"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_stop_is_the_default_and_keeps_the_last_finite_weights(backend):
    X, Y = _data(bad_step=4)
    net = _net(backend)
    hist = net.fit({"x": X, "y": Y}, epochs=3, batch_size=BS, shuffle=False, progress=False)
    assert hist.stopped_early and hist.epochs == []
    for words in ("epoch 0, step 4 of 8", "the loss was nan", "last finite", "check_numerics=True",
                  "on_nan='continue'"):
        assert words in hist.stop_reason, (words, hist.stop_reason)
    assert net.step_count == 3
    want = _stepped(backend, X, Y, 3)
    for k, v in _weights_and_state(net).items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_raise(backend):
    X, Y = _data(bad_step=2)
    net = _net(backend)
    with pytest.raises(gc.NumericsError, match=r"epoch 0, step 2 of 8.*last finite"):
        net.fit({"x": X, "y": Y}, epochs=2, batch_size=BS, shuffle=False, progress=False,
                on_nan="raise")
    assert net.step_count == 1
    want = _stepped(backend, X, Y, 1)
    for k, v in _weights_and_state(net).items():
        np.testing.assert_array_equal(v, want[k], err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_continue_runs_every_step(backend):
    X, Y = _data(bad_step=4)
    net = _net(backend)
    hist = net.fit({"x": X, "y": Y}, epochs=2, batch_size=BS, shuffle=False, progress=False,
                   on_nan="continue")
    assert not hist.stopped_early and hist.epochs == [0, 1]
    assert net.step_count == 2 * N // BS  # the epoch went on past the NaN step
    assert np.isnan(hist.loss[0])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # NumPy's overflow warnings
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_overflowing_update_with_a_finite_loss_is_undone(backend):
    # step 1's loss is finite, but lr * dW overflows float32: the weights after it are
    # inf and step 2's loss is NaN.  The last finite weights are the initial ones.
    X, Y = _data()
    X *= 1e10
    net = _net(backend, lr=1e30)
    init = _weights_and_state(net)
    hist = net.fit({"x": X, "y": Y}, epochs=1, batch_size=BS, shuffle=False, progress=False)
    assert hist.stopped_early
    assert "step 1 of 8" in hist.stop_reason and "update made the parameters" in hist.stop_reason
    assert net.step_count == 0
    for k, v in _weights_and_state(net).items():
        np.testing.assert_array_equal(v, init[k], err_msg=k)


def test_clean_data_is_unaffected():
    X, Y = _data()
    net = _net("compiled")
    hist = net.fit({"x": X, "y": Y}, epochs=2, batch_size=BS, shuffle=False, progress=False)
    assert not hist.stopped_early and hist.epochs == [0, 1] and net.step_count == 16
    want = _net("compiled")
    for _ in range(2):
        for k in range(N // BS):
            want.step({"x": X[BS * k:BS * (k + 1)], "y": Y[BS * k:BS * (k + 1)]})
    for k, v in net.params.items():
        np.testing.assert_array_equal(v, want.params[k], err_msg=k)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("backend", BACKENDS)
def test_divergence_inside_a_several_epoch_call_stops_where_one_epoch_calls_do(
        backend, monkeypatch):
    """A learning rate growing 1e3x per epoch overflows a few epochs in, inside the native
    call that runs epochs 1..9 at once: fit redoes them one per call and stops at the same
    step, with the same weights, as a fit driven epoch by epoch (a callback forces that)."""
    import graphc.runtime.fit as fit_mod

    monkeypatch.setattr(fit_mod, "CHUNK_SECONDS", 1e6)
    X, Y = _data()
    runs = []
    for callbacks in (None, [lambda epoch, history: None]):
        net = _net(backend, lr=gc.optim.ExponentialLR(0.1, 1e3))
        hist = net.fit({"x": X, "y": Y}, epochs=10, batch_size=BS, shuffle=True, seed=4,
                       progress=False, callbacks=callbacks)
        runs.append((hist, net))
    (h1, n1), (h2, n2) = runs
    assert h1.stopped_early and h1.stop_reason == h2.stop_reason
    assert 1 <= len(h1.epochs) < 10 and h1.epochs == h2.epochs and h1.loss == h2.loss
    assert n1.step_count == n2.step_count and n1.epoch == n2.epoch
    for k, v in n1.params.items():
        assert np.isfinite(v).all(), k
        np.testing.assert_array_equal(v, n2.params[k], err_msg=k)
