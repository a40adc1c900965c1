"""scikit-learn MLPClassifier / MLPRegressor: a whole-``fit`` peer.

The estimator is created with the same layers, relu, plain SGD (constant lr, momentum 0),
alpha 0, the same batch size and no shuffling; one ``partial_fit`` allocates its arrays and
then ``coefs_``/``intercepts_`` are overwritten with the problem's initial weights, so it
starts from the same point as every other peer. ``step()`` is one ``partial_fit`` on the fixed
batch (one SGD step when the batch is the whole input); it exists for the agreement check,
and is not timed as a step, since every call re-validates its input. ``fit`` continues from
the current weights with ``warm_start``.

xor cannot be the same model: MLPRegressor's output is the identity and its loss is half the
MSE, and MLPClassifier on two classes uses logistic + log-loss. On xor the peer is timed for
fit throughput only and kept out of the agreement check (``comparable = False``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from benchmarks.configs import Problem
from benchmarks.peers.base import check_problem_loss, module_available


def available() -> tuple[bool, str]:
    return module_available("sklearn", "pip install scikit-learn")


class Sklearn:
    skip_metrics = frozenset({"step", "infer"})

    def __init__(self, problem: Problem) -> None:
        from sklearn.neural_network import MLPClassifier, MLPRegressor

        cfg = problem.config
        check_problem_loss(cfg.loss)
        common: dict[str, Any] = dict(
            hidden_layer_sizes=cfg.sizes[1:-1],
            activation="relu",
            solver="sgd",
            learning_rate="constant",
            learning_rate_init=problem.lr,
            momentum=0.0,
            nesterovs_momentum=False,
            alpha=0.0,
            batch_size=cfg.batch,
            shuffle=False,
            early_stopping=False,
            tol=0.0,
            n_iter_no_change=2**31 - 1,  # never stop early: fit runs exactly `epochs` epochs
            warm_start=True,
            random_state=0,
            max_iter=1,
        )
        self.classifier = cfg.loss == "sce"
        self.problem = problem
        self.x, self.X = problem.x, problem.X
        if self.classifier:
            self.est = MLPClassifier(**common)
            self.y, self.Y = problem.y, problem.Y
            classes = np.arange(cfg.sizes[-1])
            self._quiet(lambda: self.est.partial_fit(self.x, self.y, classes=classes))
            self.comparable = True
            self.note = "MLPClassifier(solver='sgd', momentum=0, alpha=0), coefs_ set"
        else:
            self.est = MLPRegressor(**common)
            self.y, self.Y = problem.y.ravel(), problem.Y.ravel()
            self._quiet(lambda: self.est.partial_fit(self.x, self.y))
            self.comparable = False
            self.note = "MLPRegressor: identity output, half-MSE (not sigmoid+MSE): fit only"
        # Same starting point as every other peer.
        self.est.coefs_ = [W.copy() for W, _ in problem.weights]
        self.est.intercepts_ = [b.copy() for _, b in problem.weights]

    @staticmethod
    def _quiet(fn: Any) -> Any:
        # ConvergenceWarning after every max_iter-limited fit is expected, not news.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()

    def step(self) -> float:
        self._quiet(lambda: self.est.partial_fit(self.x, self.y))
        return float(self.est.loss_)

    def fit(self, epochs: int) -> float:
        self.est.max_iter = epochs
        self._quiet(lambda: self.est.fit(self.X, self.Y))
        return float(self.est.loss_)

    def infer(self, x: np.ndarray) -> np.ndarray:
        if self.classifier:
            return self.est.predict_proba(x)
        return self.est.predict(x)[:, None]

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(W.copy(), b.copy()) for W, b in zip(self.est.coefs_, self.est.intercepts_, strict=True)]


def build(problem: Problem) -> Sklearn:
    return Sklearn(problem)
