"""Arithmetic: add, sub, mul, neg, scale, identity (with bias/scalar broadcasting)."""

from __future__ import annotations

import numpy as np

from graphc.ops.base import Op, broadcast, register, same_kind


def unbroadcast(g, grad: int, target: int) -> int:
    """Sum ``grad`` down to the shape of node ``target`` (undo bias/scalar broadcasting)."""
    if g.node(grad).shape == g.node(target).shape:
        return grad
    return g.make("sum_to", [grad], ndim=g.node(target).ndim)


class Binary(Op):
    arity = 2
    fusion_kind = "elemwise"

    def infer(self, ins, attrs):
        return broadcast(ins[0].shape, ins[1].shape), same_kind(*ins)


@register
class Add(Binary):
    name = "add"

    def reference(self, xs, attrs):
        return xs[0] + xs[1]

    def vjp(self, g, nid, ins, gout, wants):
        return [unbroadcast(g, gout, ins[0]) if wants[0] else None,
                unbroadcast(g, gout, ins[1]) if wants[1] else None]


@register
class Sub(Binary):
    name = "sub"

    def reference(self, xs, attrs):
        return xs[0] - xs[1]

    def vjp(self, g, nid, ins, gout, wants):
        return [unbroadcast(g, gout, ins[0]) if wants[0] else None,
                unbroadcast(g, g.make("neg", [gout]), ins[1]) if wants[1] else None]


@register
class Mul(Binary):
    name = "mul"

    def reference(self, xs, attrs):
        return xs[0] * xs[1]

    def vjp(self, g, nid, ins, gout, wants):
        a, b = ins
        return [unbroadcast(g, g.make("mul", [gout, b]), a) if wants[0] else None,
                unbroadcast(g, g.make("mul", [gout, a]), b) if wants[1] else None]


@register
class Neg(Op):
    name = "neg"
    arity = 1
    fusion_kind = "elemwise"

    def infer(self, ins, attrs):
        return ins[0].shape, ins[0].dtype

    def reference(self, xs, attrs):
        return -xs[0]

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("neg", [gout])]


@register
class Scale(Op):
    """Multiplication by a compile-time scalar (from constant folding and autodiff)."""

    name = "scale"
    arity = 1
    fusion_kind = "elemwise"

    def infer(self, ins, attrs):
        return ins[0].shape, ins[0].dtype

    def reference(self, xs, attrs):
        return xs[0] * np.asarray(attrs["factor"], dtype=xs[0].dtype)

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("scale", [gout], factor=g.node(nid).get("factor"))]


@register
class Identity(Op):
    name = "identity"
    arity = 1
    fusion_kind = "elemwise"

    def infer(self, ins, attrs):
        return ins[0].shape, ins[0].dtype

    def reference(self, xs, attrs):
        return xs[0].copy()

    def vjp(self, g, nid, ins, gout, wants):
        return [gout]
