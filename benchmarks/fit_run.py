"""Whole training runs: graphc's compiled ``fit`` against PyTorch eager and scikit-learn.

BENCHMARKS.md judges ``fit`` on an MNIST-1D-sized run -- a 40-100-100-10 relu MLP,
Adam (lr 1e-3), batch 100, 6000 steps -- against a PyTorch eager training loop and
scikit-learn's ``MLPClassifier`` with the same layers, optimizer, batch size and
number of steps, plus graphc's own step loop driven from Python.  The data are
synthetic (40 features, 10 classes; no network here), 4000 examples, 150 epochs.

    python -m benchmarks.fit_run [--steps 6000] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from benchmarks._env import set_thread_env

SIZES = (40, 100, 100, 10)
BATCH = 100
N = 4000


def data(seed: int = 0):
    import numpy as np

    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((10, SIZES[0])) * 2
    y = rng.integers(0, 10, N)
    x = (centers[y] + rng.standard_normal((N, SIZES[0]))).astype(np.float32)
    return x, y.astype(np.int64)


def graphc_fit(x, y, epochs: int, native: bool = True) -> float:
    import graphc as gc

    xi = gc.input("x", (None, SIZES[0]))
    yi = gc.input("y", (None,), dtype="int64")
    h = xi
    for i, m in enumerate(SIZES[1:]):
        h = gc.dense(h, m, activation="relu" if i < len(SIZES) - 2 else None, name=f"l{i}")
    net = gc.compile(loss=gc.softmax_cross_entropy(h, yi), optimizer=gc.optim.Adam(lr=1e-3),
                     seed=0)
    if native:
        from benchmarks.peers._graphc_common import warm_fit

        warm_fit(net, x, y, BATCH)  # compile outside the timing
        t0 = time.perf_counter()
        net.fit({"x": x, "y": y}, epochs=epochs, batch_size=BATCH, shuffle=False, progress=False)
        return time.perf_counter() - t0
    net.step({"x": x[:BATCH], "y": y[:BATCH]})
    t0 = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, N, BATCH):
            net.step({"x": x[i:i + BATCH], "y": y[i:i + BATCH]})
    return time.perf_counter() - t0


def torch_fit(x, y, epochs: int) -> float | None:
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(2)
    layers = []
    for i in range(len(SIZES) - 1):
        layers.append(torch.nn.Linear(SIZES[i], SIZES[i + 1]))
        if i < len(SIZES) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    lossf = torch.nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    t0 = time.perf_counter()
    for _ in range(epochs):
        for i in range(0, N, BATCH):
            opt.zero_grad()
            loss = lossf(model(xt[i:i + BATCH]), yt[i:i + BATCH])
            loss.backward()
            opt.step()
    return time.perf_counter() - t0


def sklearn_fit(x, y, epochs: int) -> float | None:
    try:
        from sklearn.neural_network import MLPClassifier
    except ImportError:
        return None
    import warnings

    clf = MLPClassifier(hidden_layer_sizes=SIZES[1:-1], solver="adam", learning_rate_init=1e-3,
                        batch_size=BATCH, max_iter=epochs, shuffle=False, alpha=0.0, tol=0.0,
                        n_iter_no_change=10**9, random_state=0)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(x, y)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fit_run", description=__doc__)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--json", default=None)
    ap.add_argument("--repeat", type=int, default=3, help="runs per framework; the fastest counts")
    args = ap.parse_args(argv)
    set_thread_env(2)
    from benchmarks.harness import machine_info

    epochs = max(1, args.steps // (N // BATCH))
    steps = epochs * (N // BATCH)
    x, y = data()
    runs = {"graphc_fit": lambda: graphc_fit(x, y, epochs),
            "graphc_step_loop": lambda: graphc_fit(x, y, epochs, False),
            "torch_eager": lambda: torch_fit(x, y, epochs), "sklearn": lambda: sklearn_fit(x, y, epochs)}
    res: dict[str, float | None] = {name: None for name in runs}
    for _ in range(max(1, args.repeat)):  # interleaved, so every framework sees the same load
        for name, run in runs.items():
            t = run()
            if t is not None:
                res[name] = t if res[name] is None else min(res[name], t)
    info = machine_info()
    print(f"{'-'.join(map(str, SIZES))} Adam batch {BATCH}, {steps} steps; CPU {info.get('cpu')}")
    base = res["graphc_fit"]
    for name, t in res.items():
        if t is None:
            print(f"  {name:<18} not installed")
        else:
            print(f"  {name:<18} {t:8.3f} s  {steps * BATCH / t:12,.0f} samples/s  "
                  f"{t / base:6.2f}x graphc_fit's time")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"steps": steps, "repeat": args.repeat, "seconds": res, "machine": info}, f,
                      indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
