"""Reverse-mode autodiff through the public API: paths, broadcasting, tied weights, errors,
and training steps against PyTorch / NumPy with identical initial parameters."""

from __future__ import annotations

import numpy as np
import pytest
from gradcheck import assert_matches_finite_differences

import graphc as gc
from graphc.ir.graph import Graph

OPTS = dict(backend="reference", dtype="float64")
try:
    import torch
except ImportError:  # the PyTorch comparisons are skipped, nothing else
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


@pytest.fixture
def rng():
    return np.random.default_rng(20240601)


def _run(inputs, outputs, *arrays, params=None):
    f = gc.function(inputs, outputs, **OPTS)
    if params:
        f.set_params(params)
    return f(*arrays)


def _t(a, grad=True):
    return torch.tensor(a, dtype=torch.float64, requires_grad=grad)


# --- several paths ------------------------------------------------------------------------

def test_value_used_twice_sums_both_paths(rng):
    x = gc.input("x", (None, 3))
    r = gc.input("r", (None, 3))
    xv, rv = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    for build, expect in [
        (lambda: x * x, 2 * xv * rv),
        (lambda: x + x, 2 * rv),
        (lambda: x - x, 0 * rv),
        (lambda: gc.tanh(x) * x, ((1 - np.tanh(xv) ** 2) * xv + np.tanh(xv)) * rv),
        (lambda: x * x * x, 3 * xv ** 2 * rv),
    ]:
        dx, = gc.grad(gc.sum(build() * r), [x])
        got, = _run([x, r], [dx], xv, rv)
        np.testing.assert_allclose(got, expect, rtol=1e-13, atol=1e-15)


@needs_torch
def test_hidden_layer_feeding_two_heads(rng):
    """The hidden layer's cotangent is the sum of both heads' (checked against PyTorch)."""
    x = gc.input("x", (None, 3))
    y = gc.input("y", (None,), dtype="int64")
    t = gc.input("t", (None, 2))
    h = gc.dense(x, 5, activation="tanh", name="h")
    cls = gc.dense(h, 4, name="cls")
    reg = gc.dense(h, 2, activation="sigmoid", name="reg")
    loss = gc.softmax_cross_entropy(cls, y) + 0.5 * gc.mse(reg, t)
    names = ["h/W", "h/b", "cls/W", "cls/b", "reg/W", "reg/b"]
    shapes = {"h/W": (3, 5), "h/b": (5,), "cls/W": (5, 4), "cls/b": (4,), "reg/W": (5, 2),
              "reg/b": (2,)}
    params = {n: rng.standard_normal(s) for n, s in shapes.items()}
    xv, yv, tv = rng.standard_normal((6, 3)), rng.integers(0, 4, 6), rng.random((6, 2))
    tensors = {n: p for n, p in _params_of(loss).items()}
    assert sorted(tensors) == sorted(names)
    grads = gc.grad(loss, [x, *(tensors[n] for n in names)])
    got = _run([x, y, t], [loss, *grads], xv, yv, tv, params=params)

    P = {n: _t(v) for n, v in params.items()}
    X = _t(xv)
    H = torch.tanh(X @ P["h/W"] + P["h/b"])
    L = (torch.nn.functional.cross_entropy(H @ P["cls/W"] + P["cls/b"], torch.from_numpy(yv))
         + 0.5 * torch.nn.functional.mse_loss(torch.sigmoid(H @ P["reg/W"] + P["reg/b"]),
                                              torch.from_numpy(tv)))
    L.backward()
    np.testing.assert_allclose(got[0], L.item(), rtol=1e-13)
    for g, ref in zip(got[1:], [X.grad, *(P[n].grad for n in names)], strict=True):
        np.testing.assert_allclose(g, ref.numpy(), rtol=1e-10, atol=1e-13)


def _params_of(t):
    from op_specs import find_parameters

    return find_parameters(t)


def test_gradient_wrt_intermediate_tensor(rng):
    x = gc.input("x", (None, 3))
    h = gc.relu(x)
    loss = gc.sum(h * h)
    dh, dx = gc.grad(loss, [h, x])
    xv = rng.standard_normal((4, 3))
    gh, gx = _run([x], [dh, dx], xv)
    np.testing.assert_allclose(gh, 2 * np.maximum(xv, 0), rtol=1e-14)
    np.testing.assert_allclose(gx, 2 * np.maximum(xv, 0), rtol=1e-14)


# --- broadcasting -------------------------------------------------------------------------

