"""Feed validation of the compiled backend (rules in ``graphc/runtime/feeds.py``).

Every rule raises :class:`graphc.FeedError` naming the feed and what was
expected and found; arrays that are merely laid out or typed differently
(Fortran order, strided views, float64 into a float32 program, int32 labels)
give exactly the result of the canonical array.  Labels are checked twice:
by the general validation (``run``/``evaluate``/``fit``, and ``step`` when the
feeds are not already in kernel form) and, on the fast path of ``step``, by
the generated code itself before any kernel runs.
"""

from __future__ import annotations

import re
import types

import numpy as np
import pytest

import graphc as gc
from graphc.runtime import compiled as compiled_mod

N_IN, N_CLASSES = 3, 4


def mlp(dtype="float64", backend="compiled"):
    x = gc.input("x", (None, N_IN))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 5, activation="tanh", name="fc1")
    logits = gc.dense(h, N_CLASSES, name="fc2")
    loss = gc.softmax_cross_entropy(logits, y)
    return gc.compile(loss=loss, outputs={"logits": logits}, optimizer=gc.optim.SGD(lr=0.1),
                      dtype=dtype, seed=0, backend=backend)


@pytest.fixture(scope="module")
def nets():
    """The float64 program and its initial parameters."""
    n = mlp()
    return n, n.params


@pytest.fixture
def net(nets):
    """The float64 program with its initial parameters (plain SGD keeps no other state)."""
    n, init = nets
    n.set_params(init)
    return n


@pytest.fixture(scope="module")
def net32():
    return mlp("float32")


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.standard_normal((6, N_IN)), np.array([0, 1, 2, 3, 0, 1])


def same_params(a, b):
    return all(np.array_equal(a[k], b[k]) for k in a)


# --- each rule names the feed, what was expected and what was found ----------------------

def test_missing_feed(net, data):
    X, _ = data
    with pytest.raises(gc.FeedError, match=r"missing feed 'y' \(shape \(N,\)\)"):
        net.step({"x": X})
    with pytest.raises(gc.FeedError, match=r"missing feed 'x' \(shape \(N, 3\)\)"):
        net.run({})


def test_unknown_feed(net, data):
    X, Y = data
    with pytest.raises(gc.FeedError, match=r"unknown feed 'z'; this program takes x, y"):
        net.step({"x": X, "y": Y, "z": X})
    with pytest.raises(gc.FeedError, match=r"unknown feed 'z'"):
        net.run({"x": X, "z": X})


def test_wrong_ndim(net, data):
    X, Y = data
    with pytest.raises(gc.FeedError, match=r"feed 'x': expected 2-D array of shape \(N, 3\), "
                                           r"got 3-D \(1, 6, 3\)"):
        net.step({"x": X[None], "y": Y})
    with pytest.raises(gc.FeedError, match=r"feed 'y': expected 1-D .* \(N,\), got 2-D \(6, 1\)"):
        net.step({"x": X, "y": Y[:, None]})
    with pytest.raises(gc.FeedError, match=r"feed 'x': expected 2-D .* got 1-D \(3,\)"):
        net.run({"x": X[0]})


def test_wrong_feature_dim(net, data):
    X, Y = data
    with pytest.raises(gc.FeedError, match=r"feed 'x': expected shape \(N, 3\), got \(6, 2\) "
                                           r"\(axis 1: 2 != 3\)"):
        net.step({"x": X[:, :2], "y": Y})
    with pytest.raises(gc.FeedError, match=r"feed 'x'.*\(6, 4\) \(axis 1: 4 != 3\)"):
        net.run({"x": np.zeros((6, 4))})


def test_differing_batch_sizes(net, data):
    X, Y = data
    with pytest.raises(gc.FeedError, match=r"feed 'y' has batch size 4 but feed 'x' has 6"):
        net.step({"x": X, "y": Y[:4]})
    with pytest.raises(gc.FeedError, match=r"feed 'x' has batch size 6 but feed 'y' has 2"):
        net.evaluate({"y": Y[:2], "x": X})


