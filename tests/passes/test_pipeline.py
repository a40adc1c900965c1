"""The whole pipeline: MLPs with every activation and loss, skip connections, the
optimize() API (verification, printing, the numerical guard, the report)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphc as gc
from graphc.errors import GraphError, VerifyError
from graphc.ir.graph import Graph
from graphc.ir.verify import verify
from graphc.passes import PIPELINE, optimize, pass_names
from graphc.passes.guard import check_pass
from graphc.passes.memory import MemoryPlan

from .helpers import canonical, graph_of, training

ACTS = ["linear", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "prelu"]
LOSSES = ["sce", "sce_onehot", "bce", "mse", "mae", "quantile"]
BARE = {"matmul", "add", "act_grad", "sum_to", "prelu_da", "sce_grad", "softmax_cross_entropy",
        "binary_cross_entropy", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "prelu"}


def mlp(act: str, loss: str, alpha=None, widths=(6, 5)):
    x = gc.input("x", (None, 4))
    h = x
    for i, w in enumerate(widths):
        h = gc.dense(h, w, activation=act, alpha=alpha, name=f"fc{i + 1}")
    out = gc.dense(h, 3, name="out")
    if loss == "sce":
        return gc.softmax_cross_entropy(out, gc.input("y", (None,), dtype="int64"))
    if loss == "sce_onehot":
        return gc.softmax_cross_entropy(out, gc.input("y", (None, 3)))
    t = gc.input("t", (None, 3))
    if loss == "bce":
        return gc.binary_cross_entropy(out, t)
    if loss == "quantile":
        return gc.quantile(out, t, q=0.8)
    return getattr(gc, loss)(out, t)


def compute_nodes(g: Graph) -> int:
    """Nodes that do work: getitem only names a tuple element."""
    return sum(g.node(n).op != "getitem" for n in g.nodes)


@pytest.mark.parametrize("act,loss", list(itertools.product(ACTS, LOSSES)))
def test_mlp_is_fully_fused(act, loss):
    t = training(mlp(act, loss))
    o, report = optimize(t, verify=True, guard=True)
    left = {o.node(n).op for n in o.nodes} & BARE
    assert not left, report.fusion_text()
    assert compute_nodes(o) < compute_nodes(t)
    assert sum(o.node(n).op == "dense" for n in o.nodes) == 3
    assert sum(o.node(n).op == "dense_bwd" for n in o.nodes) == 3
    assert not [f for f in report.fusions if not f.accepted]
    if act not in ("linear", "softplus", "prelu"):  # tuples add getitems, but these shrink
        assert len(o) < len(t)
    assert isinstance(o.meta["memory_plan"], MemoryPlan)


@pytest.mark.parametrize("act,alpha", [("leaky_relu", -0.1), ("leaky_relu", 0.0), ("elu", -0.5),
                                       ("elu", 0.0), ("leaky_relu", 0.3), ("elu", 2.0)])
def test_activation_parameters(act, alpha):
    o, report = optimize(training(mlp(act, "mse", alpha=alpha)), verify=True, guard=True)
    assert not {o.node(n).op for n in o.nodes} & BARE


@pytest.mark.parametrize("opt", [gc.optim.SGD(0.1, momentum=0.9), gc.optim.Adam(0.01),
                                 gc.optim.AdamW(0.01), gc.optim.RMSprop(0.01, centered=True)])
def test_optimizers_weight_decay_and_clipping(opt):
    from graphc.autodiff import build_training

    g, _ = Graph.from_values({"loss": mlp("relu", "sce")})
    t = build_training(g, g.outputs["loss"], opt, weight_decay=1e-3, clip_norm=1.0)
    o, _ = optimize(t, verify=True, guard=True)
    assert "clip_scale" in {o.node(n).op for n in o.nodes}
    left = {o.node(n).op for n in o.nodes} & BARE
    if isinstance(opt, gc.optim.AdamW):
        # AdamW's update holds its decoupled decay, so the L2 term of weight_decay joins
        # each weight gradient as clipped_g + wd * W: one add per weight, feeding its update.
        adds = [n for n in o.nodes if o.node(n).op == "add"]
        assert left == {"add"} and len(adds) == 3
        assert all(o.node(u).op == "update" for n in adds for u in o.users(n))
    else:
        assert not left


def test_l2_regulariser_is_simplified():
    x = gc.input("x", (None, 4))
    t = gc.input("t", (None, 3))
    out = gc.dense(gc.dense(x, 5, activation="tanh", name="fc1"), 3, name="fc2")
    W = [v for v in out.inputs[0].inputs if v.op == "parameter"][0]
    loss = gc.mse(out, t) + 0.01 * gc.l2(W)
    o, report = optimize(training(loss), verify=True, guard=True)
    ops = [o.node(n).op for n in o.nodes]
    assert "scale" in ops and "mul" not in ops
    assert "fold_constants" in report.to_text()


def test_pre_activation_skip_connection_is_refused_and_equal():
    x = gc.input("x", (None, 4))
    t = gc.input("t", (None, 4))
    W = gc.parameter("W", (4, 4))
    b = gc.parameter("b", (4,), init="zeros")
    z = gc.matmul(x, W) + b
    h = gc.relu(z) + z  # the pre-activation is used twice
    t_graph = training(gc.mse(gc.dense(h, 4, name="out"), t))
    o, report = optimize(t_graph, verify=True, guard=True)
    reasons = [f.reason for f in report.fusions if not f.accepted]
    assert any("pre-activation is also read by add" in r for r in reasons), reasons
    ops = [o.node(n).op for n in o.nodes]
    assert "relu" in ops and "act_grad" in ops  # kept separate, backward of relu too
    check_pass(t_graph, o, rtol=1e-9)


def test_residual_skip_connection_is_refused_and_equal():
    x = gc.input("x", (None, 4))
    t = gc.input("t", (None, 4))
    h1 = gc.dense(x, 4, activation="tanh", name="fc1")
    W = gc.parameter("fc2/W", (4, 4))
    h2 = gc.tanh(gc.matmul(h1, W) + gc.parameter("fc2/b", (4,), init="zeros") + h1)
    t_graph = training(gc.mse(gc.dense(h2, 4, name="out"), t))
    o, report = optimize(t_graph, verify=True, guard=True)
    refused = [f for f in report.fusions if not f.accepted]
    assert any(f.layer == "fc2" and "skip connection" in f.reason for f in refused), \
        report.fusion_text()
    check_pass(t_graph, o, rtol=1e-9)


def test_post_activation_skip_connection_fuses_fully():
    x = gc.input("x", (None, 4))
    t = gc.input("t", (None, 4))
    h1 = gc.dense(x, 4, activation="relu", name="fc1")
    h2 = gc.dense(h1, 4, activation="relu", name="fc2")
    t_graph = training(gc.mse(gc.dense(h1 + h2, 4, name="out"), t))
    o, report = optimize(t_graph, verify=True, guard=True)
    assert sum(o.node(n).op == "dense_bwd" for n in o.nodes) == 3
    assert not {o.node(n).op for n in o.nodes} & (BARE - {"add"})


def test_inference_graph():
    x = gc.input("x", (None, 4))
    logits = gc.dense(gc.dense(x, 8, activation="softplus", name="fc1"), 3, name="fc2")
    g = graph_of({"probs": gc.softmax(logits)})
    o, report = optimize(g, verify=True, guard=True)
    ops = sorted(o.node(n).op for n in o.nodes)
    assert ops == ["dense", "dense", "input", "parameter", "parameter", "parameter", "parameter",
                   "softmax"]
    assert any("softmax" in f.pattern for f in report.fusions if not f.accepted)


# --- optimize() -------------------------------------------------------------------------

def test_optimize_leaves_the_callers_graph_alone():
    t = training(mlp("tanh", "sce"))
    before = canonical(t)
    optimize(t, verify=True)
    assert canonical(t) == before
    verify(t)


def test_optimize_is_idempotent():
    o, _ = optimize(training(mlp("softplus", "bce")), verify=True)
    o2, report = optimize(o, verify=True, guard=True)
    assert canonical(o2) == canonical(o)
    assert not report.fusions


def test_report_fields_and_table():
    t = training(mlp("relu", "sce"))
    o, report = optimize(t, verify=True, guard=True)
    names = [p.name for p in report.passes]
    assert names == pass_names() + ["memory_plan"]
    assert report.passes[0].nodes_before == len(t)
    assert report.passes[-2].nodes_after == len(o)
    for p in report.passes[:-1]:
        assert p.seconds >= 0 and p.guard is not None and p.guard.max_rel <= 1e-9
    text = report.to_text()
    for name in names:
        assert name in text
    fusions = report.fusion_text()
    assert "fc1: matmul+add+relu → dense[relu]" in fusions
    assert "loss: softmax_cross_entropy+sce_grad → sce_fused+sce_bwd" in fusions
    assert "out: matmul(dx)+matmul(dW)+sum_to(db) → dense_bwd[linear](dx, dW, db)" in fusions


def test_print_after(capsys):
    t = training(mlp("relu", "mse"))
    optimize(t, print_after="fuse_dense")
    out = capsys.readouterr().out
    assert out.startswith("// after fuse_dense\ngraph {") and "dense(" in out
    assert out.count("// after") == 1
    seen = []
    _, report = optimize(t, print_after="all", emit=seen.append)
    assert len(seen) == len(PIPELINE)
    assert all(p.dump for p in report.passes[:-1])
    with pytest.raises(GraphError, match="no such pass"):
        optimize(t, print_after="fusion")


def _bad_numerics(g: Graph) -> Graph:
    """A broken pass: swaps tanh for sigmoid (shapes agree, values do not)."""
    g = g.copy()
    for n in g.nodes:
        if g.node(n).op == "tanh":
            g.set_node(n, g.node(n).replace(op="sigmoid"))
    return g


def _bad_shapes(g: Graph) -> Graph:
    """A broken pass: records a wrong shape."""
    g = g.copy()
    for n in g.nodes:
        if g.node(n).op == "tanh":
            g.set_node(n, g.node(n).replace(shape=(7, 7)))
    return g


def test_guard_names_the_pass():
    x = gc.input("x", (None, 3))
    g = graph_of({"y": gc.tanh(x) * 2.0})
    with pytest.raises(VerifyError, match="_bad_numerics"):
        optimize(g, guard=True, passes=[*PIPELINE[:2], _bad_numerics])
    o, _ = optimize(g, guard=False, passes=[_bad_numerics])  # unguarded: not noticed
    assert o is not None


def test_verify_names_the_pass():
    x = gc.input("x", (None, 3))
    g = graph_of({"y": gc.tanh(x) * 2.0})
    with pytest.raises(VerifyError, match="_bad_shapes"):
        optimize(g, verify=True, passes=[_bad_shapes])


def test_guard_handles_nan_and_inf():
    from graphc.passes.guard import compare

    a = {"o": np.array([1.0, np.nan, np.inf])}
    assert compare(a, {"o": np.array([1.0, np.nan, np.inf])}, 1e-9).max_abs == 0
    with pytest.raises(VerifyError, match="NaN"):
        compare(a, {"o": np.array([1.0, 2.0, np.inf])}, 1e-9)
    with pytest.raises(VerifyError, match="rtol"):
        compare(a, {"o": np.array([1.1, np.nan, np.inf])}, 1e-9)