def test_bias_gradient_is_summed_over_the_batch(rng):
    x = gc.input("x", (None, 3))
    r = gc.input("r", (None, 2))
    W = gc.parameter("W", (3, 2))
    b = gc.parameter("b", (2,))
    s = gc.parameter("s", ())
    out = (x @ W + b) * s
    dx, dW, db, ds = gc.grad(gc.sum(out * r), [x, W, b, s])
    assert (dx.shape, dW.shape, db.shape, ds.shape) == ((None, 3), (3, 2), (2,), ())
    xv, rv = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
    pv = {"W": rng.standard_normal((3, 2)), "b": rng.standard_normal(2), "s": np.array(1.7)}
    gx, gW, gb, gs = _run([x, r], [dx, dW, db, ds], xv, rv, params=pv)
    np.testing.assert_allclose(gb, 1.7 * rv.sum(axis=0), rtol=1e-14)
    np.testing.assert_allclose(gW, 1.7 * xv.T @ rv, rtol=1e-13)
    np.testing.assert_allclose(gx, 1.7 * rv @ pv["W"].T, rtol=1e-13)
    np.testing.assert_allclose(gs, np.sum((xv @ pv["W"] + pv["b"]) * rv), rtol=1e-13)


@pytest.mark.parametrize("batch", [1, 7])
def test_scalar_broadcast_on_both_sides(rng, batch):
    x = gc.input("x", (None, 3))
    s = gc.parameter("s", ())
    out = gc.sum(s * x) + gc.sum(x * s) + gc.sum(s - x) + gc.sum(x - s)
    ds, dx = gc.grad(out, [s, x])
    xv = rng.standard_normal((batch, 3))
    gs, gx = _run([x], [ds, dx], xv, params={"s": np.array(0.3)})
    np.testing.assert_allclose(gs, 2 * xv.sum(), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(gx, np.full_like(xv, 2 * 0.3), rtol=1e-14)


# --- tied weights -------------------------------------------------------------------------

@needs_torch
def test_tied_weights_gradients_add_up(rng):
    """One parameter used twice (an autoencoder with W and W.T): both uses contribute."""
    x = gc.input("x", (None, 4))
    W = gc.parameter("W", (4, 2))
    code = gc.tanh(x @ W)
    recon = code @ gc.transpose(W)
    loss = gc.mse(recon, x)
    graph, _ = Graph.from_values({"loss": loss})
    assert len(graph.by_name("parameter")) == 1 and len(graph.find("parameter")) == 1
    dW, = gc.grad(loss, [W])
    xv, wv = rng.standard_normal((5, 4)), rng.standard_normal((4, 2))
    got, = _run([x], [dW], xv, params={"W": wv})

    Wt, X = _t(wv), _t(xv, grad=False)
    torch.nn.functional.mse_loss(torch.tanh(X @ Wt) @ Wt.T, X).backward()
    np.testing.assert_allclose(got, Wt.grad.numpy(), rtol=1e-10, atol=1e-14)
    # and each use alone gives only part of it
    enc, = gc.grad(gc.mse(gc.tanh(x @ W) @ gc.parameter("V", (2, 4)), x), [W])
    part, = _run([x], [enc], xv, params={"W": wv, "V": wv.T})
    assert not np.allclose(part, got)


def test_same_parameter_in_two_heads(rng):
    x = gc.input("x", (None, 3))
    W = gc.parameter("W", (3, 3))
    loss = gc.sum(x @ W) + gc.sum(gc.relu(x) @ W)
    dW, = gc.grad(loss, [W])
    xv = rng.standard_normal((4, 3))
    got, = _run([x], [dW], xv, params={"W": np.eye(3)})
    np.testing.assert_allclose(got, (xv.sum(0) + np.maximum(xv, 0).sum(0))[:, None]
                               * np.ones((1, 3)), rtol=1e-14)


# --- zeros and errors ---------------------------------------------------------------------

def test_gradient_of_something_the_loss_ignores_is_zero(rng):
    x = gc.input("x", (None, 3))
    z = gc.input("z", (None, 2))
    W = gc.parameter("W", (3, 2))
    U = gc.parameter("U", (5, 5))
    loss = gc.sum(x @ W)
    dz, dU, dW = gc.grad(loss, [z, U, W])
    assert dz.shape == (None, 2) and dU.shape == (5, 5)
    xv, zv = rng.standard_normal((4, 3)), rng.standard_normal((4, 2))
    gz, gU, gW = _run([x, z], [dz, dU, dW], xv, zv, params={"W": np.ones((3, 2))})
    assert gz.shape == (4, 2) and gU.shape == (5, 5)
    assert not gz.any() and not gU.any()
    np.testing.assert_allclose(gW, np.repeat(xv.sum(0)[:, None], 2, axis=1), rtol=1e-14)


def test_grad_of_a_non_scalar_raises():
    x = gc.input("x", (None, 3))
    with pytest.raises(gc.GradError, match=r"scalar.*\(N, 3\).*gc\.sum"):
        gc.grad(gc.relu(x), [x])
    with pytest.raises(gc.GradError, match="scalar"):
        gc.grad(gc.sum(x, axis=0), [x])


def test_grad_wrt_or_of_a_non_tensor_raises():
    x = gc.input("x", (None, 3))
    loss = gc.sum(x)
    for bad in (3.0, np.ones(3), "x", None):
        with pytest.raises(gc.GradError, match="not a graphc tensor"):
            gc.grad(loss, [bad])
    with pytest.raises(gc.GradError, match="list"):
        gc.grad(loss, x)
    with pytest.raises(gc.GradError, match="target"):
        gc.grad(1.0, [x])
    y = gc.input("y", (None,), dtype="int64")
    with pytest.raises(gc.GradError, match="integer"):
        gc.grad(gc.sum(y), [x])
    # labels have no gradient (PyTorch and JAX refuse too), rather than a float zeros
    with pytest.raises(gc.GradError, match=r"int64 tensor input 'y' \(N,\)"):
        gc.grad(gc.softmax_cross_entropy(gc.input("z", (None, 3)), y), [y])


def test_second_derivatives_raise_a_grad_error_for_activations():
    x = gc.input("x", (None, 3))
    dx, = gc.grad(gc.sum(gc.relu(x)), [x])
    with pytest.raises(gc.GradError, match="second derivatives"):
        gc.grad(gc.sum(dx), [x])


def test_second_derivative_of_a_polynomial(rng):
    """Gradients are ordinary tensors: differentiate again through mul/sum/expand."""
    x = gc.input("x", (None, 3))
    dx, = gc.grad(gc.sum(x * x * x), [x])
    d2, = gc.grad(gc.mean(dx * x), [x])  # mean(3 x^3) -> 9 x^2 / n
    xv = rng.standard_normal((2, 3))
    g1, g2 = _run([x], [dx, d2], xv)
    np.testing.assert_allclose(g1, 3 * xv ** 2, rtol=1e-14)
    np.testing.assert_allclose(g2, 9 * xv ** 2 / xv.size, rtol=1e-14)


def test_gradients_compose_into_an_update_expression(rng):
    """Theano style: one hand-written SGD step as a graph."""
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 1))
    W = gc.parameter("W", (3, 1))
    loss = gc.mse(x @ W, t)
    dW, = gc.grad(loss, [W])
    new_W = W - 0.1 * dW
    xv, tv, wv = rng.standard_normal((8, 3)), rng.standard_normal((8, 1)), rng.standard_normal((3, 1))
    got, = _run([x, t], [new_W], xv, tv, params={"W": wv})
    np.testing.assert_allclose(got, wv - 0.1 * 2 * xv.T @ (xv @ wv - tv) / 8, rtol=1e-13)


