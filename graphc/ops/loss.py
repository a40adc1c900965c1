"""Losses (mean-reduced like PyTorch's default) and the l2 regulariser.

Formulations are the numerically stable ones: cross-entropy through
log-sum-exp, binary cross-entropy on logits as max(z,0) - z t + log1p(exp(-|z|)).
RELIABILITY.md ("Numerics") tabulates every loss at the extremes (+-inf, NaN, 1e30...).
"""

from __future__ import annotations

import numpy as np

from graphc.errors import FeedError, ShapeError
from graphc.ir.node import FLOAT, INT, shape_str
from graphc.ops.activation import log_softmax_ref, sigmoid, softmax_ref
from graphc.ops.base import OPS, Op, register, require_float

LOSS_NAMES = ("softmax_cross_entropy", "binary_cross_entropy", "mse", "mae", "quantile")


def _mean(total: np.ndarray, n: int, dtype) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.asarray(total, dtype=dtype) / dtype.type(n))


def check_labels(labels: np.ndarray, classes: int) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= classes):
        bad = labels[(labels < 0) | (labels >= classes)][0]
        raise FeedError(f"label {bad} out of range: labels must lie in [0, {classes})")


def onehot(labels: np.ndarray, classes: int, dtype) -> np.ndarray:
    check_labels(labels, classes)
    t = np.zeros((labels.shape[0], classes), dtype=dtype)
    t[np.arange(labels.shape[0]), labels] = 1
    return t


def loss_grad_shape(loss: str, ins) -> tuple:
    """Shape of a loss gradient node (pred-like, target, scalar cotangent): the pair must
    pass the loss's own rule and the cotangent must be a scalar, like the loss."""
    OPS[loss].infer(ins[:2], {"q": 0.5})
    if ins[2].shape != ():
        raise ShapeError(f"the cotangent of a loss must be a scalar, got {shape_str(ins[2].shape)}")
    return ins[0].shape


@register
class SoftmaxCrossEntropy(Op):
    """mean_i(-log softmax(z_i)[y_i]); labels are int64 (n,) or one-hot / soft (n, c)."""

    name = "softmax_cross_entropy"
    arity = 2
    fusion_kind = "loss"

    def infer(self, ins, attrs):
        z, y = ins
        require_float(z, "logits")
        if z.ndim != 2:
            raise ShapeError(f"logits must be 2-D (batch, classes), got {shape_str(z.shape)}")
        if y.dtype == INT:
            if y.shape != z.shape[:1]:
                raise ShapeError(f"integer labels must have shape {shape_str(z.shape[:1])} "
                                 f"for logits {shape_str(z.shape)}, got {shape_str(y.shape)}")
        elif y.shape != z.shape:
            raise ShapeError(f"one-hot targets must have the logits' shape {shape_str(z.shape)}, "
                             f"got {shape_str(y.shape)}")
        return (), FLOAT

    def reference(self, xs, attrs):
        z, y = xs
        ls = log_softmax_ref(z)
        if y.dtype.kind in "iu":
            check_labels(y, z.shape[1])
            total = -ls[np.arange(z.shape[0]), y].sum()
        else:
            # 0 * log(0) counts as 0, as in the limit (a one-hot against a -inf logit).
            total = -np.where(y != 0, y * ls, 0).sum()
        return _mean(total, z.shape[0], z.dtype)

    def vjp(self, g, nid, ins, gout, wants):
        z, y = ins
        dz = g.make("sce_grad", [z, y, gout]) if wants[0] else None
        dy = None
        if wants[1] and g.node(y).dtype == FLOAT:
            dy = g.make("loss_grad", [z, y, gout], kind="sce", wrt="target")
        return [dz, dy]


@register
class SceGrad(Op):
    """(softmax(z) * sum_j t_j - t) * g / n, with t the one-hot of integer labels."""

    name = "sce_grad"
    arity = 3
    fusion_kind = "loss"

    def infer(self, ins, attrs):
        return loss_grad_shape("softmax_cross_entropy", ins), ins[0].dtype

    def reference(self, xs, attrs):
        z, y, g = xs
        if y.dtype.kind in "iu":
            y = onehot(y, z.shape[1], z.dtype)
        p = softmax_ref(z)
        return (p * y.sum(axis=1, keepdims=True) - y) * (g / z.dtype.type(max(z.shape[0], 1)))


