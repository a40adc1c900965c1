"""Reductions (sum, mean) and the broadcasts their gradients need."""

from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError
from graphc.ir.node import shape_str
from graphc.ops.base import Op, broadcast, register


def _reduced_shape(shape: tuple, axis: int | None) -> tuple:
    if axis is None:
        return ()
    if len(shape) > 2 or not (axis == 0 or axis == len(shape) - 1):
        raise ShapeError(f"graphc reduces over all elements, axis 0 or the last axis of a 1-D "
                         f"or 2-D tensor; got axis={axis} of {shape_str(shape)}")
    return shape[:axis] + shape[axis + 1:]


class Reduce(Op):
    arity = 1
    fusion_kind = "reduce"
    defaults = {"axis": None}

    def infer(self, ins, attrs):
        return _reduced_shape(ins[0].shape, attrs["axis"]), ins[0].dtype


@register
class Sum(Reduce):
    name = "sum"

    def reference(self, xs, attrs):
        return np.asarray(xs[0].sum(axis=attrs["axis"]))

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("expand", [gout, ins[0]], axis=g.node(nid).get("axis"), mean=False)]


@register
class Mean(Reduce):
    name = "mean"

    def reference(self, xs, attrs):
        x, axis = xs[0], attrs["axis"]
        n = x.size if axis is None else x.shape[axis]
        # Like PyTorch: the mean of nothing is NaN, without NumPy's warning.
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.asarray(x.sum(axis=axis) / x.dtype.type(n))

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("expand", [gout, ins[0]], axis=g.node(nid).get("axis"), mean=True)]


@register
class SumTo(Op):
    """Sum the leading axes away, keeping the trailing ``ndim`` (undoes broadcasting)."""

    name = "sum_to"
    arity = 1
    fusion_kind = "reduce"

    def infer(self, ins, attrs):
        nd = attrs["ndim"]
        if nd > ins[0].ndim:
            raise ShapeError(f"cannot sum {shape_str(ins[0].shape)} to {nd} dims")
        return ins[0].shape[ins[0].ndim - nd:], ins[0].dtype

    def reference(self, xs, attrs):
        x = xs[0]
        return np.asarray(x.sum(axis=tuple(range(x.ndim - attrs["ndim"]))))

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("expand_to", [gout, ins[0]])]


@register
class ExpandTo(Op):
    """Broadcast a (trailing-suffix) tensor to the shape of another: the adjoint of sum_to."""

    name = "expand_to"
    arity = 2
    fusion_kind = "broadcast"

    def infer(self, ins, attrs):
        if broadcast(ins[0].shape, ins[1].shape) != ins[1].shape:
            raise ShapeError(f"cannot expand {shape_str(ins[0].shape)} to {shape_str(ins[1].shape)}")
        return ins[1].shape, ins[0].dtype

    def reference(self, xs, attrs):
        return np.ascontiguousarray(np.broadcast_to(xs[0], xs[1].shape))

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("sum_to", [gout], ndim=g.node(ins[0]).ndim), None]


@register
class Expand(Op):
    """Broadcast a reduction's result back over the reduced axis (divided by its length
    when ``mean``): the gradient of sum and mean. Input 2 only lends its shape."""

    name = "expand"
    arity = 2
    fusion_kind = "broadcast"
    defaults = {"axis": None, "mean": False}

    def infer(self, ins, attrs):
        if _reduced_shape(ins[1].shape, attrs["axis"]) != ins[0].shape:
            raise ShapeError(f"{shape_str(ins[0].shape)} is not {shape_str(ins[1].shape)} reduced "
                             f"over axis {attrs['axis']}")
        return ins[1].shape, ins[0].dtype

    def reference(self, xs, attrs):
        g, like = xs
        axis = attrs["axis"]
        if axis is not None:
            g = np.expand_dims(g, axis)
        out = np.ascontiguousarray(np.broadcast_to(g, like.shape), dtype=g.dtype)
        if attrs["mean"]:
            n = like.size if axis is None else like.shape[axis]
            with np.errstate(invalid="ignore", divide="ignore"):
                out = out / out.dtype.type(n)
        return out

    def vjp(self, g, nid, ins, gout, wants):
        node = g.node(nid)
        op = "mean" if node.get("mean") else "sum"
        return [g.make(op, [gout], axis=node.get("axis")), None]