# --- training steps against PyTorch and NumPy -----------------------------------------

def _mlp(act="relu"):
    x = gc.input("x", (None, 5))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 8, activation=act, name="fc1")
    logits = gc.dense(h, 3, name="fc2")
    return x, y, logits, gc.softmax_cross_entropy(logits, y)


class TorchMLP:
    """The same MLP in PyTorch, initialised from graphc's parameters (by graphc name)."""

    def __init__(self, params, act):
        F = torch.nn.functional
        self.p = {n: torch.nn.Parameter(torch.from_numpy(v.T.copy() if n.endswith("/W") else v.copy()))
                  for n, v in params.items()}  # torch stores weights as (out, in)
        alpha = self.p.get("fc1/alpha")
        self.act = {"relu": torch.relu, "tanh": torch.tanh, "elu": F.elu,
                    "prelu": lambda z: F.prelu(z, alpha)}[act]
        self.decayed = [v for n, v in self.p.items() if n.endswith("/W")]
        self.not_decayed = [v for n, v in self.p.items() if not n.endswith("/W")]

    def __call__(self, X):
        F, p = torch.nn.functional, self.p
        return F.linear(self.act(F.linear(X, p["fc1/W"], p["fc1/b"])), p["fc2/W"], p["fc2/b"])

    def groups(self, wd):
        """Weight decay on weight matrices only, as graphc's weight_decay."""
        return [{"params": self.decayed, "weight_decay": wd},
                {"params": self.not_decayed, "weight_decay": 0.0}]

    def assert_matches(self, net, what):
        for n, v in net.params.items():
            ref = self.p[n].detach().numpy()
            np.testing.assert_allclose(v, ref.T if n.endswith("/W") else ref, rtol=1e-10,
                                       atol=1e-13, err_msg=f"{n} {what}")


