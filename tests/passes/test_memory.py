"""Memory plan: schedule constraints and slot sharing, against a brute-force liveness oracle
on random MLP-like graphs built through the public API."""

from __future__ import annotations

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

import graphc as gc
from graphc.autodiff import build_training
from graphc.ir.graph import Graph
from graphc.ir.node import TUPLE
from graphc.passes import optimize
from graphc.passes.memory import MemoryPlan, elems, plan_memory

ACTS = ["linear", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "prelu", "softmax"]
LOSSES = ["sce", "bce", "mse", "mae", "quantile", "none"]
OPTS = [gc.optim.SGD(0.1), gc.optim.SGD(0.1, momentum=0.9), gc.optim.Adam(0.01)]


@st.composite
def models(draw) -> Graph:
    x = gc.input("x", (None, draw(st.integers(1, 6))))
    h, hidden = x, []
    for i in range(draw(st.integers(1, 4))):
        act = draw(st.sampled_from(ACTS))
        w = draw(st.integers(1, 7))
        if hidden and draw(st.booleans()):
            prev = draw(st.sampled_from(hidden))
            if prev.shape == h.shape:
                h = h + prev  # skip connection: a hidden value used twice
        h = gc.dense(h, w, activation=act, name=f"l{i}",
                     use_bias=draw(st.booleans()))
        hidden.append(h)
    classes = draw(st.integers(1, 4))
    out = gc.dense(h, classes, name="out")
    loss = draw(st.sampled_from(LOSSES))
    if loss == "none":
        g, _ = Graph.from_values({"out": out, "hidden": h})
        return g
    if loss == "sce":
        value = gc.softmax_cross_entropy(out, gc.input("y", (None,), dtype="int64"))
    elif loss == "bce":
        value = gc.binary_cross_entropy(out, gc.input("t", (None, classes)))
    elif loss == "quantile":
        value = gc.quantile(out, gc.input("t", (None, classes)), q=0.3)
    else:
        value = getattr(gc, loss)(out, gc.input("t", (None, classes)))
    outputs = {"loss": value}
    if draw(st.booleans()):
        outputs["logits"] = out
    g, _ = Graph.from_values(outputs)
    return build_training(g, g.outputs["loss"], draw(st.sampled_from(OPTS)),
                          weight_decay=draw(st.sampled_from([0.0, 1e-3])))


def check_plan(g: Graph, plan: MemoryPlan) -> None:
    order = plan.schedule
    assert sorted(order) == sorted(g.nodes)
    pos = {n: i for i, n in enumerate(order)}
    for n in g.nodes:
        assert all(pos[i] < pos[n] for i in g.inputs(n)), "schedule is not topological"
    for name, uid in g.updates.items():
        param = g.inputs(uid)[0]
        assert g.node(param).get("name") == name
        for r in g.users(param):
            assert r == uid or pos[r] < pos[uid], f"update of {name} before a reader"

    # brute-force liveness: at every step, the set of live buffers and their slots
    end = len(order)
    spans = {}
    for n in g.nodes:
        node = g.node(n)
        if node.op in ("input", "parameter", "constant", "update") or node.dtype == TUPLE:
            assert n not in plan.slot_of
            continue
        assert n in plan.slot_of, f"{node.op} has no buffer"
        written = pos[g.inputs(n)[0]] if node.op == "getitem" else pos[n]
        last = max([pos[u] for u in g.users(n)] + [written])
        if n in g.outputs.values():
            last = end
        spans[n] = (written, last, plan.slot_of[n], elems(node.shape))
    for (n, what), slot in plan.scratch_of.items():
        spans[(n, what)] = (pos[n], pos[n], slot, plan.size_of[(n, what)])
    for n in g.nodes:
        if g.node(n).op == "dense_bwd" and g.node(n).get("act") != "linear":
            assert (n, "dz") in plan.scratch_of
    for step in range(end + 1):
        live = [(k, s) for k, (lo, hi, s, _) in spans.items() if lo <= step <= hi]
        slots = [s for _, s in live]
        assert len(slots) == len(set(slots)), f"step {step}: live values share a slot: {live}"
    for batch in (0, 1, 7, 1000):
        for k, (_, _, slot, (a, b)) in spans.items():
            assert plan.slot_elems(slot, batch) >= a * batch + b
        peak = plan.peak_bytes(batch, 4)
        assert plan.live_bytes_max(batch, 4) <= peak <= plan.total_bytes_unshared(batch, 4)
        offsets, total = plan.offsets(batch)
        assert total * 4 >= peak and offsets == sorted(offsets)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(models())
def test_random_graphs(g):
    o, _ = optimize(g, verify=True)
    check_plan(o, o.meta["memory_plan"])
    check_plan(g, plan_memory(g))  # the plan works on unoptimised graphs too


def test_deep_mlp_shares_buffers():
    x = gc.input("x", (None, 32))
    h = x
    for i in range(6):
        h = gc.dense(h, 32, activation="relu", name=f"fc{i}")
    loss = gc.softmax_cross_entropy(gc.dense(h, 10, name="out"), gc.input("y", (None,), "int64"))
    g, _ = Graph.from_values({"loss": loss})
    o, report = optimize(build_training(g, g.outputs["loss"], gc.optim.SGD(0.1)), verify=True)
    plan = o.meta["memory_plan"]
    check_plan(o, plan)
    assert plan.peak_bytes(64, 4) < 0.75 * plan.total_bytes_unshared(64, 4)
    # updates run as soon as their gradient exists, so weight gradients share memory too
    assert plan.peak_bytes(1, 4) < 0.5 * plan.total_bytes_unshared(1, 4)
    assert plan.peak_bytes(1, 4) <= 1.1 * plan.live_bytes_max(1, 4)
    assert plan.num_slots < len(plan.slot_of)
    assert "memory_plan" in report.to_text()


def test_update_waits_for_every_reader_of_its_parameter():
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 3))
    h = gc.dense(x, 3, activation="tanh", name="fc1")
    loss = gc.mse(gc.dense(h, 3, activation="tanh", name="fc2"), t)
    g, _ = Graph.from_values({"loss": loss})
    o, _ = optimize(build_training(g, g.outputs["loss"], gc.optim.SGD(0.1)))
    plan = o.meta["memory_plan"]
    pos = {n: i for i, n in enumerate(plan.schedule)}
    W2 = o.by_name("parameter")["fc2/W"]
    (bwd,) = [u for u in o.users(W2) if o.node(u).op == "dense_bwd"]
    assert pos[bwd] < pos[o.updates["fc2/W"]]


def test_elems():
    assert elems(()) == (0, 1)
    assert elems((None, 5)) == (5, 0)
    assert elems((3, 4)) == (0, 12)
    assert elems((None,)) == (1, 0)
