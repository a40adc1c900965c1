"""Activations, softmax / log_softmax, and the derivative ops their VJPs emit.

Every activation is defined here once: its forward formula, its derivative
from the pre-activation z, and -- where the output determines it -- from the
output y.  Saving y instead of z lets a fused backward reuse the forward's
output buffer; :func:`saves_output` is the single rule both the VJPs and the
fusion passes follow.  Semantics follow PyTorch (relu'(0) = 0, leaky/elu/prelu
take the negative branch at 0, softplus with beta=1 and threshold=20), also
at a NaN input, where PyTorch's derivatives differ by activation: relu and elu
test ``z <= 0`` so NaN passes the gradient through, leaky_relu and prelu test
``z > 0`` so NaN gets the slope, the others give NaN.
"""

from __future__ import annotations

import numpy as np

from graphc.errors import GradError, ShapeError
from graphc.ir.node import shape_str
from graphc.ops.base import Op, register, require_float

SOFTPLUS_THRESHOLD = 20.0


def sigmoid(z: np.ndarray) -> np.ndarray:
    # exp of -|z| never overflows, so both tails stay finite.
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def _one(z):
    return np.ones_like(z)


ACTIVATIONS: dict[str, dict] = {
    "linear": dict(f=lambda z, a: z.copy(), dz=lambda z, a: _one(z), dy=lambda y, a: _one(y),
                   saves_y=lambda a: True),
    "relu": dict(f=lambda z, a: np.maximum(z, 0), dz=lambda z, a: (~(z <= 0)).astype(z.dtype),
                 dy=lambda y, a: (~(y <= 0)).astype(y.dtype), saves_y=lambda a: True),
    "sigmoid": dict(f=lambda z, a: sigmoid(z), dz=lambda z, a: sigmoid(z) * (1 - sigmoid(z)),
                    dy=lambda y, a: y * (1 - y), saves_y=lambda a: True),
    "tanh": dict(f=lambda z, a: np.tanh(z), dz=lambda z, a: 1 - np.tanh(z) ** 2,
                 dy=lambda y, a: 1 - y * y, saves_y=lambda a: True),
    "leaky_relu": dict(f=lambda z, a: np.where(z > 0, z, z * a),
                       dz=lambda z, a: np.where(z > 0, 1, a).astype(z.dtype),
                       dy=lambda y, a: np.where(y > 0, 1, a).astype(y.dtype),
                       saves_y=lambda a: a > 0),
    "elu": dict(f=lambda z, a: np.where(z > 0, z, a * np.expm1(np.minimum(z, 0))),
                dz=lambda z, a: np.where(z <= 0, a * np.exp(np.minimum(z, 0)), 1).astype(z.dtype),
                dy=lambda y, a: np.where(y <= 0, y + a, 1).astype(y.dtype),
                saves_y=lambda a: a >= 0),
    "softplus": dict(
        f=lambda z, a: np.where(z > SOFTPLUS_THRESHOLD, z,
                                np.log1p(np.exp(np.minimum(z, SOFTPLUS_THRESHOLD)))),
        dz=lambda z, a: np.where(z > SOFTPLUS_THRESHOLD, 1, sigmoid(z)).astype(z.dtype),
        dy=None, saves_y=lambda a: False),
}
DEFAULT_ALPHA = {"leaky_relu": 0.01, "elu": 1.0, "prelu": 0.25}
# Every name gc.dense(..., activation=...) accepts.
ACTIVATION_NAMES = (*ACTIVATIONS, "prelu", "softmax", "log_softmax")


def saves_output(act: str, alpha: float | None) -> bool:
    """Whether act's derivative is computed from its output y (else from its input z)."""
    if act == "prelu":
        return False
    return bool(ACTIVATIONS[act]["saves_y"](alpha))


def act_forward(act: str, z: np.ndarray, alpha: float | None = None,
                a: np.ndarray | None = None) -> np.ndarray:
    if act == "prelu":
        return np.where(z > 0, z, a * z).astype(z.dtype, copy=False)
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(ACTIVATIONS[act]["f"](z, alpha), dtype=z.dtype)


def act_derivative(act: str, saved: np.ndarray, from_y: bool, alpha: float | None = None,
                   a: np.ndarray | None = None) -> np.ndarray:
    if act == "prelu":
        return np.where(saved > 0, 1, a).astype(saved.dtype, copy=False)
    rule = ACTIVATIONS[act]["dy" if from_y else "dz"]
    with np.errstate(over="ignore", invalid="ignore"):
        return np.asarray(rule(saved, alpha), dtype=saved.dtype)


