"""The IR: frozen nodes, and the Graph wrapper that passes and autodiff rely on."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphc as gc
from graphc.ir.graph import Graph
from graphc.ir.node import Node
from graphc.ir.verify import verify


def _g():
    x = gc.input("x", (None, 3))
    W = gc.parameter("W", (3, 3))
    h = gc.tanh(x @ W)
    out = h * h
    g, memo = Graph.from_values({"out": out})
    return g, memo, (x, W, h, out)


def test_nodes_are_frozen_and_compare_without_name_and_loc():
    a = Node.make("relu", {"alpha": None}, (None, 3), name="a", loc="f.py:1")
    b = Node.make("relu", {"alpha": None}, (None, 3), name="b", loc="g.py:2")
    assert a == b and hash(a) == hash(b)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.op = "tanh"
    c = a.replace(attrs={"alpha": 0.1})
    assert c != a and c.get("alpha") == 0.1 and a.get("alpha") is None
    assert Node.make("constant", {"value": [[1.0, 2.0]]}, (1, 2)).get("value") == ((1.0, 2.0),)


def test_value_used_twice_keeps_both_slots():
    g, memo, (x, W, h, out) = _g()
    n_out, n_h = memo[id(out)], memo[id(h)]
    assert g.inputs(n_out) == [n_h, n_h]
    assert g.users(n_h) == [n_out]
    assert g.uses(n_h) == 2 and g.uses(n_out) == 1  # one graph output


def test_from_values_shares_nodes_and_to_values_rebuilds():
    g, memo, (x, W, h, out) = _g()
    assert len(g) == 5 and len(g.find("input")) == 1
    v, = g.to_values([memo[id(out)]], known={memo[id(h)]: h})
    assert v.inputs == (h, h) and v.node == out.node


def test_replace_all_uses_with_moves_uses_and_outputs():
    g, memo, (x, W, h, out) = _g()
    n_h, n_out = memo[id(h)], memo[id(out)]
    s = g.make("sigmoid", [g.inputs(n_h)[0]])
    g.replace_all_uses_with(n_h, s)
    assert g.inputs(n_out) == [s, s] and g.users(n_h) == []
    g.replace_all_uses_with(n_out, s)
    assert g.outputs["out"] == s
    g.erase(n_out)
    g.erase(n_h)
    verify(g)
    assert [g.node(n).op for n in g.toposort()] == ["input", "parameter", "matmul", "sigmoid"]


def test_erase_refuses_live_nodes_and_prune_removes_dead_ones():
    g, memo, (x, W, h, out) = _g()
    with pytest.raises(ValueError, match="users"):
        g.erase(memo[id(h)])
    with pytest.raises(ValueError, match="output"):
        g.erase(memo[id(out)])
    dead = g.make("neg", [memo[id(h)]])
    g.make("neg", [dead])
    assert g.prune() == 2 and dead not in g
    with pytest.raises(KeyError):
        g.add(Node.make("neg", shape=(None, 3)), [12345])


def test_copy_is_independent_and_ids_never_collide():
    g, memo, (x, W, h, out) = _g()
    c = g.copy()
    a = g.make("neg", [memo[id(out)]])
    b = c.make("neg", [memo[id(out)]])
    assert a not in c and b not in g
    assert g.make("neg", [a]) not in c.nodes and c.make("neg", [b]) not in g.nodes
    c.outputs["extra"] = b
    c.meta["k"] = 1
    assert "extra" not in g.outputs and "k" not in g.meta
    c.set_node(memo[id(h)], c.node(memo[id(h)]).replace(op="sigmoid"))
    assert g.node(memo[id(h)]).op == "tanh"


def test_toposort_is_deterministic_and_respects_edges():
    g, _, _ = _g()
    order = g.toposort()
    assert order == g.toposort() == g.copy().toposort()
    pos = {n: i for i, n in enumerate(order)}
    for n in g.nodes:
        for i in g.inputs(n):
            assert pos[i] < pos[n]


def test_deep_graphs_do_not_recurse():
    x = gc.input("x", (None, 2))
    h = x
    for i in range(3000):
        h = gc.tanh(h) if i % 2 else h * 0.999
    dx, = gc.grad(gc.sum(h), [x])
    f = gc.function([x], [dx], backend="reference", dtype="float64")
    got, = f(np.zeros((1, 2)))
    np.testing.assert_allclose(got, np.full((1, 2), 0.999 ** 1500), rtol=1e-12)
