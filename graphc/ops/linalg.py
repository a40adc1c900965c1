"""Matrix products and transposes (2-D only: graphc compiles MLPs)."""

from __future__ import annotations

import numpy as np

from graphc.errors import ShapeError
from graphc.ir.node import shape_str
from graphc.ops.base import Op, register, require_float


@register
class MatMul(Op):
    """``op(a) @ op(b)`` where op transposes when ``ta``/``tb`` is set (GEMM flags)."""

    name = "matmul"
    arity = 2
    fusion_kind = "matmul"
    defaults = {"ta": False, "tb": False}

    def infer(self, ins, attrs):
        a, b = ins
        for n, side in ((a, "left"), (b, "right")):
            require_float(n, f"{side} operand")
            if n.ndim != 2:
                raise ShapeError(f"{side} operand must be 2-D, got shape {shape_str(n.shape)}")
        m, k = a.shape[::-1] if attrs["ta"] else a.shape
        k2, n_ = b.shape[::-1] if attrs["tb"] else b.shape
        if k != k2:
            raise ShapeError(f"inner dimensions differ: {shape_str(a.shape)}"
                             f"{'ᵀ' if attrs['ta'] else ''} @ {shape_str(b.shape)}"
                             f"{'ᵀ' if attrs['tb'] else ''} ({k} != {k2})")
        return (m, n_), a.dtype

    def reference(self, xs, attrs):
        a = xs[0].T if attrs["ta"] else xs[0]
        b = xs[1].T if attrs["tb"] else xs[1]
        return a @ b

    def vjp(self, g, nid, ins, gout, wants):
        a, b = ins
        ta, tb = g.node(nid).get("ta"), g.node(nid).get("tb")
        da = db = None
        # C = op(A) op(B): dop(A) = G op(B)^T, dop(B) = op(A)^T G, then undo the op.
        if wants[0]:
            da = (g.make("matmul", [b, gout], ta=tb, tb=True) if ta
                  else g.make("matmul", [gout, b], ta=False, tb=not tb))
        if wants[1]:
            db = (g.make("matmul", [gout, a], ta=True, tb=ta) if tb
                  else g.make("matmul", [a, gout], ta=not ta, tb=False))
        return [da, db]


@register
class Transpose(Op):
    name = "transpose"
    arity = 1
    fusion_kind = "injective"

    def infer(self, ins, attrs):
        if ins[0].ndim != 2:
            raise ShapeError(f"transpose needs a 2-D tensor, got {shape_str(ins[0].shape)}")
        return ins[0].shape[::-1], ins[0].dtype

    def reference(self, xs, attrs):
        return np.ascontiguousarray(xs[0].T)

    def vjp(self, g, nid, ins, gout, wants):
        return [g.make("transpose", [gout])]