@pytest.mark.parametrize("kind", ["object", "str", "complex", "bool", "datetime64[s]"])
def test_non_numeric_features_refused(net, data, kind):
    X, Y = data
    bad = (X > 0) if kind == "bool" else X.astype(kind) if kind != "datetime64[s]" else \
        np.zeros(X.shape, dtype=kind)
    with pytest.raises(gc.FeedError, match=r"feed 'x': expected a numeric array, got dtype "
                                           + re.escape(str(bad.dtype))):
        net.step({"x": bad, "y": Y})
    with pytest.raises(gc.FeedError, match=r"feed 'x'"):
        net.run({"x": bad})


@pytest.mark.parametrize("kind", ["object", "str", "complex", "bool"])
def test_non_numeric_labels_refused(net, data, kind):
    X, Y = data
    bad = (Y > 0) if kind == "bool" else Y.astype(kind)
    with pytest.raises(gc.FeedError, match=r"feed 'y': expected a numeric array, got dtype "
                                           + re.escape(str(bad.dtype))):
        net.step({"x": X, "y": bad})


def test_float_labels_refused(net, data):
    X, Y = data
    for dt in (np.float64, np.float32):
        with pytest.raises(gc.FeedError, match=rf"feed 'y': expected integer labels \(int64\), "
                                               rf"got {np.dtype(dt)}"):
            net.step({"x": X, "y": Y.astype(dt)})
        with pytest.raises(gc.FeedError, match=r"feed 'y': expected integer labels"):
            net.evaluate({"x": X, "y": Y.astype(dt)})


def test_ragged_and_non_dict_feeds(net, data):
    X, Y = data
    with pytest.raises(gc.FeedError, match=r"feed 'x': cannot be read as an array"):
        net.run({"x": [[1.0, 2.0, 3.0], [1.0]]})
    with pytest.raises(gc.FeedError, match=r"feeds must be a dict of name -> array, got list"):
        net.step([X, Y])


# --- labels out of range -----------------------------------------------------------------

@pytest.mark.parametrize("bad", [N_CLASSES, -1, 2**40, -(2**40)])
def test_label_out_of_range_on_the_fast_path(net, data, bad):
    """Well-formed feeds take the fast path; the generated code checks the labels."""
    X, Y = data
    Y = Y.copy()
    Y[3] = bad
    assert net._impl.fast_step is not None  # well-formed feeds go straight to native code
    before, steps = net.params, net.step_count
    with pytest.raises(gc.FeedError, match=rf"feed 'y': label {bad} out of range \[0, 4\)"):
        net.step({"x": X, "y": Y})
    assert same_params(net.params, before), "a step with a bad label changed the parameters"
    assert net.step_count == steps, "a refused step was counted"
    # The status word is cleared: the next good step runs normally.
    loss = net.step({"x": X, "y": data[1]})
    assert np.isfinite(loss) and net.step_count == steps + 1


