"""Compiled training against the reference interpreter: every fused pattern, both dtypes.

Each case is an MLP (two hidden layers of widths 7 and 13 -- not multiples of
the SIMD width -- and an output layer of 1, 3 or 4 units) built twice from the
same seed, once per backend; three ``step`` calls at batch sizes 7, 1 and 5
must give the same losses, parameters and optimizer state.  Between them the
cases cover

* every hidden activation: relu, sigmoid, tanh, leaky_relu (alpha 0.01, -0.2
  and 0), elu (alpha 1 and -0.5), softplus, prelu; and output layers with
  tanh, sigmoid and prelu feeding the loss directly;
* every loss: softmax cross-entropy with int labels and one-hot targets,
  binary cross-entropy (one logit and three), mse, mae, quantile;
* every optimizer: plain SGD (the update folded into the backward GEMM -- the
  test checks the fold happened -- with and without weight decay), SGD with
  momentum + dampening, Nesterov, Adam (+ L2), AdamW, RMSprop plain and
  centered with momentum; weight decay and global-norm clipping (which
  prevents the fold);
* a skip connection ``relu(dense(h) + h)`` (the activation cannot fuse into
  the layer: fusion refused) and tied weights (an autoencoder decoding with
  ``W.T``: linear backward fusion refused).

``fit`` (seeded shuffling, a short last batch, validation), ``run``,
``predict`` and ``evaluate`` are compared too.  Tolerances as in
``test_ops_compiled``: rtol 1e-5 / 1e-10 with ``atol = rtol * max|reference|``
per array.
"""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.runtime.fit import epoch_order

from .training_cases import CASES, N_IN, build, sample
from .warm import prewarm, selected

DTYPES = ["float64", "float32"]
RTOL = {"float32": 1e-5, "float64": 1e-10}
BATCHES = (7, 1, 5)


def assert_close(got, want, dtype, what):
    """rtol by dtype, atol = rtol * max|want| (see the module docstring)."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape, what
    rtol = RTOL[dtype]
    finite = want[np.isfinite(want)]
    atol = rtol * float(np.abs(finite).max()) if finite.size else 0.0
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def assert_same_state(a, b, dtype, when):
    pa, pb = a.params, b.params
    assert list(pa) == list(pb)
    for k in pa:
        assert pa[k].dtype == np.dtype(dtype)
        assert_close(pa[k], pb[k], dtype, f"parameter {k} {when}")
    sa, sb = a.state, b.state
    assert list(sa) == list(sb)
    for k in sa:
        assert_close(sa[k], sb[k], dtype, f"optimizer state {k} {when}")


def fusions(net, entry="train_step"):
    return net._impl.entries[entry].report.fusions


def warm(kind: str, index: int, dtype: str) -> None:
    """Compile what one test needs (a ``prewarm`` job): build, step, and for the fit
    tests fit / run / evaluate, so every entry point is in the cache."""
    if kind == "case":
        net = build(CASES[index], dtype, "compiled")
    else:
        net = (skip_net if kind == "skip" else tied_net)(dtype, "compiled")
    loss = "mse" if kind == "tied" else "sce_int" if kind == "skip" else CASES[index].loss
    feeds = sample(loss, 2, dtype, seed=0)
    if kind == "tied":
        feeds = {"x": feeds["x"]}
    net.step(feeds)
    if kind != "case" or index in FIT_CASES:
        net.run({"x": feeds["x"]})
    if kind == "case" and index in FIT_CASES:
        net.fit(feeds, epochs=1, batch_size=1, progress=False)
        net.evaluate(feeds)


FIT_CASES = (0, 7)  # the cases the fit tests use


@pytest.fixture(scope="module", autouse=True)
def _warm_cache(request):
    """Compile the programs the selected tests need, in parallel worker processes."""
    jobs = []
    for name, p in selected(request, __name__):
        if name == "test_steps_match_reference":
            jobs.append(("case", CASES.index(p["case"]), p["dtype"]))
        elif name == "test_unfusable_patterns_match_reference":
            jobs.append((p["kind"], 0, p["dtype"]))
        else:
            jobs += [("case", i, p["dtype"]) for i in FIT_CASES]
    prewarm([("compiled.test_training_compiled", "warm", list(j)) for j in jobs])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_steps_match_reference(case, dtype):
    comp, ref = build(case, dtype, "compiled"), build(case, dtype, "reference")
    assert_same_state(comp, ref, dtype, "at initialisation")
    for i, n in enumerate(BATCHES):
        feeds = sample(case.loss, n, dtype, seed=i)
        lc, lr = comp.step(feeds), ref.step(feeds)
        assert np.isfinite(lr)
        assert_close(lc, lr, dtype, f"loss of step {i + 1} (batch {n})")
        assert_same_state(comp, ref, dtype, f"after step {i + 1} (batch {n})")
    # Every layer's forward and backward was fused; the fold happened where it may.
    accepted = {(f.pass_name, f.layer) for f in fusions(comp) if f.accepted}
    for layer in ("h0", "h1", "out"):
        assert ("fuse_dense", layer) in accepted, layer
        assert ("fuse_dense_bwd", layer) in accepted, layer
    entry = comp._impl.entries["train_step"]
    folded = entry.emitter.folded
    if case.opt == "sgd" and case.clip is None:
        assert len(folded) == 3, "plain SGD should fold every layer's update into its GEMM"
        # ... every update: W, b and a PReLU slope alike.
        assert set(entry.graph.updates.values()) <= entry.emitter.skip
    else:
        assert not folded


def skip_net(dtype, backend):
    """h1 = relu(dense(h0) + h0): the add sits between the GEMM and the activation."""
    x = gc.input("x", (None, N_IN))
    y = gc.input("y", (None,), dtype="int64")
    h0 = gc.dense(x, 7, activation="tanh", name="h0")
    h1 = gc.relu(gc.dense(h0, 7, name="h1") + h0)
    out = gc.dense(h1, 4, name="out")
    return gc.compile(loss=gc.softmax_cross_entropy(out, y), outputs={"out": out},
                      optimizer=gc.optim.SGD(lr=0.1, momentum=0.5), dtype=dtype, seed=1,
                      backend=backend)


def tied_net(dtype, backend):
    """An autoencoder decoding with the encoder's W.T (tied weights)."""
    x = gc.input("x", (None, N_IN))
    W = gc.parameter("enc/W", (N_IN, 7), init="glorot_uniform")
    b = gc.parameter("enc/b", (7,), init="zeros")
    c = gc.parameter("dec/b", (N_IN,), init="zeros")
    code = gc.tanh(x @ W + b)
    recon = code @ W.T + c
    return gc.compile(loss=gc.mse(recon, x), outputs={"recon": recon},
                      optimizer=gc.optim.SGD(lr=0.1), dtype=dtype, seed=2, backend=backend)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["skip", "tied"])
