"""Backward dense fusion and loss fusion: before() vs expected(), and refusals."""

from __future__ import annotations

import pytest

import graphc as gc
from graphc.passes.fuse_dense import fuse_dense
from graphc.passes.fuse_dense_bwd import fuse_dense_bwd
from graphc.passes.fuse_loss import fuse_loss
from graphc.passes.simplify import simplify

from .helpers import check_rewrite, graph_of, op, ops, training

SGD = gc.optim.SGD(0.1)


def update(p, g, name):
    return op("update", p, g, param=name, wd=0.0, **SGD.update_attrs())


def refusals(g):
    return [f for f in g.meta.get("_pass_fusions", []) if not f.accepted]


def one_layer():
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 4))
    W = gc.parameter("W", (3, 4))
    b = gc.parameter("b", (4,), init="zeros")
    return x, t, W, b


def test_dense_bwd_relu_expected():
    x, t, W, b = one_layer()
    before = fuse_dense(training(gc.mse(gc.relu(gc.matmul(x, W) + b), t)))
    d = op("dense", x, W, b, act="relu")
    gy = op("loss_grad", d, t, gc.constant(1.0), kind="mse", wrt="pred")
    B = op("dense_bwd", x, W, d, gy, act="relu", from_y=True, outs=("dW", "db"))
    want = graph_of({"loss": gc.mse(d, t)},
                    {"W": update(W, op("getitem", B, index=0), "W"),
                     "b": update(b, op("getitem", B, index=1), "b")})
    after = check_rewrite(fuse_dense_bwd, before, want)
    (rec,) = after.meta["_pass_fusions"]
    assert rec.to_text() == "W: act_grad+matmul(dW)+sum_to(db) → dense_bwd[relu](dW, db)"


def test_dense_bwd_prelu_two_layers_expected():
    x, t, W, b = one_layer()
    V = gc.parameter("V", (4, 4))
    a = gc.parameter("a", (4,), init="constant", value=0.25)
    h = op("prelu", gc.matmul(x, W) + b, a)
    before = fuse_dense(training(gc.mse(gc.matmul(h, V), t)))
    D = op("dense", x, W, b, a, act="prelu", save_z=True)
    y, z = op("getitem", D, index=0), op("getitem", D, index=1)
    out = op("dense", y, V, act="linear", has_bias=False)
    g_out = op("loss_grad", out, t, gc.constant(1.0), kind="mse", wrt="pred")
    B2 = op("dense_bwd", y, V, out, g_out, act="linear", from_y=True, outs=("dx", "dW"))
    gy = op("getitem", B2, index=0)
    B1 = op("dense_bwd", x, W, z, gy, a, act="prelu", from_y=False, outs=("dW", "db", "da"))
    want = graph_of({"loss": gc.mse(out, t)}, {
        "V": update(V, op("getitem", B2, index=1), "V"),
        "W": update(W, op("getitem", B1, index=0), "W"),
        "b": update(b, op("getitem", B1, index=1), "b"),
        "a": update(a, op("getitem", B1, index=2), "a")})
    check_rewrite(fuse_dense_bwd, before, want)


@pytest.mark.parametrize("act,alpha", [("softplus", None), ("leaky_relu", -0.2), ("elu", -0.5),
                                       ("elu", 1.0), ("sigmoid", None), ("tanh", None)])
def test_dense_bwd_from_z_or_y(act, alpha):
    x, t, _, _ = one_layer()
    h = gc.dense(x, 4, activation=act, alpha=alpha, name="fc1")
    before = fuse_dense(training(gc.mse(gc.dense(h, 4, name="fc2"), t)))
    after = check_rewrite(fuse_dense_bwd, before, None)
    (b1,) = [n for n in after.nodes if after.node(n).op == "dense_bwd" and after.node(n).name == "fc1"]
    saved = after.node(after.inputs(b1)[2])
    assert after.node(b1).get("from_y") is (saved.op == "dense")
    assert after.node(b1).get("outs") == ("dW", "db")
    assert not {"act_grad", "matmul", "sum_to"} & set(ops(after))


def test_dense_bwd_refuses_when_dz_is_read_elsewhere():
    x, t, W, b = one_layer()
    before = fuse_dense(training(gc.mse(gc.tanh(gc.matmul(x, W) + b), t)))
    (dz,) = [n for n in before.nodes if before.node(n).op == "act_grad"]
    before.outputs["dz"] = dz
    after = check_rewrite(fuse_dense_bwd, before, None)
    (r,) = refusals(after)
    assert "also read by a graph output" in r.reason
    assert "act_grad" in ops(after)


