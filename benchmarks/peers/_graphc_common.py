"""Build a graphc program for a benchmark Problem (shared by the graphc adapters)."""

from __future__ import annotations

import numpy as np

from benchmarks.configs import Problem
from benchmarks.peers.base import check_problem_loss


def build_program(problem: Problem, backend: str = "compiled"):
    import graphc as gc

    cfg = problem.config
    check_problem_loss(cfg.loss)
    sizes = cfg.sizes
    x = gc.input("x", (None, sizes[0]))
    h = x
    last = len(sizes) - 2
    for i in range(len(sizes) - 1):
        act = "relu" if i < last else ("sigmoid" if cfg.loss == "sigmoid_mse" else None)
        h = gc.dense(h, sizes[i + 1], activation=act, name=f"l{i}")
    if cfg.loss == "sce":
        y = gc.input("y", (None,), dtype="int64")
        loss = gc.softmax_cross_entropy(h, y)
    else:
        y = gc.input("y", (None, sizes[-1]))
        loss = gc.mse(h, y)
    net = gc.compile(loss=loss, outputs={"out": h}, optimizer=gc.optim.SGD(lr=problem.lr),
                     dtype=problem.dtype, backend=backend)
    net.set_params({f"l{i}/{k}": v for i, (W, b) in enumerate(problem.weights)
                    for k, v in (("W", W), ("b", b))})
    return net


def warm_fit(net, x, y, batch_size: int) -> None:
    """Compile the native epoch loop without training: an empty permutation runs no step."""
    feeds, _ = net.feed_spec.validate({"x": x[:1], "y": y[:1]}, net.dtype)
    net._impl.fit_epochs(feeds, np.empty(0, np.int64), batch_size, np.zeros(1), net.step_count,
                         np.zeros(1))


class GraphcPeer:
    note = ""

    def __init__(self, problem: Problem, backend: str = "compiled") -> None:
        self.problem = problem
        self.net = build_program(problem, backend)
        self.feed = {"x": np.ascontiguousarray(problem.x), "y": np.ascontiguousarray(problem.y)}
        self.n_layers = len(problem.config.sizes) - 1

    def step(self) -> float:
        return self.net.step(self.feed)

    def fit(self, epochs: int) -> float:
        """The compiled step driven from Python, one call per minibatch."""
        loss = float("nan")
        for _ in range(epochs):
            for xb, yb in self.problem.batches():
                loss = self.net.step({"x": xb, "y": yb})
        return loss

    def fit_native(self, epochs: int) -> float:
        h = self.net.fit({"x": self.problem.X, "y": self.problem.Y}, epochs=epochs,
                         batch_size=self.problem.config.batch, shuffle=False, progress=False)
        return h.loss[-1] if h.loss else float("nan")

    def infer(self, x: np.ndarray) -> np.ndarray:
        return self.net.run({"x": x})["out"]

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        p = self.net.params
        return [(p[f"l{i}/W"], p[f"l{i}/b"]) for i in range(self.n_layers)]


def cache_env(cache_dir: str) -> dict[str, str]:
    return {"GRAPHC_CACHE_DIR": cache_dir}