def test_a_refused_step_does_not_count(data):
    """Adam's bias correction follows the step count: a step refused for its labels must
    leave the count alone on the fast path (int64 labels, checked by the generated code)
    exactly as on the general path (int32 labels, checked before the call)."""
    X, Y = data
    bad = Y.copy()
    bad[2] = N_CLASSES
    results = []
    for labels in (None, bad, bad.astype(np.int32)):
        x = gc.input("x", (None, N_IN))
        y = gc.input("y", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(gc.dense(x, N_CLASSES, name="fc"), y)
        net = gc.compile(loss=loss, optimizer=gc.optim.Adam(lr=0.1), dtype="float64")
        if labels is not None:
            with pytest.raises(gc.FeedError, match="label 4 out of range"):
                net.step({"x": X, "y": labels})
        assert net.step_count == 0
        net.step({"x": X, "y": Y})
        results.append(net.params)
    for other in results[1:]:
        assert same_params(results[0], other)


def test_generated_label_check_runs_before_any_kernel(net, data):
    """Call the generated train_step directly: NaN, status -1, parameters untouched."""
    X, _ = data
    e = net._impl.entries["train_step"]
    net.step({"x": X, "y": data[1]})  # allocate the workspace for this batch size
    ws = e.workspaces[len(X)]
    status = e.layout.offsets(len(X))[e.layout.slot_of["status"]]
    arena0 = net.arena.data.copy()
    for bad in (N_CLASSES, -1):
        Y = np.full(len(X), 1, dtype=np.int64)
        Y[-1] = bad
        args = [{"x": X, "y": Y}[f] for f in e.feeds]
        out = e.fn(net.arena.data, ws, len(X), 0.1, 99, *args)
        assert np.isnan(out)
        assert ws[status] == -1
        ws[status] = 0
        np.testing.assert_array_equal(net.arena.data, arena0)
    # The evaluate entry has the same check.
    ev = net._impl.entries["evaluate"]
    net.evaluate({"x": X, "y": data[1]})
    ws = ev.workspaces[len(X)]
    Y = np.full(len(X), N_CLASSES, dtype=np.int64)
    out = ev.fn(net.arena.data, ws, len(X), 0.0, 0, *[{"x": X, "y": Y}[f] for f in ev.feeds])
    assert np.isnan(out) and ws[ev.layout.offsets(len(X))[ev.layout.slot_of["status"]]] == -1
    ws[ev.layout.offsets(len(X))[ev.layout.slot_of["status"]]] = 0


@pytest.mark.parametrize("feeds, msg", [
    (lambda X, Y: {"x": X[:, :2].copy(), "y": Y}, r"feed 'x'.*3"),
    (lambda X, Y: {"x": X, "y": Y[:-1].copy()}, r"batch size"),
    (lambda X, Y: {"x": X, "y": np.append(Y, 0)}, r"batch size"),
])
def test_wrong_shapes_on_the_fast_path(net, data, feeds, msg):
    """Feeds of the right type, dtype, ndim and order take the fast path, which leaves
    every shape to the generated code: it refuses before any kernel runs (status -2),
    and the general validation names what was wrong."""
    X, Y = data
    net.step({"x": X, "y": Y})  # the workspace for this batch size exists: fast path
    before, steps = net.params, net.step_count
    calls = []
    e = net._impl.entries["train_step"]
    fn = e.fn
    e.fn = lambda *a: calls.append(a[2]) or fn(*a)
    try:
        with pytest.raises(gc.FeedError, match=msg):
            net.step(feeds(X, Y))
    finally:
        e.fn = fn
    assert calls, "the fast path did not reach the generated code"
    assert same_params(net.params, before) and net.step_count == steps
    assert np.isfinite(net.step({"x": X, "y": Y}))  # the status word was cleared


def test_generated_shape_check_runs_before_any_kernel(net, data):
    """Call the generated train_step directly with a feed of the wrong width."""
    X, Y = data
    e = net._impl.entries["train_step"]
    net.step({"x": X, "y": Y})
    ws = e.workspaces[len(X)]
    status = e.layout.offsets(len(X))[e.layout.slot_of["status"]]
    arena0 = net.arena.data.copy()
    feeds = {"x": np.ascontiguousarray(X[:, :2]), "y": Y}
    out = e.fn(net.arena.data, ws, len(X), 0.1, 99, *[feeds[f] for f in e.feeds])
    assert np.isnan(out) and ws[status] == -2
    ws[status] = 0
    np.testing.assert_array_equal(net.arena.data, arena0)


@pytest.mark.parametrize("bad", [N_CLASSES, -1])
def test_label_out_of_range_validated(net, data, bad):
    """Off the fast path (int32 labels, evaluate, fit, a function of the loss) it is
    the general validation that refuses, before any native call."""
    X, Y = data
    Y = Y.copy()
    Y[0] = bad
    msg = rf"feed 'y': label {bad} out of range \[0, 4\)"
    before = net.params
    with pytest.raises(gc.FeedError, match=msg):
        net.step({"x": X, "y": Y.astype(np.int32)})
    with pytest.raises(gc.FeedError, match=msg):
        net.evaluate({"x": X, "y": Y})
    with pytest.raises(gc.FeedError, match=msg):
        net.fit({"x": X, "y": Y}, epochs=1, batch_size=4, progress=False)
    with pytest.raises(gc.FeedError, match=msg):
        net.fit({"x": X, "y": data[1]}, validation={"x": X, "y": Y}, epochs=1,
                progress=False)
    assert same_params(net.params, before)


def test_label_out_of_range_in_a_function(data):
    x = gc.input("x", (None, N_IN))
    y = gc.input("y", (None,), dtype="int64")
    loss = gc.softmax_cross_entropy(gc.dense(x, N_CLASSES, name="fc"), y)
    f = gc.function([x, y], [loss], dtype="float64")
    X, Y = data
    assert np.isfinite(f(X, Y)[0])
    with pytest.raises(gc.FeedError, match=r"feed 'y': label 4 out of range \[0, 4\)"):
        f(X, np.full(len(X), 4))
    with pytest.raises(gc.FeedError, match=r"takes 2 arrays \(x, y\), got 1"):
        f(X)


def test_other_integer_labels_are_accepted(net, data):
    X, Y = data
    init = net.params
    want = net.step({"x": X, "y": Y})
    after = net.params
    for dt in (np.int32, np.uint8, np.int16, np.uint64):
        net.set_params(init)
        assert net.step({"x": X, "y": Y.astype(dt)}) == want
        assert same_params(net.params, after)


# --- layout and dtype: same result as the canonical array ------------------------------------

def _layouts(X, Y):
    """(name, x, y) with the same values as X, Y in other memory layouts."""
    Xf = np.asfortranarray(X)
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3))
    wide[::2, ::3] = X
    ylong = np.zeros(Y.shape[0] * 3, dtype=np.int64)
    ylong[::3] = Y
    Xrev = np.ascontiguousarray(X[::-1])[::-1]
    return [("fortran", Xf, Y), ("strided", wide[::2, ::3], ylong[::3]),
            ("reversed", Xrev, Y[::-1].copy()[::-1]), ("transposed", np.ascontiguousarray(X.T).T, Y)]