def test_dense_bwd_refuses_tied_linear_weights():
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 3))
    W = gc.parameter("W", (3, 3))
    before = fuse_dense(training(gc.mse(gc.matmul(gc.matmul(x, W), W), t)))
    after = check_rewrite(fuse_dense_bwd, before, None)
    assert any("shared by 2 layers" in r.reason for r in refusals(after))


def test_dense_bwd_tied_weights_with_activation_still_fuse():
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 3))
    W = gc.parameter("W", (3, 3))
    h = gc.tanh(gc.matmul(x, W))
    before = fuse_dense(training(gc.mse(gc.sigmoid(gc.matmul(h, W)), t)))
    after = check_rewrite(fuse_dense_bwd, before, None)
    assert ops(after).count("dense_bwd") == 2 and not refusals(after)


def test_dense_bwd_nothing_to_do_forward_only():
    x, t, W, b = one_layer()
    before = fuse_dense(graph_of({"y": gc.relu(gc.matmul(x, W) + b)}))
    after = check_rewrite(fuse_dense_bwd, before, before)
    assert not after.meta.get("_pass_fusions")


# --- loss fusion ------------------------------------------------------------------------

def test_sce_fusion_expected():
    x = gc.input("x", (None, 3))
    y = gc.input("y", (None,), dtype="int64")
    W = gc.parameter("W", (3, 4))
    before = training(gc.softmax_cross_entropy(gc.matmul(x, W), y))
    m = gc.matmul(x, W)
    F = op("sce_fused", m, y)
    dz = op("sce_bwd", op("getitem", F, index=1), y, gc.constant(1.0))
    want = graph_of({"loss": op("getitem", F, index=0)},
                    {"W": update(W, op("matmul", x, dz, ta=True), "W")})
    after = check_rewrite(fuse_loss, before, want)
    assert after.meta["_pass_fusions"][0].to_text().startswith(
        "loss: softmax_cross_entropy+sce_grad → sce_fused+sce_bwd")


def test_bce_fusion_expected():
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 4))
    W = gc.parameter("W", (3, 4))
    before = training(gc.binary_cross_entropy(gc.matmul(x, W), t))
    m = gc.matmul(x, W)
    F = op("bce_fused", m, t)
    dz = op("bce_bwd", op("getitem", F, index=1), t, gc.constant(1.0))
    want = graph_of({"loss": op("getitem", F, index=0)},
                    {"W": update(W, op("matmul", x, dz, ta=True), "W")})
    check_rewrite(fuse_loss, before, want)


def test_onehot_sce_fusion_keeps_target_gradient():
    # targets that depend on a parameter get their own (unfused) gradient
    x = gc.input("x", (None, 3))
    W = gc.parameter("W", (3, 4))
    V = gc.parameter("V", (3, 4))
    before = training(gc.softmax_cross_entropy(gc.matmul(x, W), gc.softmax(gc.matmul(x, V))))
    after = check_rewrite(fuse_loss, before, None)
    assert "sce_fused" in ops(after) and "loss_grad" in ops(after)


def test_loss_fusion_refused_forward_only():
    x = gc.input("x", (None, 3))
    y = gc.input("y", (None,), dtype="int64")
    before = graph_of({"loss": gc.softmax_cross_entropy(gc.matmul(x, gc.parameter("W", (3, 4))), y)})
    after = check_rewrite(fuse_loss, before, before)
    (r,) = refusals(after)
    assert "forward only" in r.reason


def test_other_losses_are_left_alone():
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 4))
    W = gc.parameter("W", (3, 4))
    for loss in (gc.mse, gc.mae, gc.quantile):
        before = training(loss(gc.matmul(x, W), t))
        check_rewrite(fuse_loss, before, before)


def test_transposed_weight_product_is_not_taken_for_a_layer_backward():
    # x @ W.T: its gradient w.r.t. x is a plain matmul(g, W), which fuse_dense makes a
    # dense[linear]; the forward x @ W.T then looks like that "layer's" dx product.
    # Absorbing it would make a cycle, so the backward fusion must refuse.
    x = gc.input("x", (None, 4))
    t = gc.input("t", (None, 3))
    W = gc.parameter("W", (3, 4))
    h = gc.dense(x, 4, activation="tanh", name="fc1")
    before = fuse_dense(simplify(training(gc.mse(gc.matmul(h, gc.transpose(W)), t))))
    after = check_rewrite(fuse_dense_bwd, before, None)
    assert any("cycle" in r.reason for r in refusals(after))
    assert after.is_acyclic()
