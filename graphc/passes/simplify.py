"""Algebraic simplification: local rewrites that remove or cheapen ops.

Rules (each checks shapes, so a rewrite never changes a value's shape):

* ``x*1``, ``1*x``, ``x+0``, ``0+x``, ``x-0`` -> ``x``; ``0-x`` -> ``neg x``
  (the constant may be a scalar or any all-equal constant that broadcasts
  into ``x``);
* ``x*c``, ``c*x`` for such a constant ``c`` -> ``scale(x, c)``: one operand
  less to load, and ``scale`` chains collapse;
* ``neg(neg x)`` -> ``x``; ``scale(scale(x, a), b)`` -> ``scale(x, a*b)``;
  ``neg(scale(x, a))`` and ``scale(neg x, a)`` -> ``scale(x, -a)``;
  ``scale(x, 1)`` -> ``x``; ``identity(x)`` -> ``x`` (values are immutable,
  so the copy buys nothing);
* ``transpose(transpose x)`` -> ``x``; ``matmul(transpose a, b)`` ->
  ``matmul(a, b, ta=not ta)`` and likewise for ``b`` (GEMM flags are free,
  a transpose is a copy).

``x*0`` is deliberately *not* rewritten to 0: it is NaN for x = inf or NaN,
and numerics checking must still see those.  A rewrite that would make a
named output the bare input/parameter/constant is skipped, so every output
keeps a computed buffer.  Rules run to a fixed point (a rewrite can expose
another, e.g. a ``scale`` chain built from ``mul`` nodes).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from graphc.ir.graph import Graph
from graphc.ir.node import FLOAT
from graphc.passes.fold import constant_value
from graphc.passes.report import note

_SOURCES = {"input", "parameter", "constant"}
MAX_ROUNDS = 10


def _uniform_constant(g: Graph, n: int) -> float | None:
    """The value of a constant node whose elements are all equal (else None)."""
    node = g.node(n)
    if node.op != "constant":
        return None
    v = constant_value(node)
    if v.size == 0:
        return None
    first = float(v.flat[0])
    return first if np.all(v == first) else None


def _rewrite(g: Graph, n: int) -> tuple[str, int] | None:
    """(rule name, replacement node id) for node ``n``, or None."""
    node = g.node(n)
    op, ins = node.op, g.inputs(n)
    if node.dtype != FLOAT:
        return None

    def same_shape(i: int) -> bool:
        return g.node(i).shape == node.shape and g.node(i).dtype == FLOAT

    def make(new_op: str, inputs: list[int], **attrs) -> int:
        return g.make(new_op, inputs, loc=node.loc, **attrs)

    if op in ("mul", "add", "sub"):
        a, b = ins
        ca, cb = _uniform_constant(g, a), _uniform_constant(g, b)
        if op == "mul":
            for c, x in ((cb, a), (ca, b)):
                if c is not None and same_shape(x):
                    if c == 1.0:
                        return "x*1", x
                    return "mul by constant -> scale", make("scale", [x], factor=c)
        elif op == "add":
            for c, x in ((cb, a), (ca, b)):
                if c == 0.0 and same_shape(x):
                    return "x+0", x
        else:
            if cb == 0.0 and same_shape(a):
                return "x-0", a
            if ca == 0.0 and same_shape(b):
                return "0-x", make("neg", [b])
    elif op == "neg":
        (a,) = ins
        inner = g.node(a)
        if inner.op == "neg":
            return "neg(neg x)", g.inputs(a)[0]
        if inner.op == "scale":
            return "neg(scale)", make("scale", [g.inputs(a)[0]], factor=-inner.get("factor"))
    elif op == "scale":
        (a,) = ins
        f = float(node.get("factor"))
        inner = g.node(a)
        if f == 1.0:
            return "scale by 1", a
        if inner.op == "scale":
            return "scale chain", make("scale", [g.inputs(a)[0]],
                                       factor=float(inner.get("factor")) * f)
        if inner.op == "neg":
            return "scale(neg)", make("scale", [g.inputs(a)[0]], factor=-f)
    elif op == "identity":
        return "identity", ins[0]
    elif op == "transpose":
        (a,) = ins
        if g.node(a).op == "transpose":
            return "transpose(transpose x)", g.inputs(a)[0]
    elif op == "matmul":
        a, b = ins
        ta, tb = bool(node.get("ta")), bool(node.get("tb"))
        changed = False
        if g.node(a).op == "transpose":
            a, ta, changed = g.inputs(a)[0], not ta, True
        if g.node(b).op == "transpose":
            b, tb, changed = g.inputs(b)[0], not tb, True
        if changed:
            return "matmul(transpose) -> GEMM flags", make("matmul", [a, b], ta=ta, tb=tb)
    return None


def simplify(g: Graph) -> Graph:
    g = g.copy()
    fired: Counter[str] = Counter()
    for _ in range(MAX_ROUNDS):
        changed = False
        outputs = set(g.outputs.values())
        for n in g.toposort():
            if g.uses(n) == 0:
                continue  # dead already (replaced earlier in this round)
            hit = _rewrite(g, n)
            if hit is None:
                continue
            rule, new = hit
            if n in outputs and g.node(new).op in _SOURCES:
                continue
            g.replace_all_uses_with(n, new)
            fired[rule] += 1
            changed = True
        g.prune()
        if not changed:
            break
    if fired:
        note(g, ", ".join(f"{rule} ×{k}" for rule, k in sorted(fired.items())))
    return g