@pytest.mark.parametrize("layout", ["fortran", "strided", "reversed", "transposed"])
def test_non_contiguous_feeds_give_the_contiguous_result(net, data, layout):
    X, Y = data
    _, x, y = next(t for t in _layouts(X, Y) if t[0] == layout)
    assert not (x.flags.c_contiguous and y.flags.c_contiguous)
    np.testing.assert_array_equal(x, X)
    init = net.params
    want_run = net.run({"x": X})["logits"]
    want_loss = [net.step({"x": X, "y": Y}) for _ in range(2)]
    want_params = net.params
    want_eval = net.evaluate({"x": X, "y": Y})
    net.set_params(init)
    np.testing.assert_array_equal(net.run({"x": x})["logits"], want_run)
    assert [net.step({"x": x, "y": y}) for _ in range(2)] == want_loss
    assert same_params(net.params, want_params)
    assert net.evaluate({"x": x, "y": y}) == want_eval
    np.testing.assert_array_equal(net.predict(x), net.predict(X))


def test_float64_into_float32_program_is_cast(net32, data):
    X, Y = data
    init = net32.params
    X32 = X.astype(np.float32)
    want_run = net32.run({"x": X32})["logits"]
    assert want_run.dtype == np.float32
    want = [net32.step({"x": X32, "y": Y}) for _ in range(2)]
    want_params = net32.params
    for x in (X, np.asfortranarray(X), X[::-1][::-1]):
        net32.set_params(init)
        got_run = net32.run({"x": x})["logits"]
        assert got_run.dtype == np.float32
        np.testing.assert_array_equal(got_run, want_run)
        assert [net32.step({"x": x, "y": Y}) for _ in range(2)] == want
        assert same_params(net32.params, want_params)
    # Integer features are cast like floats.
    Xi = np.arange(18).reshape(6, 3) % 5 - 2
    net32.set_params(init)
    np.testing.assert_array_equal(net32.run({"x": Xi})["logits"],
                                  net32.run({"x": Xi.astype(np.float32)})["logits"])


def test_float32_into_float64_program_is_cast(net, data):
    X, Y = data
    X32 = X.astype(np.float32)
    np.testing.assert_array_equal(net.run({"x": X32})["logits"],
                                  net.run({"x": X32.astype(np.float64)})["logits"])


# --- batch 0 -----------------------------------------------------------------------------

def test_batch_zero(net, data):
    """run: empty outputs.  step: NaN (the mean of nothing, as PyTorch's mean reduction
    gives) and the update of a zero data gradient -- for plain SGD, none."""
    X, Y = data
    out = net.run({"x": X[:0]})
    assert out["logits"].shape == (0, N_CLASSES) and out["logits"].dtype == np.float64
    assert net.predict(X[:0]).shape == (0, N_CLASSES)
    before = net.params
    loss = net.step({"x": X[:0], "y": Y[:0]})
    assert np.isnan(loss)
    assert same_params(net.params, before)
    ev = net.evaluate({"x": X[:0], "y": Y[:0]})
    assert list(ev) == ["loss"] and np.isnan(ev["loss"])
    # ... and the program is still fine afterwards.
    assert np.isfinite(net.step({"x": X, "y": Y}))


