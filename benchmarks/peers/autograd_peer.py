"""HIPS autograd: a NumPy tape traced anew on every step (the dynamic-graph NumPy peer)."""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.configs import Problem
from benchmarks.peers.base import check_problem_loss, module_available


def available() -> tuple[bool, str]:
    return module_available("autograd", "pip install autograd")


class Autograd:
    note = "autograd.value_and_grad over a list of (W, b), NumPy SGD update"

    def __init__(self, problem: Problem) -> None:
        import autograd.numpy as anp
        from autograd import value_and_grad
        from autograd.scipy.special import logsumexp

        check_problem_loss(problem.config.loss)
        sce = problem.config.loss == "sce"
        self.sce = sce
        self.lr = np.dtype(problem.dtype).type(problem.lr)
        self.params = problem.copy_weights()
        self.problem = problem

        def forward(params: Any, x: Any) -> Any:
            h = x
            last = len(params) - 1
            for i, (W, b) in enumerate(params):
                h = anp.dot(h, W) + b
                if i < last:
                    h = anp.maximum(h, 0.0)
            return h

        def loss_fn(params: Any, x: Any, y: Any) -> Any:
            z = forward(params, x)
            if sce:
                return anp.mean(logsumexp(z, axis=1) - z[anp.arange(z.shape[0]), y])
            p = 1.0 / (1.0 + anp.exp(-z))
            return anp.mean((p - y) ** 2)

        self.forward = forward
        self.value_and_grad = value_and_grad(loss_fn)

    def _train(self, x: np.ndarray, y: np.ndarray) -> float:
        loss, grads = self.value_and_grad(self.params, x, y)
        lr = self.lr
        self.params = [
            (W - lr * gW, b - lr * gb) for (W, b), (gW, gb) in zip(self.params, grads, strict=True)
        ]
        return float(loss)

    def step(self) -> float:
        return self._train(self.problem.x, self.problem.y)

    def fit(self, epochs: int) -> float:
        loss = float("nan")
        for _ in range(epochs):
            for xb, yb in self.problem.batches():
                loss = self._train(xb, yb)
        return loss

    def infer(self, x: np.ndarray) -> np.ndarray:
        z = self.forward(self.params, x)
        return z if self.sce else 1.0 / (1.0 + np.exp(-z))

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(W.copy(), b.copy()) for W, b in self.params]


def build(problem: Problem) -> Autograd:
    return Autograd(problem)
