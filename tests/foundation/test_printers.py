"""Printers: a golden text printout, JSON that networkx reads back identically and that
round-trips through ``from_json``, and DOT that parses."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import networkx as nx
import pytest
from op_specs import SPECS, find_parameters

import graphc as gc
from graphc.autodiff import build_training
from graphc.ir import printer
from graphc.ir.graph import Graph
from graphc.ir.verify import verify


def mlp_training_graph() -> Graph:
    x = gc.input("x", (None, 3))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 4, activation="relu", name="fc1")
    logits = gc.dense(h, 2, name="fc2")
    loss = gc.softmax_cross_entropy(logits, y)
    g, _ = Graph.from_values({"loss": loss, "logits": logits})
    return build_training(g, g.outputs["loss"], gc.optim.SGD(lr=0.1, momentum=0.9),
                          weight_decay=1e-4)


GOLDEN = """\
graph {
  %0: f[N,3] = input(name='x')
  %1: f[3,4] = parameter(fan_in=3, name='fc1/W')
  %2: f[N,4] = matmul(%0, %1)
  %3: f[4] = parameter(fan_in=3, init='zeros', name='fc1/b')
  %4: f[N,4] = add(%2, %3)
  %5: f[N,4] = relu(%4)
  %6: f[4,2] = parameter(fan_in=4, name='fc2/W')
  %7: f[N,2] = matmul(%5, %6)
  %8: f[2] = parameter(fan_in=4, init='zeros', name='fc2/b')
  %9: f[N,2] = add(%7, %8)
  %10: i64[N] = input(name='y')
  %11: f[] = softmax_cross_entropy(%9, %10)
  %12: f[] = constant(value=1.0)
  %13: f[N,2] = sce_grad(%9, %10, %12)
  %14: f[2] = sum_to(%13, ndim=1)
  %15: f[N,4] = matmul(%13, %6, tb=True)
  %16: f[4,2] = matmul(%5, %13, ta=True)
  %17: f[N,4] = act_grad(%5, %15, act='relu', from_y=True)
  %18: f[4] = sum_to(%17, ndim=1)
  %19: f[3,4] = matmul(%0, %17, ta=True)
  %20: () = update(%1, %19, momentum=0.9, opt='sgd', param='fc1/W', wd=0.0001)
  %21: () = update(%3, %18, momentum=0.9, opt='sgd', param='fc1/b')
  %22: () = update(%6, %16, momentum=0.9, opt='sgd', param='fc2/W', wd=0.0001)
  %23: () = update(%8, %14, momentum=0.9, opt='sgd', param='fc2/b')
  output loss = %11
  output logits = %9
  update fc1/W <- %20
  update fc1/b <- %21
  update fc2/W <- %22
  update fc2/b <- %23
}
"""


def test_text_printer_golden():
    g = mlp_training_graph()
    assert printer.to_text(g) == GOLDEN
    # stable: rebuilding (fresh tensors, fresh ids) and copying print the same
    assert printer.to_text(mlp_training_graph()) == GOLDEN
    assert printer.to_text(g.copy()) == GOLDEN


def test_text_printer_does_not_depend_on_node_ids():
    g = mlp_training_graph()
    # Same graph, ids shifted by unrelated nodes added and removed first.
    h = Graph()
    for _ in range(7):
        h.erase(h.add(g.node(g.nodes[0])))
    ids = {}
    for n in g.toposort():
        ids[n] = h.add(g.node(n), [ids[i] for i in g.inputs(n)])
    h.outputs = {k: ids[v] for k, v in g.outputs.items()}
    h.updates = {k: ids[v] for k, v in g.updates.items()}
    assert printer.to_text(h) == GOLDEN


# --- JSON -------------------------------------------------------------------------------

def _expected_nx(g: Graph) -> nx.MultiDiGraph:
    """What the JSON must decode to: nodes renumbered in print order, attrs as plain data."""
    num = printer.numbering(g)
    h = nx.MultiDiGraph()
    for n in g.toposort():
        node = g.node(n)
        h.add_node(num[n], op=node.op, attrs=node.attr, shape=node.shape, dtype=node.dtype,
                   name=node.name, loc=node.loc)
    for n in g.toposort():
        for slot, i in enumerate(g.inputs(n)):
            h.add_edge(num[i], num[n], key=slot)
    return h


def _plain(v):
    if isinstance(v, tuple | list):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def test_json_loads_into_an_identical_networkx_graph():
    g = mlp_training_graph()
    data = json.loads(printer.to_json(g))
    loaded = nx.node_link_graph(data, directed=True, multigraph=True, edges="edges")
    want = _expected_nx(g)
    assert sorted(loaded.nodes) == sorted(want.nodes) == list(range(len(g)))
    for n in want.nodes:
        assert _plain(loaded.nodes[n]) == _plain(want.nodes[n]), n
    assert sorted(loaded.edges(keys=True)) == sorted(want.edges(keys=True))
    assert nx.utils.graphs_equal(nx.MultiDiGraph(loaded.edges(keys=True)),
                                 nx.MultiDiGraph(want.edges(keys=True)))
    num = printer.numbering(g)
    assert loaded.graph["outputs"] == {k: num[v] for k, v in g.outputs.items()}
    assert loaded.graph["updates"] == {k: num[v] for k, v in g.updates.items()}
    # and it is the same graph as graphc's own networkx view, up to renumbering
    ours = nx.relabel_nodes(g.networkx(), num)
    assert sorted(ours.edges(keys=True)) == sorted(loaded.edges(keys=True))


def _assert_round_trip(g: Graph) -> None:
    text = printer.to_json(g)
    back = printer.from_json(text)
    assert printer.to_json(back) == text
    assert printer.to_text(back) == printer.to_text(g)
    assert printer.from_json(json.loads(text)).outputs == back.outputs
    num = printer.numbering(g)
    bnum = printer.numbering(back)
    order = g.toposort()
    border = back.toposort()
    assert len(order) == len(border)
    for a, b in zip(order, border, strict=True):
        na, nb = g.node(a), back.node(b)
        assert na == nb and (na.name, na.loc) == (nb.name, nb.loc)
        assert [num[i] for i in g.inputs(a)] == [bnum[i] for i in back.inputs(b)]
    assert list(back.outputs) == list(g.outputs)
    assert {k: bnum[v] for k, v in back.outputs.items()} == {k: num[v] for k, v in g.outputs.items()}
    assert {k: bnum[v] for k, v in back.updates.items()} == {k: num[v] for k, v in g.updates.items()}
    verify(back)


def test_json_round_trip_training_graph():
    _assert_round_trip(mlp_training_graph())


def test_json_round_trip_fused_tuple_nodes():
    """Fused multi-output nodes (tuple shapes, tuple attrs) survive JSON too."""
    x = gc.input("x", (None, 3))
    g, _ = Graph.from_values({"x": x})
    xi = g.outputs["x"]
    W = g.add(gc.parameter("W", (3, 4)).node)
    b = g.add(gc.parameter("b", (4,), init="zeros").node)
    a = g.add(gc.parameter("a", (4,), init="constant", value=0.25).node)
    d = g.make("dense", [xi, W, b, a], act="prelu", save_z=True)
    y = g.make("getitem", [d], index=0)
    z = g.make("getitem", [d], index=1)
    bwd = g.make("dense_bwd", [xi, W, z, y, a], act="prelu", from_y=False,
                 outs=("dx", "dW", "db", "da"))
    g.outputs = {"y": y, "da": g.make("getitem", [bwd], index=3), "x": xi}
    verify(g)
    _assert_round_trip(g)


@pytest.mark.parametrize("spec", SPECS, ids=[s.id for s in SPECS])
def test_every_op_graph_verifies_and_round_trips(spec):
    out, ins, params = spec.build_graph()
    wrt = [ins[n] for n in spec.diff_args] + list(find_parameters(out).values())
    loss = out if out.shape == () else gc.sum(out)
    grads = gc.grad(loss, wrt)
    g, _ = Graph.from_values({"out": out, **{f"d{i}": t for i, t in enumerate(grads)}})
    verify(g)
    _assert_round_trip(g)


def test_round_trip_with_constants_and_odd_attrs():
    x = gc.input("x", (None, 3))
    c = gc.constant([[1.0, -2.5, 3e-9]] * 3)
    out = gc.leaky_relu(x @ c, alpha=-0.25) / 3.0 + gc.quantile(x, x * 2.0, q=0.9)
    g, _ = Graph.from_values({"out": out})
    _assert_round_trip(g)


# --- DOT ----------------------------------------------------------------------------------

NODE_RE = re.compile(r'^  n(\d+) \[label="%(\d+) (\w+)([^"\\]*)\\n([^"]+)", style=filled, '
                     r'fillcolor="(\w+)"\];$')
EDGE_RE = re.compile(r'^  n(\d+) -> n(\d+) \[label="(\d+)"\];$')
OUT_RE = re.compile(r'^  out_(\w+) \[label="([^"]+)", shape=ellipse\];$')
OUT_EDGE_RE = re.compile(r"^  n(\d+) -> out_(\w+);$")


def test_dot_structure():
    g = mlp_training_graph()
    dot = printer.to_dot(g, title="mlp")
    lines = dot.splitlines()
    assert lines[0] == 'digraph "mlp" {' and lines[-1] == "}"
    assert dot.count("{") == dot.count("}") == 1
    num = printer.numbering(g)
    nodes, edges, outs, out_edges = {}, set(), {}, set()
    for line in lines[3:-1]:
        if m := NODE_RE.match(line):
            assert m[1] == m[2]
            nodes[int(m[1])] = m[3]
        elif m := EDGE_RE.match(line):
            edges.add((int(m[1]), int(m[2]), int(m[3])))
        elif m := OUT_RE.match(line):
            outs[m[1]] = m[2]
        elif m := OUT_EDGE_RE.match(line):
            out_edges.add((int(m[1]), m[2]))
        else:
            raise AssertionError(f"unexpected DOT line {line!r}")
    assert nodes == {num[n]: g.node(n).op for n in g.nodes}
    assert edges == {(num[i], num[n], slot) for n in g.nodes for slot, i in enumerate(g.inputs(n))}
    assert outs == {"loss": "loss", "logits": "logits"}
    assert out_edges == {(num[v], k) for k, v in g.outputs.items()}
    assert '"%1 parameter fc1/W\\nf[3,4]"' in dot and '"%17 act_grad relu\\nf[N,4]"' in dot


def test_dot_parses_with_pydot():
    pydot = pytest.importorskip("pydot")
    g = mlp_training_graph()
    (parsed,) = pydot.graph_from_dot_data(printer.to_dot(g))
    assert len(parsed.get_edges()) == g.networkx().number_of_edges() + len(g.outputs)


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' not installed")
def test_dot_renders_with_graphviz():
    res = subprocess.run(["dot", "-Tsvg"], input=printer.to_dot(mlp_training_graph()),
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert "<svg" in res.stdout


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz 'dot' not installed")
def test_dot_escapes_quotes_and_backslashes_in_names():
    x = gc.input('x "raw"', (None, 3))
    W = gc.parameter("W\\1", (3, 2))
    g, _ = Graph.from_values({'out "y"': x @ W})
    dot = printer.to_dot(g, title='a "title"')
    assert r'x \"raw\"' in dot and r"W\\1" in dot
    res = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
