"""``Program.fit`` / ``evaluate`` / ``predict``: determinism, equivalence with a manual step
loop, early stopping, callbacks.  (Digits to >= 0.95 test accuracy through the compiled fit
is tests/frontends/test_layers.py::test_digits_reaches_95_percent; the CLI tests train
digits too.)"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.runtime.fit import epoch_order

from .helpers import BACKENDS, make_data, shared_net


def _arrays_equal(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_fit_with_a_fixed_seed_is_deterministic():
    data, val = make_data(100, seed=1), make_data(30, seed=2)
    runs = []
    for fit_seed in (5, 5, 6):
        net = shared_net()
        hist = net.fit(data, epochs=3, batch_size=16, validation=val, seed=fit_seed,
                       progress=False)
        runs.append((hist, net.params, net.state))
    (h1, p1, s1), (h2, p2, s2), (h3, p3, _) = runs
    for field in ("epochs", "loss", "val_loss", "val_accuracy", "best_epoch"):
        assert getattr(h1, field) == getattr(h2, field), field
    _arrays_equal(p1, p2)
    _arrays_equal(s1, s2)
    # ...and the seed matters: another one shuffles differently.
    assert h3.loss != h1.loss
    assert not np.array_equal(p3["fc1/W"], p1["fc1/W"])


@pytest.mark.parametrize("shuffle", [False, True], ids=["in_order", "shuffled"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_fit_equals_a_manual_step_loop(backend, shuffle):
    """50 samples in batches of 16: three full batches and a short one of 2, per epoch; the
    shuffled order is ``epoch_order(seed, epoch, n)``, as documented."""
    data = make_data(50, seed=3)
    fitted, manual = shared_net(backend), shared_net(backend)
    hist = fitted.fit(data, epochs=2, batch_size=16, shuffle=shuffle, seed=11, progress=False)
    expect_loss = []
    for epoch in range(2):
        perm = epoch_order(11, epoch, 50) if shuffle else np.arange(50)
        total, sizes = 0.0, []
        for start in range(0, 50, 16):
            idx = perm[start:start + 16]
            sizes.append(idx.size)
            total += manual.step({"x": data["x"][idx], "y": data["y"][idx]}) * idx.size
        expect_loss.append(total / 50)
        assert sizes == [16, 16, 16, 2]
    assert fitted.step_count == manual.step_count == 8
    assert fitted.epoch == 2 and hist.epochs == [0, 1]
    # Same kernels, same order of operations: bit-identical, not merely close.
    _arrays_equal(fitted.params, manual.params)
    _arrays_equal(fitted.state, manual.state)
    np.testing.assert_allclose(hist.loss, expect_loss, rtol=1e-12)


@pytest.mark.parametrize("shuffle", [False, True], ids=["in_order", "shuffled"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_several_epochs_per_native_call_equal_one_at_a_time(backend, shuffle, monkeypatch):
    """Without progress, validation or callbacks, fit runs one timing epoch and then the
    rest in one call (CHUNK_SECONDS made huge here); every epoch's order, learning rate
    (a schedule), loss and the final weights are bit-identical to six fit(epochs=1)."""
    import graphc.runtime.fit as fit_mod
    from graphc.runtime.program import Program

    monkeypatch.setattr(fit_mod, "CHUNK_SECONDS", 1e6)
    calls = []
    run_epochs = Program.run_epochs

    def counting(self, *a, **kw):
        calls.append(a[5] if len(a) > 5 else kw.get("epochs", 1))
        return run_epochs(self, *a, **kw)

    monkeypatch.setattr(Program, "run_epochs", counting)
    data = make_data(50, seed=3)
    lr = gc.optim.ExponentialLR(0.05, 0.7)
    chunked, single = shared_net(backend, lr=lr), shared_net(backend, lr=lr)
    hist = chunked.fit(data, epochs=6, batch_size=16, shuffle=shuffle, seed=9, progress=False)
    assert calls == [1, 5]
    losses = []
    for _ in range(6):
        losses += single.fit(data, epochs=1, batch_size=16, shuffle=shuffle, seed=9,
                             progress=False).loss
    assert hist.loss == losses and hist.epochs == list(range(6))
    assert chunked.epoch == single.epoch == 6 and chunked.step_count == single.step_count == 24
    _arrays_equal(chunked.params, single.params)
    _arrays_equal(chunked.state, single.state)


def test_epoch_order_is_a_seeded_permutation():
    a = epoch_order(5, 0, 1000)
    assert sorted(a.tolist()) == list(range(1000))
    np.testing.assert_array_equal(a, epoch_order(5, 0, 1000))
    assert not np.array_equal(a, epoch_order(5, 1, 1000))
    assert not np.array_equal(a, epoch_order(6, 0, 1000))
    assert epoch_order(-1, 2**70, 3).size == 3  # any int seed/epoch, reduced mod 2**64
    # Every order of 3 items about equally often (a Fisher-Yates off by one is not).
    counts: dict = {}
    for e in range(6000):
        key = tuple(epoch_order(1, e, 3))
        counts[key] = counts.get(key, 0) + 1
    assert len(counts) == 6 and min(counts.values()) > 850, counts


def test_compiled_fit_matches_reference_fit():
    data, val = make_data(60, seed=4), make_data(20, seed=5)
    hists, params = [], []
    for backend in BACKENDS:
        net = shared_net(backend)
        hists.append(net.fit(data, epochs=3, batch_size=8, validation=val, seed=2,
                             progress=False))
        params.append(net.params)
    for field in ("loss", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(getattr(hists[0], field), getattr(hists[1], field),
                                   rtol=1e-10, err_msg=field)
    for k in params[0]:
        np.testing.assert_allclose(params[0][k], params[1][k], rtol=1e-10, atol=1e-13,
                                   err_msg=k)


@pytest.mark.parametrize("backend", BACKENDS)
def test_early_stopping_restores_the_best_epoch(backend):
    """Training labels are all class 0, validation labels 60% class 0 and 40% class 1: as
    training pushes p(class 0) up, the validation loss falls until p(0) passes ~0.6, then
    rises.  Training stops ``patience`` epochs after the best one and restores its weights
    (the optimizer state too, so the model is exactly the one of that epoch)."""
    rng = np.random.default_rng(0)
    train = {"x": rng.standard_normal((64, 5)), "y": np.zeros(64, np.int64)}
    val = {"x": rng.standard_normal((40, 5)), "y": np.where(np.arange(40) < 24, 0, 1)}
    net = shared_net(backend, lr=0.005)
    snapshots = {}

    def snapshot(epoch, history):
        snapshots[epoch] = (net.params, net.state, net.step_count)

    patience = 2
    hist = net.fit(train, epochs=30, batch_size=16, validation=val, patience=patience,
                   seed=1, progress=False, callbacks=[snapshot])
    best = int(np.argmin(hist.val_loss))
    assert hist.best_epoch == hist.epochs[best] == best
    assert best >= 1, "the crafted validation loss should first fall"
    assert hist.stopped_early and "did not improve for 2 epochs" in hist.stop_reason
    assert hist.epochs == list(range(best + patience + 1)) and len(hist.epochs) < 30
    assert all(v > hist.val_loss[best] for v in hist.val_loss[best + 1:])
    _arrays_equal(net.params, snapshots[best][0])
    _arrays_equal(net.state, snapshots[best][1])
    assert net.step_count == snapshots[best][2]  # Adam's bias correction resumes from there
    assert net.evaluate(val)["loss"] == pytest.approx(hist.val_loss[best], rel=1e-12)


def test_early_stopping_needs_validation_data():
    net = shared_net("reference")
    with pytest.raises(gc.GraphError, match="patience.*needs validation"):
        net.fit(make_data(8), epochs=2, patience=1, progress=False)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_callback_returning_false_stops_training(backend):
    net = shared_net(backend)
    seen = []

    def cb(epoch, history):
        seen.append((epoch, len(history.loss)))
        return epoch < 1  # None or True carry on; False stops

    hist = net.fit(make_data(40), epochs=10, batch_size=8, callbacks=[cb, lambda e, h: None],
                   progress=False)
    assert seen == [(0, 1), (1, 2)]
    assert hist.epochs == [0, 1] and hist.stopped_early
    assert "callback stopped at epoch 1" in hist.stop_reason
    assert net.epoch == 2 and net.step_count == 10
    # A later fit continues counting epochs (schedules and shuffling resume from there).
    assert net.fit(make_data(40), epochs=1, batch_size=8, progress=False).epochs == [2]


@pytest.mark.parametrize("backend", BACKENDS)
def test_evaluate_and_predict(backend):
    data, test = make_data(300, seed=6), make_data(101, seed=7)
    net = shared_net(backend)
    before = net.evaluate(test)
    hist = net.fit(data, epochs=6, batch_size=16, validation=test, seed=0, progress=False)
    res = net.evaluate(test)
    assert set(res) == {"loss", "accuracy"}
    assert res["accuracy"] > 0.8 and res["accuracy"] > before["accuracy"]
    assert res["loss"] < before["loss"]
    assert res["loss"] == pytest.approx(hist.val_loss[-1], rel=1e-12)
    assert res["accuracy"] == hist.val_accuracy[-1]

    logits = net.predict(test["x"], batch_size=16)  # 7 batches, the last one short
    assert logits.shape == (101, 3) and logits.dtype == np.float64
    np.testing.assert_allclose(logits, net.run({"x": test["x"]})["logits"], rtol=1e-12)
    np.testing.assert_array_equal(net.predict(test["x"], output="logits"), logits)
    np.testing.assert_array_equal(net.predict({"x": test["x"]}), logits)
    assert net.predict(test["x"][:1]).shape == (1, 3)
    # evaluate's numbers are the mean cross-entropy and the argmax accuracy of these logits.
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    assert res["loss"] == pytest.approx(-logp[np.arange(101), test["y"]].mean(), rel=1e-10)
    assert res["accuracy"] == pytest.approx((logits.argmax(axis=1) == test["y"]).mean())
    # evaluate and predict leave the weights alone.
    p = net.params
    net.evaluate(test)
    net.predict(test["x"])
    _arrays_equal(net.params, p)


def test_evaluate_of_a_regression_has_no_accuracy():
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 2))
    out = gc.dense(gc.dense(x, 4, activation="tanh", name="h"), 2, name="o")
    net = gc.compile(loss=gc.mse(out, t), outputs={"out": out}, optimizer=gc.optim.SGD(lr=0.1),
                     backend="reference", dtype="float64")
    rng = np.random.default_rng(0)
    xv, tv = rng.standard_normal((20, 3)), rng.standard_normal((20, 2))
    res = net.evaluate({"x": xv, "t": tv})
    assert set(res) == {"loss"}
    assert res["loss"] == pytest.approx(((net.predict(xv) - tv) ** 2).mean(), rel=1e-12)
    hist = net.fit({"x": xv, "t": tv}, epochs=2, batch_size=5, validation={"x": xv, "t": tv},
                   progress=False)
    assert all(np.isnan(a) for a in hist.val_accuracy)


def test_fit_accepts_a_dataset_and_is_silent_without_progress(capsys):
    ds = gc.data.Dataset(**make_data(40), n_classes=3)
    net = shared_net("reference")
    hist = net.fit(ds, epochs=2, batch_size=8, validation=ds, progress=True)
    assert len(hist.loss) == 2 and len(hist.samples_per_s) == 2
    out, err = capsys.readouterr()
    assert out == "" and err == ""  # not a TTY: no progress bar
    assert net.evaluate(ds)["loss"] == pytest.approx(hist.val_loss[-1])
