"""Random MLP-like graphs through the whole pipeline with the numerical guard on:
every pass must keep outputs and update gradients equal (and the graph verified)."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

import graphc as gc
from graphc.autodiff import build_training
from graphc.ir.graph import Graph
from graphc.passes import optimize

from .test_memory import ACTS, check_plan, models


@st.composite
def odd_models(draw) -> Graph:
    """Shapes fusion must be careful with: tied/transposed weights, l2, reused hiddens."""
    k = draw(st.integers(1, 5))
    x = gc.input("x", (None, k))
    W = gc.parameter("W", (k, draw(st.integers(1, 5))))
    h = gc.activation(gc.matmul(x, W) + gc.parameter("b", (W.shape[1],), init="zeros"),
                      draw(st.sampled_from(ACTS)))
    pick = draw(st.sampled_from(["tied", "reuse", "scale", "plain"]))
    if pick == "tied":
        out = gc.matmul(h, gc.transpose(W))  # back to k features through W.T
    elif pick == "reuse":
        out = gc.dense(h * h + h, k, activation=draw(st.sampled_from(ACTS)), name="o")
    elif pick == "scale":
        out = gc.dense(h, k, name="o") * 2.0 - 0.0
    else:
        out = gc.dense(h, k, name="o")
    loss = gc.mse(out, x)
    if draw(st.booleans()):
        loss = loss + 0.01 * gc.l2(W)
    g, _ = Graph.from_values({"loss": loss})
    return build_training(g, g.outputs["loss"], gc.optim.SGD(0.1),
                          clip_norm=draw(st.sampled_from([None, 1.0])))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(models(), odd_models()))
def test_pipeline_keeps_numerics(g):
    o, report = optimize(g, verify=True, guard=True)
    assert o.is_acyclic()
    check_plan(o, o.meta["memory_plan"])
    for p in report.passes[:-1]:
        assert p.guard is not None