class Elementwise(Op):
    arity = 2
    fusion_kind = "loss"

    def infer(self, ins, attrs):
        p, t = ins
        require_float(p, "predictions")
        require_float(t, "targets")
        if p.shape != t.shape:
            raise ShapeError(f"predictions {shape_str(p.shape)} and targets {shape_str(t.shape)} "
                             "must have the same shape (reshape one; graphc does not broadcast "
                             "losses)")
        return (), FLOAT

    def reference(self, xs, attrs):
        p, t = xs
        with np.errstate(over="ignore", invalid="ignore"):
            return _mean(self.pointwise(p, t, attrs).sum(), p.size, p.dtype)

    def vjp(self, g, nid, ins, gout, wants):
        node = g.node(nid)
        q = node.get("q")
        kind = self.name
        return [g.make("loss_grad", [*ins, gout], kind=kind, q=q, wrt=w) if want else None
                for want, w in zip(wants, ("pred", "target"), strict=True)]


@register
class BinaryCrossEntropy(Elementwise):
    name = "binary_cross_entropy"

    def pointwise(self, z, t, attrs):
        # max(z,0) - z t by the sign of z, as z (1-t) or -z t: one rounding fewer, and
        # +inf rather than inf - inf = NaN for an infinite logit on the wrong side.
        lin = np.where(z >= 0, z * (1 - t), -z * t)
        return lin + np.log1p(np.exp(-np.abs(z)))


@register
class MSE(Elementwise):
    name = "mse"

    def pointwise(self, p, t, attrs):
        return (p - t) ** 2


@register
class MAE(Elementwise):
    name = "mae"

    def pointwise(self, p, t, attrs):
        return np.abs(p - t)


@register
class Quantile(Elementwise):
    name = "quantile"
    defaults = {"q": 0.5}

    def pointwise(self, p, t, attrs):
        u = t - p
        return np.maximum(attrs["q"] * u, (attrs["q"] - 1) * u)


@register
class LossGrad(Op):
    """Gradient of a mean-reduced loss w.r.t. predictions or targets, times g."""

    name = "loss_grad"
    arity = 3
    fusion_kind = "loss"
    defaults = {"q": None}

    def infer(self, ins, attrs):
        loss_grad_shape("softmax_cross_entropy" if attrs["kind"] == "sce" else attrs["kind"], ins)
        return (ins[1].shape if attrs["wrt"] == "target" else ins[0].shape), ins[0].dtype

    def reference(self, xs, attrs):
        p, t, g = xs
        kind, q = attrs["kind"], attrs["q"]
        if kind == "sce":  # w.r.t. soft targets: -log_softmax(z) * g / n
            return -log_softmax_ref(p) * (g / p.dtype.type(max(p.shape[0], 1)))
        n = p.dtype.type(max(p.size, 1))
        if kind == "binary_cross_entropy":
            d = (sigmoid(p) - t, -p)
        elif kind == "mse":
            d = (2 * (p - t), 2 * (t - p))
        elif kind == "mae":  # sign(NaN) counts as 0, as in PyTorch's L1Loss
            s = np.where(p > t, 1, np.where(p < t, -1, 0))
            d = (s, -s)
        else:  # quantile: u = t - p; the pinball's slope, taking the q-branch at u == 0
            u = t - p
            dp = np.where(u >= 0, -q, np.where(u < 0, 1 - q, np.nan))  # NaN u: NaN
            d = (dp, -dp)
        return (d[0] if attrs["wrt"] == "pred" else d[1]).astype(p.dtype) * (g / n)


@register
class L2(Op):
    """0.5 * sum(W^2): with weight λ its gradient is λW, PyTorch's weight_decay."""

    name = "l2"
    arity = 1
    fusion_kind = "reduce"

    def infer(self, ins, attrs):
        require_float(ins[0], "l2 input")
        return (), FLOAT

    def reference(self, xs, attrs):
        return np.asarray(0.5 * (xs[0] * xs[0]).sum(), dtype=xs[0].dtype)

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("mul", [ins[0], gout])]
