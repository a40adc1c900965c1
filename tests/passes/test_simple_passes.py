"""DCE, CSE, constant folding and algebraic simplification: before() vs expected()."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.passes.cse import cse
from graphc.passes.dce import dce
from graphc.passes.fold import MAX_FOLD_ELEMENTS, fold_constants
from graphc.passes.simplify import simplify

from .helpers import check_rewrite, graph_of, op, ops


def x_():
    return gc.input("x", (None, 3))


# --- dce --------------------------------------------------------------------------------

def test_dce_removes_unreachable_nodes():
    x = x_()
    before = graph_of({"y": gc.tanh(x)})
    dead = before.make("sigmoid", [before.by_name("input")["x"]])
    before.make("relu", [dead])
    after = check_rewrite(dce, before, graph_of({"y": gc.tanh(x)}))
    assert len(after) == 2


def test_dce_keeps_everything_updates_need():
    x, y = x_(), gc.input("y", (None, 2))
    loss = gc.mse(gc.dense(x, 2, name="fc"), y)
    from .helpers import training
    t = training(loss)
    after = check_rewrite(dce, t, None)
    assert len(after) == len(t)


# --- cse --------------------------------------------------------------------------------

def test_cse_merges_equal_nodes_with_equal_inputs():
    x = x_()
    before = graph_of({"y": gc.tanh(x) + gc.tanh(x)})
    t = gc.tanh(x)
    check_rewrite(cse, before, graph_of({"y": t + t}))


def test_cse_merges_transitively():
    x = x_()
    before = graph_of({"y": gc.relu(gc.tanh(x)) * gc.relu(gc.tanh(x))})
    r = gc.relu(gc.tanh(x))
    check_rewrite(cse, before, graph_of({"y": r * r}))


def test_cse_never_merges_distinct_parameters_or_attrs():
    x = x_()
    W1, W2 = gc.parameter("W1", (3, 3)), gc.parameter("W2", (3, 3))
    y = gc.matmul(x, W1) + gc.matmul(x, W2) + gc.leaky_relu(x, 0.1) + gc.leaky_relu(x, 0.2)
    before = graph_of({"y": y})
    after = check_rewrite(cse, before, None)
    assert ops(after) == ops(before)


def test_cse_merges_equal_constants_and_same_named_inputs():
    a, b = gc.input("x", (None, 3)), gc.input("x", (None, 3))
    before = graph_of({"y": a * 2.0 + b * 2.0})
    x = x_()
    t = x * 2.0
    check_rewrite(cse, before, graph_of({"y": t + t}))


# --- constant folding ------------------------------------------------------------------

def test_fold_all_constant_subgraph():
    x = x_()
    before = graph_of({"y": x * (gc.constant(2.0) * gc.constant(3.0) - gc.constant(1.0))})
    check_rewrite(fold_constants, before, graph_of({"y": x * gc.constant(5.0)}))


def test_fold_evaluates_with_the_op_reference():
    c = gc.constant([[1.0, -2.0], [3.0, 0.5]])
    x = gc.input("x", (2, 2))
    before = graph_of({"y": x + gc.tanh(gc.transpose(c))})
    want = np.tanh(np.array([[1.0, -2.0], [3.0, 0.5]]).T)
    check_rewrite(fold_constants, before, graph_of({"y": x + gc.constant(want)}))


def test_fold_shape_only_inputs():
    W = gc.parameter("W", (2, 3))
    x = gc.input("x", (2, 3))
    before = graph_of({"y": x + op("expand", gc.constant(6.0), W, axis=None, mean=True)})
    check_rewrite(fold_constants, before, graph_of({"y": x + gc.constant(np.ones((2, 3)))}))


def test_fold_leaves_outputs_batch_shapes_and_large_results():
    x = x_()
    big = int(np.sqrt(MAX_FOLD_ELEMENTS)) + 1
    W = gc.parameter("W", (big, big))
    y = {"c": gc.constant(2.0) * gc.constant(3.0),  # an output keeps its op
         "e": op("expand", gc.constant(1.0), x, axis=None, mean=False),  # batch shape
         "z": op("zeros_like", W)}  # too large to store as a literal
    before = graph_of(y)
    after = check_rewrite(fold_constants, before, None)
    assert ops(after) == ops(before)


# --- algebraic simplification ----------------------------------------------------------

def _cases():
    x = x_()
    a = gc.input("a", (3, 4))
    b = gc.input("b", (4, 5))
    m = gc.input("m", (5, 4))
    c = gc.input("c", (4, 3))
    t = gc.tanh
    return {
        "x*1": (t(x * 1.0), t(x)),
        "1*x": (t(1.0 * x), t(x)),
        "x+0": (t(x + 0.0), t(x)),
        "0+x": (t(0.0 + x), t(x)),
        "x-0": (t(x - 0.0), t(x)),
        "0-x": (t(0.0 - x), t(-x)),
        "x*ones": (t(x * gc.constant([1.0, 1.0, 1.0])), t(x)),
        "mul->scale": (t(x * 3.0), t(op("scale", x, factor=3.0))),
        "scalar*x->scale": (t(gc.constant(-2.0) * x), t(op("scale", x, factor=-2.0))),
        "neg(neg)": (t(-(-x)), t(x)),
        "scale chain": (t((x * 2.0) * 3.0), t(op("scale", x, factor=6.0))),
        "scale by one": (t(op("scale", x, factor=1.0)), t(x)),
        "neg(scale)": (t(-(x * 2.0)), t(op("scale", x, factor=-2.0))),
        "scale(neg)": (t((-x) * 2.0), t(op("scale", x, factor=-2.0))),
        "identity": (t(gc.identity(x)), t(x)),
        "transpose(transpose)": (t(gc.transpose(gc.transpose(a))), t(a)),
        "matmul(cT, b)": (gc.matmul(gc.transpose(c), b), op("matmul", c, b, ta=True)),
        "matmul(cT, mT)": (gc.matmul(c.T, m.T), op("matmul", c, m, ta=True, tb=True)),
        "matmul(cTTT, b)": (gc.matmul(c.T.T.T, b), op("matmul", c, b, ta=True)),
        "matmul(a, bT)": (gc.matmul(a, gc.transpose(m)), op("matmul", a, m, tb=True)),
        "matmul keeps b": (gc.matmul(a, b), gc.matmul(a, b)),
    }


@pytest.mark.parametrize("case", list(_cases()))
def test_simplify(case):
    got, want = _cases()[case]
    check_rewrite(simplify, graph_of({"y": got}), graph_of({"y": want}))


def test_simplify_keeps_nonuniform_constants_and_x_times_zero():
    x = x_()
    y = gc.tanh(x * gc.constant([1.0, 2.0, 1.0])) + x * 0.0  # x*0 is NaN for inf x
    before = graph_of({"y": y})
    after = check_rewrite(simplify, before, graph_of({"y": gc.tanh(x * gc.constant([1.0, 2.0, 1.0]))
                                                      + op("scale", x, factor=0.0)}))
    assert "mul" in ops(after)


def test_simplify_never_turns_an_output_into_a_bare_input():
    x = x_()
    before = graph_of({"y": x * 1.0, "z": gc.identity(x)})
    after = check_rewrite(simplify, before, None)
    assert ops(after) == ops(before)


def test_simplify_does_not_broadcast_away_shape():
    s = gc.input("s", (3,))
    x = gc.input("x", (None, 3))
    # s + zeros(N,3) has the zeros' shape, not s's: must stay
    before = graph_of({"y": gc.tanh(s + op("expand", gc.constant(0.0), x, axis=None, mean=False))})
    after = check_rewrite(simplify, before, None)
    assert "add" in ops(after)
