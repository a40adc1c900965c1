"""``graphc demo``: the main job end to end on a data set that ships with scikit-learn.

1. declare a 64-128-64-10 MLP symbolically and show the fused training graph;
2. check every parameter gradient of the compiled step against central finite
   differences (float64);
3. train on the 8x8 digits with the compiled ``fit`` (one native call per epoch);
4. report test accuracy, the step time against PyTorch eager (when installed)
   and the fused kernels each layer became.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

import graphc as gc
from graphc.frontends.symbolic import leaves
from graphc.kernels.blas import BLAS
from graphc.runtime.summary import kernel_lines

Printer = Callable[[str], None]


def build(seed: int = 0):
    x = gc.input("x", (None, 64))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 128, activation="relu", name="fc1")
    h = gc.dense(h, 64, activation="relu", name="fc2")
    logits = gc.dense(h, 10, name="out")
    return x, y, logits, gc.softmax_cross_entropy(logits, y)


def gradient_check(loss, logits, xb: np.ndarray, yb: np.ndarray, out: Printer) -> float:
    """Worst relative error of compiled gradients vs central differences (float64)."""
    params = sorted(n for n in gc.compile(loss=loss, backend="reference").params)
    ptensors = _param_tensors(loss)
    grads = gc.grad(loss, [ptensors[n] for n in params])
    x_in, y_in = _inputs(loss)
    f = gc.function([x_in, y_in], [loss, *grads], dtype="float64")
    f_loss = gc.function([x_in, y_in], [loss], dtype="float64", backend="reference")
    f_loss.set_params(f.params)
    values = f(xb, yb)
    base = f.params
    rng = np.random.default_rng(0)
    worst = 0.0
    for name, g in zip(params, values[1:], strict=True):
        idx = [tuple(rng.integers(0, s) for s in g.shape) for _ in range(3)]
        mine = 0.0
        for i in idx:
            eps = 1e-6
            plus, minus = {k: v.copy() for k, v in base.items()}, {k: v.copy() for k, v in base.items()}
            plus[name][i] += eps
            minus[name][i] -= eps
            f_loss.set_params(plus)
            lp = f_loss(xb, yb)[0]
            f_loss.set_params(minus)
            lm = f_loss(xb, yb)[0]
            fd = (lp - lm) / (2 * eps)
            err = abs(fd - g[i]) / max(abs(fd), abs(g[i]), 1e-8)
            mine = max(mine, err)
        worst = max(worst, mine)
        out(f"  d loss / d {name:<8} {g.shape!s:<10} 3 entries, max relative error {mine:.1e}")
    return worst


def _param_tensors(t):
    return leaves(t, "parameter")


def _inputs(t):
    ins = leaves(t, "input")
    return ins["x"], ins["y"]


def torch_step_time(net, xb, yb, steps: int = 300) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    p = net.params
    layers = []
    for i, name in enumerate(("fc1", "fc2", "out")):
        lin = torch.nn.Linear(*p[f"{name}/W"].shape)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(p[f"{name}/W"].T.copy()))
            lin.bias.copy_(torch.from_numpy(p[f"{name}/b"]))
        layers += [lin] + ([torch.nn.ReLU()] if i < 2 else [])
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(xb), torch.from_numpy(yb)

    def one():
        opt.zero_grad()
        loss = lossf(model(xt), yt)
        loss.backward()
        opt.step()

    for _ in range(20):
        one()
    t0 = time.perf_counter()
    for _ in range(steps):
        one()
    return (time.perf_counter() - t0) / steps


def graphc_step_time(net, xb, yb, steps: int = 300) -> float:
    feed = {"x": xb, "y": yb}
    snapshot = net.params
    for _ in range(20):
        net.step(feed)
    t0 = time.perf_counter()
    for _ in range(steps):
        net.step(feed)
    dt = (time.perf_counter() - t0) / steps
    net.set_params(snapshot)
    return dt


def run(epochs: int = 30, batch_size: int = 32, progress: bool = True, out: Printer = print) -> dict:
    t_start = time.perf_counter()
    data = gc.data.load("digits")
    train, test = data.split(validation=0.2, seed=0)
    train, val = train.split(validation=0.1, seed=0)
    train, stats = train.standardize()
    val, _ = val.standardize(stats)
    test, _ = test.standardize(stats)
    out(f"graphc {gc.__version__} demo: a 64-128-64-10 MLP on scikit-learn's 8x8 digits "
        f"({len(train)} train / {len(val)} validation / {len(test)} test)")

    x, y, logits, loss = build()
    out("\n[1] gradients of the compiled float64 step vs central finite differences")
    worst = gradient_check(loss, logits, train.x[:16].astype(np.float64), train.y[:16], out)
    out(f"  worst relative error {worst:.2e} (tolerance 1e-6)")
    if worst > 1e-6:
        raise gc.GraphcError(f"gradient check failed: relative error {worst:.2e}")

    out("\n[2] compile the training step (autodiff -> fusion passes -> Numba)")
    t0 = time.perf_counter()
    net = gc.compile(loss=loss, outputs={"logits": logits}, optimizer=gc.optim.Adam(lr=1e-3),
                     dtype="float32", seed=0)
    e = net._impl.entries["train_step"]
    out(f"  {len(e.graph)} nodes after fusion; GEMMs call {BLAS.split(' for ')[0]}; "
        "kernels in schedule order:")
    for line in kernel_lines(e.graph, e.emitter.folded):
        out("  " + line)

    out(f"\n[3] fit: {epochs} epochs, batch {batch_size}, Adam, one native call per epoch")
    hist = net.fit({"x": train.x, "y": train.y}, epochs=epochs, batch_size=batch_size,
                   validation={"x": val.x, "y": val.y}, seed=0, progress=progress)
    t_fit = time.perf_counter() - t0
    out(f"  compile + fit {t_fit:.1f} s; last epoch loss {hist.loss[-1]:.4f}, "
        f"validation accuracy {hist.val_accuracy[-1]:.4f}, "
        f"{np.median(hist.samples_per_s):,.0f} samples/s")
    res = net.evaluate({"x": test.x, "y": test.y})
    out(f"\n[4] test accuracy {res['accuracy']:.4f} (loss {res['loss']:.4f})")

    xb, yb = train.x[:batch_size].copy(), train.y[:batch_size].copy()
    g = graphc_step_time(net, xb, yb)
    t = torch_step_time(net, xb, yb)
    if t is None:
        out(f"    step time: graphc {g * 1e6:.1f} us (PyTorch not installed: pip install torch)")
    else:
        out(f"    step time at batch {batch_size}: graphc {g * 1e6:.1f} us, PyTorch eager "
            f"{t * 1e6:.1f} us -> {t / g:.1f}x faster")
    out(f"    total demo time {time.perf_counter() - t_start:.1f} s")
    return {"accuracy": res["accuracy"], "grad_error": worst, "history": hist}