class Activation(Op):
    arity = 1
    fusion_kind = "elemwise"
    defaults = {"alpha": None}

    def infer(self, ins, attrs):
        require_float(ins[0], f"input of {self.name}")
        return ins[0].shape, ins[0].dtype

    def reference(self, xs, attrs):
        return act_forward(self.name, xs[0], attrs["alpha"])

    def vjp(self, g, nid, ins, gout, wants):
        alpha = g.node(nid).get("alpha")
        from_y = saves_output(self.name, alpha)
        saved = nid if from_y else ins[0]
        return [g.make("act_grad", [saved, gout], act=self.name, alpha=alpha, from_y=from_y)]


for _act in ACTIVATIONS:
    if _act == "linear":
        continue
    register(type(f"Act_{_act}", (Activation,), {
        "name": _act,
        "defaults": {"alpha": DEFAULT_ALPHA.get(_act)},
    }))


@register
class PReLU(Op):
    """prelu(x, a): a learned slope per unit (the last axis) for the negative side."""

    name = "prelu"
    arity = 2
    fusion_kind = "elemwise"

    def infer(self, ins, attrs):
        x, a = ins
        require_float(x, "input of prelu")
        if x.ndim == 0 or a.shape != x.shape[-1:]:
            raise ShapeError(f"prelu slope must have shape {shape_str(x.shape[-1:])} "
                             f"(one per unit), got {shape_str(a.shape)}")
        return x.shape, x.dtype

    def reference(self, xs, attrs):
        return act_forward("prelu", xs[0], a=xs[1])

    def vjp(self, g, nid, ins, gout, wants):
        x, a = ins
        dx = g.make("act_grad", [x, gout, a], act="prelu", alpha=None, from_y=False)
        da = g.make("prelu_da", [x, gout]) if wants[1] else None
        return [dx, da]


@register
class ActGrad(Op):
    """dz = act'(saved) * g, with saved the output (from_y) or the pre-activation."""

    name = "act_grad"
    arity = None
    fusion_kind = "elemwise"
    defaults = {"alpha": None}

    def infer(self, ins, attrs):
        if len(ins) not in (2, 3) or ins[0].shape != ins[1].shape:
            raise ShapeError("act_grad takes (saved, g[, slope]) of one shape")
        return ins[0].shape, ins[0].dtype

    def reference(self, xs, attrs):
        a = xs[2] if len(xs) == 3 else None
        return act_derivative(attrs["act"], xs[0], attrs["from_y"], attrs["alpha"], a) * xs[1]

    def vjp(self, g, nid, ins, gout, wants):
        raise GradError("second derivatives of activations are not supported")


@register
class PReLUSlopeGrad(Op):
    """d loss / d slope of prelu: sum over all but the last axis of g * z where z <= 0."""

    name = "prelu_da"
    arity = 2
    fusion_kind = "reduce"

    def infer(self, ins, attrs):
        if ins[0].ndim == 0 or ins[0].shape != ins[1].shape:
            raise ShapeError(f"prelu_da takes (z, g) of one shape, got {shape_str(ins[0].shape)} "
                             f"and {shape_str(ins[1].shape)}")
        return ins[0].shape[-1:], ins[0].dtype

    def reference(self, xs, attrs):
        z, g = xs
        prod = np.where(z > 0, 0, g * z)
        return np.asarray(prod.reshape(-1, z.shape[-1]).sum(axis=0), dtype=z.dtype)


def softmax_ref(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)


def log_softmax_ref(x: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        s = x - x.max(axis=-1, keepdims=True)
        return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


class RowOp(Op):
    arity = 1
    fusion_kind = "opaque"

    def infer(self, ins, attrs):
        require_float(ins[0], f"input of {self.name}")
        if ins[0].ndim not in (1, 2):
            raise ShapeError(f"{self.name} works on the last axis of a 1-D or 2-D tensor, "
                             f"got {shape_str(ins[0].shape)}")
        return ins[0].shape, ins[0].dtype


@register
class Softmax(RowOp):
    name = "softmax"

    def reference(self, xs, attrs):
        return softmax_ref(xs[0])

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("softmax_grad", [nid, gout])]


@register
class LogSoftmax(RowOp):
    name = "log_softmax"

    def reference(self, xs, attrs):
        return log_softmax_ref(xs[0])

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("log_softmax_grad", [nid, gout])]


class RowGrad(Op):
    arity = 2
    fusion_kind = "opaque"

    def infer(self, ins, attrs):
        return ins[0].shape, ins[0].dtype

    def vjp(self, g, nid, ins, gout, wants):
        raise GradError(f"second derivatives of {self.name[:-5]} are not supported")


@register
class SoftmaxGrad(RowGrad):
    name = "softmax_grad"

    def reference(self, xs, attrs):
        y, g = xs
        return y * (g - (g * y).sum(axis=-1, keepdims=True))


@register
class LogSoftmaxGrad(RowGrad):
    name = "log_softmax_grad"

    def reference(self, xs, attrs):
        y, g = xs
        return g - np.exp(y) * g.sum(axis=-1, keepdims=True)
