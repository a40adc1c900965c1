"""Fused ops: what the fusion passes turn groups of primitive ops into.

Each is still one definition -- shape rule and NumPy reference -- so the
numerical pass guard can run the graph before and after fusion through the
same interpreter, and the kernels are tested against these references.

Multi-output fused ops produce a tuple (dtype ``"tuple"``, shape = the tuple
of element shapes) read through ``getitem`` nodes.  Which elements a
``dense_bwd`` produces is given by its ``outs`` attribute, e.g.
``("dx", "dW", "db")``.

Fused ops have no VJP: fusion runs after autodiff.
"""

from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError
from graphc.ir.node import FLOAT, TUPLE, shape_str
from graphc.ops.activation import act_derivative, act_forward, sigmoid, softmax_ref
from graphc.ops.base import OPS, Op, register
from graphc.ops.loss import check_labels, loss_grad_shape, onehot


@register
class GetItem(Op):
    name = "getitem"
    arity = 1
    fusion_kind = "injective"

    def infer(self, ins, attrs):
        t = ins[0]
        if t.dtype != TUPLE or not 0 <= attrs["index"] < len(t.shape):
            raise ShapeError(f"getitem {attrs['index']} of a non-tuple or short tuple")
        return t.shape[attrs["index"]], FLOAT

    def reference(self, xs, attrs):
        return xs[0][attrs["index"]]


def _check_layer(ins, attrs, arity: int) -> None:
    """Rules shared by dense and dense_bwd: (x, W, ...) with x @ W defined, a prelu slope
    of shape (units,) last; fused nodes are checked like the ops they replace."""
    if len(ins) != arity:
        raise ShapeError(f"takes {arity} inputs for act={attrs['act']!r}, got {len(ins)}")
    x, W = ins[0], ins[1]
    if x.ndim != 2 or W.ndim != 2 or x.shape[1] != W.shape[0]:
        raise ShapeError(f"x {shape_str(x.shape)} and weight {shape_str(W.shape)} do not "
                         "make a layer")
    if attrs["act"] == "prelu" and ins[-1].shape != W.shape[1:]:
        raise ShapeError(f"prelu slope {shape_str(ins[-1].shape)} does not match the weight "
                         f"{shape_str(W.shape)}")


def _dense_inputs(xs, attrs):
    it = iter(xs)
    x, W = next(it), next(it)
    b = next(it) if attrs["has_bias"] else None
    a = next(it) if attrs["act"] == "prelu" else None
    return x, W, b, a


@register
class Dense(Op):
    """act(x @ W + b): inputs (x, W[, b][, prelu slope]); with ``save_z`` a tuple (y, z)."""

    name = "dense"
    arity = None
    fusion_kind = "fused"
    defaults = {"alpha": None, "has_bias": True, "save_z": False}

    def infer(self, ins, attrs):
        _check_layer(ins, attrs, 2 + bool(attrs["has_bias"]) + (attrs["act"] == "prelu"))
        x, W = ins[0], ins[1]
        if attrs["has_bias"] and ins[2].shape != W.shape[1:]:
            raise ShapeError(f"dense bias {shape_str(ins[2].shape)} does not match the weight "
                             f"{shape_str(W.shape)}")
        shape = (x.shape[0], W.shape[1])
        if attrs["save_z"]:
            return (shape, shape), TUPLE
        return shape, FLOAT

    def reference(self, xs, attrs):
        x, W, b, a = _dense_inputs(xs, attrs)
        z = x @ W
        if b is not None:
            z = z + b
        y = act_forward(attrs["act"], z, attrs["alpha"], a)
        return (y, z) if attrs["save_z"] else y


@register
class DenseBwd(Op):
    """Backward of a fused dense layer: inputs (x, W, saved, g[, slope]).

    dz = act'(saved) * g; dx = dz @ W.T; dW = x.T @ dz; db = colsum(dz);
    da = prelu slope gradient.  Produces the tuple named by ``outs``.
    """

    name = "dense_bwd"
    arity = None
    fusion_kind = "fused"
    defaults = {"alpha": None}

    def infer(self, ins, attrs):
        _check_layer(ins, attrs, 4 + (attrs["act"] == "prelu"))
        x, W = ins[0], ins[1]
        for what, n in (("saved value", ins[2]), ("output gradient", ins[3])):
            if n.shape != (x.shape[0], W.shape[1]):
                raise ShapeError(f"dense_bwd {what} {shape_str(n.shape)} does not match the "
                                 f"layer's output {shape_str((x.shape[0], W.shape[1]))}")
        shapes = {"dx": x.shape, "dW": W.shape, "db": W.shape[1:], "da": W.shape[1:]}
        return tuple(shapes[o] for o in attrs["outs"]), TUPLE

    def reference(self, xs, attrs):
        x, W, saved, g = xs[:4]
        a = xs[4] if attrs["act"] == "prelu" else None
        dz = act_derivative(attrs["act"], saved, attrs["from_y"], attrs["alpha"], a) * g
        res = {}
        for o in attrs["outs"]:
            if o == "dx":
                res[o] = dz @ W.T
            elif o == "dW":
                res[o] = x.T @ dz
            elif o == "db":
                res[o] = dz.sum(axis=0)
            else:
                res[o] = np.where(saved > 0, 0, g * saved).sum(axis=0)
        return tuple(res[o] for o in attrs["outs"])


@register
class SceFused(Op):
    """softmax cross-entropy that also returns the probabilities its backward reuses."""

    name = "sce_fused"
    arity = 2
    fusion_kind = "fused"

    def infer(self, ins, attrs):
        OPS["softmax_cross_entropy"].infer(ins, {})  # (logits, labels) as the unfused loss
        return ((), ins[0].shape), TUPLE

    def reference(self, xs, attrs):
        from graphc.ops.base import get_op

        z, y = xs
        loss = get_op("softmax_cross_entropy").reference([z, y], {})
        return loss, softmax_ref(z)


@register
class SceBwd(Op):
    """(p * sum_j t_j - t) * g / n from saved probabilities p."""

    name = "sce_bwd"
    arity = 3
    fusion_kind = "fused"

    def infer(self, ins, attrs):
        return loss_grad_shape("softmax_cross_entropy", ins), FLOAT

    def reference(self, xs, attrs):
        p, y, g = xs
        if y.dtype.kind in "iu":
            check_labels(y, p.shape[1])
            y = onehot(y, p.shape[1], p.dtype)
        return (p * y.sum(axis=1, keepdims=True) - y) * (g / p.dtype.type(max(p.shape[0], 1)))


@register
class BceFused(Op):
    """binary cross-entropy on logits that also returns sigmoid(z) for its backward."""

    name = "bce_fused"
    arity = 2
    fusion_kind = "fused"

    def infer(self, ins, attrs):
        OPS["binary_cross_entropy"].infer(ins, {})
        return ((), ins[0].shape), TUPLE

    def reference(self, xs, attrs):
        from graphc.ops.base import get_op

        z, t = xs
        return get_op("binary_cross_entropy").reference([z, t], {}), sigmoid(z)


@register
class BceBwd(Op):
    """(s - t) * g / N from saved s = sigmoid(z)."""

    name = "bce_bwd"
    arity = 3
    fusion_kind = "fused"

    def infer(self, ins, attrs):
        return loss_grad_shape("binary_cross_entropy", ins), FLOAT

    def reference(self, xs, attrs):
        s, t, g = xs
        return (s - t) * (g / s.dtype.type(max(s.size, 1)))