def test_batch_zero_matches_reference_with_momentum(data):
    """With state (momentum) an empty batch still moves the weights, as in PyTorch:
    both backends agree exactly on how."""
    X, Y = data
    nets = []
    for backend in ("compiled", "reference"):
        x = gc.input("x", (None, N_IN))
        y = gc.input("y", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(gc.dense(x, N_CLASSES, name="fc"), y)
        nets.append(gc.compile(loss=loss, optimizer=gc.optim.SGD(lr=0.1, momentum=0.9),
                               dtype="float64", backend=backend))
    for n in nets:
        n.step({"x": X, "y": Y})
        after_one = n.params
        assert np.isnan(n.step({"x": X[:0], "y": Y[:0]}))
        assert not same_params(n.params, after_one)  # the momentum buffer moved them
    a, b = (n.params for n in nets)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-12)


# --- a batch too large to allocate ----------------------------------------------------------

@pytest.fixture(scope="module")
def featureless():
    """A program whose only feed has 0 features: a huge batch of it takes no memory."""
    x = gc.input("x", (None, 0))
    out = gc.dense(x, 4, activation="tanh", name="fc")
    return gc.compile(loss=gc.mean(out), outputs={"out": out}, optimizer=gc.optim.SGD(lr=0.1),
                      dtype="float64")


def _spy_native_calls(net, monkeypatch):
    calls = []
    for e in net._impl.entries.values():
        fn = e.fn

        def spy(*args, _fn=fn):
            calls.append(args[2])
            return _fn(*args)

        monkeypatch.setattr(e, "fn", spy)
    return calls


def test_huge_batch_refused_before_any_native_call(featureless, monkeypatch):
    net = featureless
    assert net.run({"x": np.zeros((3, 0))})["out"].shape == (3, 4)
    calls = _spy_native_calls(net, monkeypatch)
    huge = np.zeros((2**45, 0))
    with pytest.raises(gc.FeedError, match=r"batch size 35184372088832: the forward workspace "
                                           r"needs [\d,.]+ GiB, more than this machine's"):
        net.run({"x": huge})
    assert calls == []
    assert 2**45 not in net._impl.entries["forward"].workspaces
    # A training step is refused the same way, and is not counted as a step.
    assert np.isfinite(net.step({"x": np.zeros((3, 0))})) and net.step_count == 1
    with pytest.raises(gc.FeedError, match=r"batch size 35184372088832: the train_step "
                                           r"workspace needs"):
        net.step({"x": huge})
    assert net.step_count == 1
    assert calls == [3]


def test_workspace_allocation_failure_is_a_feed_error(featureless, monkeypatch):
    """Where the size check passes but the allocation fails (MemoryError), also FeedError."""
    net = featureless
    calls = _spy_native_calls(net, monkeypatch)

    def empty(shape, dtype=float):
        if np.prod(shape) > 10**6:
            raise MemoryError(f"Unable to allocate array with shape {shape}")
        return np.empty(shape, dtype)

    monkeypatch.setattr(compiled_mod, "check_allocation", lambda nbytes, what: None)
    fake_np = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    fake_np.empty = empty
    monkeypatch.setattr(compiled_mod, "np", fake_np)
    with pytest.raises(gc.FeedError, match=r"batch size 1000000: the forward workspace "
                                           r"\([\d.]+ GiB\) cannot be allocated"):
        net.run({"x": np.zeros((10**6, 0))})
    assert calls == []


def test_huge_non_contiguous_feed_refused_without_copying(net):
    """A broadcast view costs nothing, its C-ordered copy would: refused, naming the feed."""
    big = np.broadcast_to(np.zeros((1, N_IN)), (2**42, N_IN))
    with pytest.raises(gc.FeedError, match=r"feed 'x': the C-ordered float64 copy of its "
                                           r"\(4398046511104, 3\) array needs [\d,.]+ GiB"):
        net.run({"x": big})