def test_unfusable_patterns_match_reference(kind, dtype):
    make = skip_net if kind == "skip" else tied_net
    comp, ref = make(dtype, "compiled"), make(dtype, "reference")
    loss_kind = "sce_int" if kind == "skip" else "mse"
    for i, n in enumerate(BATCHES):
        feeds = sample(loss_kind, n, dtype, seed=10 + i)
        if kind == "tied":
            feeds = {"x": feeds["x"]}
        assert_close(comp.step(feeds), ref.step(feeds), dtype, f"loss of step {i + 1}")
        assert_same_state(comp, ref, dtype, f"after step {i + 1}")
    refused = [f for f in fusions(comp) if not f.accepted]
    assert refused, "expected a refused fusion"
    if kind == "tied":
        assert any(f.pass_name == "fuse_dense_bwd" for f in refused)
        assert not comp._impl.entries["train_step"].emitter.folded
    else:
        assert any(f.layer == "h1" for f in refused)
    out = "out" if kind == "skip" else "recon"
    x = sample(loss_kind, 6, dtype, seed=20)["x"]
    assert_close(comp.run({"x": x})[out], ref.run({"x": x})[out], dtype, "run")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_run_predict_evaluate_match_reference(dtype):
    """fit with seeded shuffling over 23 examples in batches of 5 (a last batch of 3),
    with validation; then run / predict / evaluate on the trained weights."""
    case = CASES[FIT_CASES[1]]  # relu + elu, int-label cross-entropy, centered RMSprop with momentum
    comp, ref = build(case, dtype, "compiled"), build(case, dtype, "reference")
    train, val = sample(case.loss, 23, dtype, seed=30), sample(case.loss, 9, dtype, seed=31)
    hists = [net.fit(train, epochs=3, batch_size=5, validation=val, shuffle=True, seed=4,
                     progress=False) for net in (comp, ref)]
    hc, hr = hists
    assert hc.epochs == hr.epochs == [0, 1, 2]
    assert_close(hc.loss, hr.loss, dtype, "epoch losses")
    assert_close(hc.val_loss, hr.val_loss, dtype, "validation losses")
    assert hc.val_accuracy == hr.val_accuracy
    assert comp.step_count == ref.step_count == 3 * 5
    assert_same_state(comp, ref, dtype, "after fit")
    x = sample(case.loss, 11, dtype, seed=32)
    assert_close(comp.run({"x": x["x"]})["out"], ref.run({"x": x["x"]})["out"], dtype, "run")
    assert_close(comp.predict(x["x"], batch_size=4), ref.predict(x["x"], batch_size=4), dtype,
                 "predict in batches of 4")
    assert_close(comp.predict(x["x"]), comp.run({"x": x["x"]})["out"], dtype, "predict vs run")
    ec, er = comp.evaluate(x), ref.evaluate(x)
    assert set(ec) == set(er) == {"loss", "accuracy"}
    assert_close(ec["loss"], er["loss"], dtype, "evaluate loss")
    assert ec["accuracy"] == er["accuracy"]
    # A second fit continues (epochs count on, so the shuffles differ) identically.
    hc2, hr2 = (net.fit(train, epochs=1, batch_size=8, seed=4, progress=False)
                for net in (comp, ref))
    assert hc2.epochs == hr2.epochs == [3]
    assert_close(hc2.loss, hr2.loss, dtype, "epoch loss of the second fit")
    assert_same_state(comp, ref, dtype, "after the second fit")


@pytest.mark.parametrize("dtype", DTYPES)
def test_fit_is_deterministic(dtype):
    """Same seed, same data: the same history and weights, in a fresh program."""
    case = CASES[FIT_CASES[0]]
    train = sample(case.loss, 17, dtype, seed=40)
    runs = []
    for _ in range(2):
        net = build(case, dtype, "compiled")
        h = net.fit(train, epochs=2, batch_size=4, seed=7, progress=False)
        runs.append((h.loss, net.params))
    assert runs[0][0] == runs[1][0]
    for k in runs[0][1]:
        np.testing.assert_array_equal(runs[0][1][k], runs[1][1][k])
    # ... and equal to stepping by hand through the same permutation.
    net = build(case, dtype, "compiled")
    for epoch in range(2):
        perm = epoch_order(7, epoch, 17)
        for s in range(0, 17, 4):
            idx = perm[s:s + 4]
            net.step({k: v[idx] for k, v in train.items()})
    for k, v in net.params.items():
        assert_close(v, runs[0][1][k], dtype, k)
