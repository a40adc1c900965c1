"""Hand-written NumPy forward/backward: what a careful user writes without a framework.

Every activation, gradient and mask buffer is allocated once in ``build``; the GEMMs write
into them with ``np.dot(..., out=...)`` and the elementwise work runs in place, so a steady
step allocates only a few batch-sized temporaries (label gathers). ``bug=True`` builds a
deliberately wrong variant (bias gradients dropped) that the agreement tests use.
"""

from __future__ import annotations

import numpy as np

from benchmarks.configs import Problem
from benchmarks.peers.base import check_problem_loss


def available() -> tuple[bool, str]:
    return True, ""


class NumpyHand:
    note = "np.dot(out=) into preallocated buffers, in-place elementwise"

    def __init__(self, problem: Problem, bug: bool = False) -> None:
        cfg = problem.config
        check_problem_loss(cfg.loss)
        self.loss_kind = cfg.loss
        self.lr = np.dtype(problem.dtype).type(problem.lr)
        self.bug = bug
        self.params = problem.copy_weights()
        self.x, self.y = problem.x, problem.y
        self.problem = problem
        self._buffers: dict[int, dict[str, list[np.ndarray]]] = {}
        self._grads = [(np.zeros_like(W), np.zeros_like(b)) for W, b in self.params]

    def _bufs(self, batch: int) -> dict[str, list[np.ndarray]]:
        # One set of activation/gradient buffers per batch size (training batch, infer sizes).
        bufs = self._buffers.get(batch)
        if bufs is None:
            dt = self.params[0][0].dtype
            outs = [W.shape[1] for W, _ in self.params]
            bufs = {
                "act": [np.empty((batch, o), dt) for o in outs],
                "grad": [np.empty((batch, o), dt) for o in outs],
                "mask": [np.empty((batch, o), np.bool_) for o in outs],
                "row": [np.empty(batch, dt), np.empty(batch, dt)],
            }
            self._buffers[batch] = bufs
        return bufs

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        acts = self._bufs(x.shape[0])["act"]
        h = x
        last = len(self.params) - 1
        for i, (W, b) in enumerate(self.params):
            z = acts[i]
            np.dot(h, W, out=z)
            z += b
            if i < last:
                np.maximum(z, 0, out=z)  # relu in place: z becomes h, and h > 0 is the mask
            h = z
        return acts

    def _train(self, x: np.ndarray, y: np.ndarray) -> float:
        bufs = self._bufs(x.shape[0])
        acts = self._forward(x)
        n = x.shape[0]
        out = acts[-1]
        d = bufs["grad"][-1]
        if self.loss_kind == "sce":
            m, s = bufs["row"]
            np.max(out, axis=1, out=m)
            np.subtract(out, m[:, None], out=d)
            picked = np.take_along_axis(d, y[:, None], axis=1)  # z_y - max, (n, 1)
            np.exp(d, out=d)
            np.sum(d, axis=1, out=s)
            d /= s[:, None]  # softmax
            loss = float(np.log(s).sum() - picked.sum()) / n
            # d(mean CE)/dz = (softmax - onehot) / n
            np.put_along_axis(d, y[:, None], np.take_along_axis(d, y[:, None], axis=1) - 1, axis=1)
            d *= d.dtype.type(1.0 / n)
        else:
            # sigmoid + MSE (mean over all elements)
            np.negative(out, out=d)
            np.exp(d, out=d)
            d += 1
            np.reciprocal(d, out=d)  # p = sigmoid(z)
            p = d
            diff = p - y
            loss = float(np.mean(diff * diff, dtype=np.float64))
            # dL/dz = 2 (p - t) / N * p (1 - p)
            np.multiply(diff, p.dtype.type(2.0 / diff.size), out=diff)
            np.multiply(p, p - 1, out=p)
            np.negative(p, out=p)
            np.multiply(p, diff, out=d)
        # backward: dW for every layer, dX for all but the first
        for i in range(len(self.params) - 1, -1, -1):
            W, _ = self.params[i]
            gW, gb = self._grads[i]
            h_in = x if i == 0 else acts[i - 1]
            np.dot(h_in.T, d, out=gW)
            if not self.bug:
                np.sum(d, axis=0, out=gb)
            if i > 0:
                dprev = bufs["grad"][i - 1]
                np.dot(d, W.T, out=dprev)
                mask = bufs["mask"][i - 1]
                np.greater(acts[i - 1], 0, out=mask)
                np.multiply(dprev, mask, out=dprev)
                d = dprev
        for (W, b), (gW, gb) in zip(self.params, self._grads, strict=True):
            gW *= self.lr
            W -= gW
            gb *= self.lr
            b -= gb
        return loss

    def step(self) -> float:
        return self._train(self.x, self.y)

    def fit(self, epochs: int) -> float:
        loss = float("nan")
        for _ in range(epochs):
            for xb, yb in self.problem.batches():
                loss = self._train(xb, yb)
        return loss

    def infer(self, x: np.ndarray) -> np.ndarray:
        out = self._forward(x)[-1]
        if self.loss_kind == "sigmoid_mse":
            return 1.0 / (1.0 + np.exp(-out))
        return out.copy()

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(W.copy(), b.copy()) for W, b in self.params]


def build(problem: Problem, bug: bool = False) -> NumpyHand:
    return NumpyHand(problem, bug=bug)


def build_buggy(problem: Problem) -> NumpyHand:
    """The deliberately wrong variant: bias gradients are never computed (biases stay put)."""
    return NumpyHand(problem, bug=True)