OPTIMIZERS = [
    ("sgd", dict(lr=0.1), 0.0, None),
    ("sgd_momentum_wd", dict(lr=0.1, momentum=0.9), 1e-2, None),
    ("sgd_nesterov", dict(lr=0.05, momentum=0.8, nesterov=True), 0.0, None),
    ("sgd_dampening", dict(lr=0.05, momentum=0.5, dampening=0.3), 1e-3, None),
    ("sgd_clip_norm", dict(lr=0.5, momentum=0.5), 1e-2, 0.3),
]


@needs_torch
@pytest.mark.parametrize("act", ["relu", "tanh", "prelu", "elu"])
@pytest.mark.parametrize("opt_id, kw, wd, clip", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_sgd_training_matches_pytorch(rng, opt_id, kw, wd, clip, act):
    x, y, logits, loss = _mlp(act)
    net = gc.compile(loss=loss, outputs={"logits": logits}, optimizer=gc.optim.SGD(**kw),
                     weight_decay=wd, clip_norm=clip, seed=3, **OPTS)
    init = {n: rng.standard_normal(v.shape) * 0.5 for n, v in net.params.items()}
    net.set_params(init)
    model = TorchMLP(init, act)
    opt = torch.optim.SGD(model.groups(wd), **kw)
    for step in range(5):
        xb, yb = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
        got = net.step({"x": xb, "y": yb})
        opt.zero_grad()
        ref = torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(yb))
        ref.backward()
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(list(model.p.values()), clip)
            assert norm > clip  # the clipping is exercised
        opt.step()
        np.testing.assert_allclose(got, ref.item(), rtol=1e-10, err_msg=f"loss at step {step}")
        model.assert_matches(net, f"after step {step}")
    out = net.run({"x": xb})["logits"]
    np.testing.assert_allclose(out, model(torch.from_numpy(xb)).detach().numpy(), rtol=1e-10,
                               atol=1e-13)


def test_sgd_regression_matches_numpy(rng):
    """A hand-written NumPy MLP (tanh hidden layer, mse loss), plain SGD."""
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 2))
    h = gc.dense(x, 4, activation="tanh", name="l1")
    out = gc.dense(h, 2, name="l2")
    lr = 0.05
    net = gc.compile(loss=gc.mse(out, t), optimizer=gc.optim.SGD(lr=lr), seed=0, **OPTS)
    P = {"l1/W": rng.standard_normal((3, 4)), "l1/b": rng.standard_normal(4),
         "l2/W": rng.standard_normal((4, 2)), "l2/b": rng.standard_normal(2)}
    net.set_params(P)
    for _ in range(4):
        xb, tb = rng.standard_normal((5, 3)), rng.standard_normal((5, 2))
        got = net.step({"x": xb, "t": tb})
        a = np.tanh(xb @ P["l1/W"] + P["l1/b"])
        o = a @ P["l2/W"] + P["l2/b"]
        np.testing.assert_allclose(got, np.mean((o - tb) ** 2), rtol=1e-12)
        do = 2 * (o - tb) / o.size
        dz = (do @ P["l2/W"].T) * (1 - a ** 2)
        grads = {"l2/W": a.T @ do, "l2/b": do.sum(0), "l1/W": xb.T @ dz, "l1/b": dz.sum(0)}
        P = {n: P[n] - lr * grads[n] for n in P}
        for n, v in net.params.items():
            np.testing.assert_allclose(v, P[n], rtol=1e-10, atol=1e-14, err_msg=n)


@needs_torch
@pytest.mark.parametrize("opt_id", ["adam", "adam_l2", "adamw", "rmsprop",
                                    "rmsprop_centered_momentum"])
def test_adaptive_optimizers_match_pytorch(rng, opt_id):
    x, y, logits, loss = _mlp("tanh")
    opt, wd = {"adam": (gc.optim.Adam(lr=0.01, betas=(0.8, 0.99)), 0.0),
               "adam_l2": (gc.optim.Adam(lr=0.01, eps=1e-6), 0.05),
               "adamw": (gc.optim.AdamW(lr=0.01, weight_decay=0.1), 0.0),
               "rmsprop": (gc.optim.RMSprop(lr=0.01, alpha=0.9), 0.0),
               "rmsprop_centered_momentum": (gc.optim.RMSprop(lr=0.01, momentum=0.5,
                                                              centered=True), 0.0),
               }[opt_id]
    net = gc.compile(loss=loss, optimizer=opt, weight_decay=wd, seed=1, **OPTS)
    init = {n: rng.standard_normal(v.shape) * 0.5 for n, v in net.params.items()}
    net.set_params(init)
    model = TorchMLP(init, "tanh")
    params = list(model.p.values())
    if opt_id == "adam":
        topt = torch.optim.Adam(params, lr=0.01, betas=(0.8, 0.99))
    elif opt_id == "adam_l2":
        topt = torch.optim.Adam(model.groups(0.05), lr=0.01, eps=1e-6)
    elif opt_id == "adamw":
        topt = torch.optim.AdamW(model.groups(0.1), lr=0.01)
    elif opt_id == "rmsprop":
        topt = torch.optim.RMSprop(params, lr=0.01, alpha=0.9)
    else:
        topt = torch.optim.RMSprop(params, lr=0.01, momentum=0.5, centered=True)
    for step in range(4):
        xb, yb = rng.standard_normal((6, 5)), rng.integers(0, 3, 6)
        got = net.step({"x": xb, "y": yb})
        topt.zero_grad()
        ref = torch.nn.functional.cross_entropy(model(torch.from_numpy(xb)), torch.from_numpy(yb))
        ref.backward()
        topt.step()
        np.testing.assert_allclose(got, ref.item(), rtol=1e-10)
        model.assert_matches(net, f"after step {step}")


# --- random graphs --------------------------------------------------------------------------

def _random_graph(seed: int):
    """A random DAG of smooth ops over two inputs and two parameters; values are reused, so
    most nodes feed several paths (and broadcasting and reductions mix with them)."""
    r = np.random.default_rng(seed)
    x, y = gc.input("x", (None, 4)), gc.input("y", (None, 4))
    W, b = gc.parameter("W", (4, 4)), gc.parameter("b", (4,))
    pool = [x, y]
    unary = [gc.tanh, gc.sigmoid, gc.softplus, gc.neg, gc.identity, gc.elu, gc.softmax,
             gc.log_softmax, lambda v: v / 3.0, lambda v: 0.5 * v]
    for _ in range(int(r.integers(4, 10))):
        a, c = (pool[int(i)] for i in r.integers(0, len(pool), 2))
        kind = int(r.integers(0, 7))
        if kind == 0:
            v = unary[int(r.integers(0, len(unary)))](a)
        elif kind == 1:
            v = [gc.add, gc.sub, gc.mul][int(r.integers(0, 3))](a, c)
        elif kind == 2:
            v = a @ W if r.random() < 0.5 else a @ gc.transpose(W)
        elif kind == 3:
            v = a + b if r.random() < 0.5 else b * a
        elif kind == 4:
            v = c - gc.sum(a, axis=0) if r.random() < 0.5 else gc.mean(a, axis=0) * c
        elif kind == 5:
            v = gc.mean(a) * c if r.random() < 0.5 else gc.sum(a) + c
        else:
            v = gc.transpose(gc.transpose(a) - gc.transpose(c))
        pool.append(v)
    out = pool[-1]
    for v in pool[2:-1]:
        if r.random() < 0.4:
            out = out + v
    return x, y, W, b, out


@pytest.mark.parametrize("seed", range(20))
def test_random_graph_gradients_match_finite_differences(seed):
    x, y, W, b, out = _random_graph(seed)
    R = gc.input("R", (None, 4))
    loss = gc.sum(out * R)
    grads = gc.grad(loss, [x, y, W, b])
    f = gc.function([x, y, R], [loss, *grads], **OPTS)
    r = np.random.default_rng(seed + 1000)
    vals = {"x": r.standard_normal((3, 4)), "y": r.standard_normal((3, 4)),
            "R": r.standard_normal((3, 4))}
    params = {"W": r.standard_normal((4, 4)) * 0.5, "b": r.standard_normal(4)}
    f.set_params(params)
    _, *got = f(vals["x"], vals["y"], vals["R"])

    def L(v, p):
        f.set_params(p)
        return float(f(v["x"], v["y"], v["R"])[0])

    assert_matches_finite_differences(L, vals, params, dict(zip(["x", "y", "W", "b"], got,
                                                                strict=True)),
                                      what=f"random graph {seed}", scaled_atol=True)
