"""Build-time errors: the right class, both shapes, the op, and the user's own file:line."""

from __future__ import annotations

import re
import sys

import numpy as np
import pytest

import graphc as gc
from graphc.ir.graph import Graph
from graphc.ir.verify import verify

HERE = __file__


def _line() -> int:
    """The caller's line number (errors must point at the line that built the bad op)."""
    return sys._getframe(1).f_lineno


def _assert_here(err: Exception, line: int) -> None:
    """The message names this file and line, and no frame of graphc's own."""
    msg = str(err)
    assert f"(at {HERE}:{line})" in msg, msg
    for pkg in ("graphc", "frontends"):
        assert f"/{pkg}/" not in msg.replace(HERE, ""), msg


# --- shape mismatches ---------------------------------------------------------------------

def test_matmul_mismatch_names_shapes_op_and_line():
    x = gc.input("x", (None, 3))
    W = gc.parameter("W", (4, 2))
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); gc.matmul(x, W)  # noqa: E702
    msg = str(e.value)
    assert "matmul" in msg and "(N, 3)" in msg and "(4, 2)" in msg
    _assert_here(e.value, line)
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); x @ W  # noqa: E702, B018
    _assert_here(e.value, line)


@pytest.mark.parametrize("op", ["add", "sub", "mul"])
def test_broadcast_mismatch_names_shapes_op_and_line(op):
    x = gc.input("x", (None, 3))
    b = gc.parameter("b", (5,))
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); getattr(gc, op)(x, b)  # noqa: E702
    msg = str(e.value)
    assert re.search(rf"\b{op}\b", msg) and "(N, 3)" in msg and "(5,)" in msg, msg
    _assert_here(e.value, line)
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); b + x  # noqa: E702, B018
    _assert_here(e.value, line)


@pytest.mark.parametrize("loss", ["mse", "mae", "binary_cross_entropy", "quantile"])
def test_loss_shape_mismatch(loss):
    p = gc.input("p", (None, 3))
    t = gc.input("t", (None, 2))
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); getattr(gc, loss)(p, t)  # noqa: E702
    msg = str(e.value)
    assert loss in msg and "(N, 3)" in msg and "(N, 2)" in msg
    _assert_here(e.value, line)


def test_cross_entropy_label_shapes():
    z = gc.input("z", (None, 3))
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); gc.softmax_cross_entropy(z, gc.input("y", (None, 2), dtype="int64"))  # noqa: E702
    assert "(N,)" in str(e.value) and "(N, 2)" in str(e.value)
    _assert_here(e.value, line)
    with pytest.raises(gc.ShapeError, match=r"\(N, 3\).*\(N, 4\)"):
        gc.softmax_cross_entropy(z, gc.input("t", (None, 4)))


@pytest.mark.parametrize("shape", [(None,), (3,), (None, 3, 4)])
def test_dense_needs_a_matrix(shape):
    x = gc.input("x", shape)
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); gc.dense(x, 4, name="fc")  # noqa: E702
    assert "2-D" in str(e.value) and "fc" in str(e.value)
    _assert_here(e.value, line)


def test_reduction_axis_out_of_range():
    x = gc.input("x", (None, 3))
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); gc.sum(x, axis=2)  # noqa: E702
    _assert_here(e.value, line)
    with pytest.raises(gc.ShapeError):
        gc.mean(gc.input("t", (None, 2, 3)), axis=1)
    with pytest.raises(gc.ShapeError):
        gc.sum(gc.sum(x), axis=1)


@pytest.mark.parametrize("axis", [None, 0, -1])
def test_reducing_a_scalar_over_axis_0_or_minus_1(axis):
    """Like a 1-D tensor (and NumPy, PyTorch): a scalar reduces to itself, both spellings."""
    s = gc.sum(gc.input("x", (None, 3)))
    for fn in (gc.sum, gc.mean):
        t = fn(s, axis=axis)
        assert t.shape == () and t.node.get("axis") is None


def test_ops_restricted_to_matrices():
    t3 = gc.input("t3", (None, 2, 3))
    for fn in (gc.transpose, gc.softmax, gc.log_softmax):
        with pytest.raises(gc.ShapeError, match=r"\(N, 2, 3\)"):
            fn(t3)


# --- names and arguments --------------------------------------------------------------------

def test_unknown_activation_lists_the_valid_ones():
    x = gc.input("x", (None, 3))
    valid = ["linear", "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "softplus",
             "softmax", "log_softmax"]
    for call in (lambda: gc.dense(x, 4, activation="gelu"), lambda: gc.activation(x, "gelu")):
        with pytest.raises(gc.GraphError) as e:
            call()
        msg = str(e.value)
        assert "'gelu'" in msg
        for name in valid:
            assert name in msg, name
        assert HERE in msg


def test_duplicate_parameter_names_raise_at_compile():
    x = gc.input("x", (None, 3))
    a = gc.dense(x, 4, name="fc")
    b = gc.dense(a, 4, name="fc")  # a second fc/W (4, 4) and fc/b
    loss = gc.mean(b)
    with pytest.raises(gc.GraphError) as e:
        gc.compile(loss=loss, **OPTS)
    msg = str(e.value)
    assert "fc/W" in msg and "(3, 4)" in msg and "(4, 4)" in msg and HERE in msg
    # even with identical shapes and inits: two parameters, one name
    W1, W2 = gc.parameter("W", (3, 3)), gc.parameter("W", (3, 3))
    with pytest.raises(gc.GraphError, match="'W'"):
        gc.compile(loss=gc.sum(x @ W1 @ W2), **OPTS)
    with pytest.raises(gc.GraphError, match="'W'"):
        gc.function([x], [x @ W1 @ W2], **OPTS)
    with pytest.raises(gc.GraphError, match="'W'"):
        gc.grad(gc.sum(x @ W1 @ W2), [W1])


def test_reusing_one_parameter_is_fine():
    x = gc.input("x", (None, 3))
    W = gc.parameter("W", (3, 3))
    net = gc.compile(loss=gc.sum(x @ W @ W), **OPTS)
    assert list(net.params) == ["W"]


@pytest.mark.parametrize("build", [
    lambda x, y: x + y, lambda x, y: y - x, lambda x, y: gc.mul(x, y), lambda x, y: y * 2.0,
    lambda x, y: gc.mse(x, y), lambda x, y: gc.relu(y), lambda x, y: gc.matmul(y, gc.transpose(x)),
])
def test_mixed_dtypes_raise(build):
    x = gc.input("x", (None, 3))
    y = gc.input("y", (None, 3), dtype="int64")
    with pytest.raises(gc.ShapeError, match="int64"):
        build(x, y)


def test_bad_leaves():
    with pytest.raises(gc.ShapeError):
        gc.input("x", (None, -3))
    with pytest.raises(gc.GraphError, match="dtype"):
        gc.input("x", (None, 3), dtype="complex64")
    with pytest.raises(gc.GraphError, match="glorot_uniform"):
        gc.parameter("W", (3, 3), init="glorot")
    with pytest.raises(gc.ShapeError, match="fixed shape"):
        gc.parameter("W", (None, 3))
    with pytest.raises(gc.GraphError, match=r"\(0, 1\)"):
        gc.quantile(gc.input("p", (None, 1)), gc.input("t", (None, 1)), q=1.5)
    with pytest.raises(gc.ShapeError, match="positive int"):
        gc.dense(gc.input("x", (None, 3)), 0)


def test_batch_dependent_parameter_shapes_raise_shape_errors():
    """A parameter shaped by a batch (None) dimension is a ShapeError, not a TypeError."""
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); gc.prelu(gc.input("v", (None,)))  # noqa: E702
    _assert_here(e.value, line)
    with pytest.raises(gc.ShapeError) as e:
        line = _line(); gc.dense(gc.input("v", (None, None)), 3)  # noqa: E702
    _assert_here(e.value, line)


@pytest.mark.parametrize("call", [
    lambda: gc.input("x", (None, -3)),
    lambda: gc.input("x", (None, 3), dtype="complex64"),
    lambda: gc.parameter("W", (3, 3), init="glorot"),
    lambda: gc.parameter("W", (None, 3)),
    lambda: gc.quantile(gc.input("p", (None, 1)), gc.input("t", (None, 1)), q=1.5),
    lambda: gc.dense(gc.input("x", (None, 3)), 0),
    lambda: gc.input("x", (None, 3)) / gc.input("y", (None, 3)),
    lambda: gc.input("x", (None, 3)) + "one",
    lambda: gc.constant("one"),
], ids=["input_dims", "dtype", "init", "param_shape", "quantile_q", "units", "div", "add_str",
        "constant_str"])
def test_every_build_error_is_a_graphc_error_naming_the_user_line(call):
    with pytest.raises(gc.GraphcError) as e:
        call()
    assert HERE in str(e.value), str(e.value)


# --- the verifier ---------------------------------------------------------------------------

OPTS = dict(backend="reference", dtype="float64")


def _training_graph():
    from graphc.autodiff import build_training

    x = gc.input("x", (None, 3))
    y = gc.input("y", (None,), dtype="int64")
    logits = gc.dense(gc.dense(x, 4, activation="relu", name="fc1"), 2, name="fc2")
    g, _ = Graph.from_values({"loss": gc.softmax_cross_entropy(logits, y)})
    return build_training(g, g.outputs["loss"], gc.optim.SGD(lr=0.1))


def test_verifier_accepts_a_good_graph():
    verify(_training_graph())


def test_verifier_catches_a_tampered_shape():
    g = _training_graph()
    add = g.find("add")[0]
    node = g.node(add)
    assert node.shape == (None, 4)
    g.set_node(add, node.replace(shape=(None, 5)))
    with pytest.raises(gc.VerifyError) as e:
        verify(g, "tampering")
    msg = str(e.value)
    assert "add" in msg and "(N, 5)" in msg and "(N, 4)" in msg and "tampering" in msg


def test_verifier_catches_a_tampered_parameter():
    g = _training_graph()
    W = g.by_name("parameter")["fc1/W"]
    g.set_node(W, g.node(W).replace(shape=(7, 4)))
    with pytest.raises(gc.VerifyError, match="matmul"):
        verify(g)


def test_verifier_catches_a_dtype_change_and_a_dangling_output():
    g = _training_graph()
    relu = g.find("relu")[0]
    g.set_node(relu, g.node(relu).replace(dtype="int64"))
    with pytest.raises(gc.VerifyError, match="relu"):
        verify(g)
    g = _training_graph()
    g.outputs["ghost"] = 10_000
    with pytest.raises(gc.VerifyError, match="ghost"):
        verify(g)


def test_verifier_catches_wrong_arity_and_cycles():
    g = _training_graph()
    relu = g.find("relu")[0]
    g.set_inputs(relu, g.inputs(relu) * 2)
    with pytest.raises(gc.VerifyError, match="relu"):
        verify(g)
    g = _training_graph()
    add = g.find("add")[0]
    relu = g.find("relu")[0]
    g.set_inputs(add, [relu, g.inputs(add)[1]])
    with pytest.raises(gc.VerifyError, match="cycle"):
        verify(g)


def test_feed_errors_at_run_time():
    x = gc.input("x", (None, 3))
    f = gc.function([x], [gc.relu(x)], **OPTS)
    with pytest.raises(gc.FeedError, match=r"\(N, 3\)"):
        f(np.zeros((2, 4)))


def _fused_layer():
    x = gc.input("x", (None, 3))
    g, _ = Graph.from_values({"x": x})
    W = g.add(gc.parameter("W", (3, 4)).node)
    b = g.add(gc.parameter("b", (4,), init="zeros").node)
    d = g.make("dense", [g.outputs["x"], W, b], act="tanh", save_z=True)
    y = g.make("getitem", [d], index=0)
    g.outputs["y"] = y
    verify(g)
    return g, W, b, d, y


def test_verifier_reports_a_shape_rule_that_crashes():
    """A tampered attribute makes a shape rule fail with a plain Python error."""
    g, W, b, d, y = _fused_layer()
    g.set_node(y, g.node(y).replace(attrs={"index": None}))
    with pytest.raises(gc.VerifyError, match=r"getitem.*TypeError"):
        verify(g, "tampering")


@pytest.mark.parametrize("what", ["W", "b", "arity"])
def test_verifier_checks_fused_layers_like_the_ops_they_replace(what):
    g, W, b, d, y = _fused_layer()
    if what == "W":
        g.set_node(W, g.node(W).replace(shape=(5, 4)))  # x @ W no longer defined
    elif what == "b":
        g.set_node(b, g.node(b).replace(shape=(3,)))
    else:
        g.set_inputs(d, g.inputs(d)[:2])  # the node still says has_bias
    with pytest.raises(gc.VerifyError, match="dense"):
        verify(g)


def test_division_by_numpy_scalars_like_multiplication():
    x = gc.input("x", (None, 2))
    for d in (2, 2.0, np.float32(2), np.float64(2), np.int64(2)):
        t = x / d
        assert t.op == "scale" and t.node.get("factor") == 0.5


def _grad_graph(loss_fn):
    x = gc.input("x", (None, 3))
    t = gc.input("t", (None, 3))
    loss = loss_fn(gc.tanh(x), t)
    dx, = gc.grad(loss, [x])
    g, _ = Graph.from_values({"dx": dx})
    verify(g)
    return g


@pytest.mark.parametrize("op, loss_fn", [
    ("sce_grad", gc.softmax_cross_entropy), ("loss_grad", gc.mse),
    ("loss_grad", gc.binary_cross_entropy), ("expand", lambda p, t: gc.mean(p * t)),
])
def test_verifier_checks_gradient_nodes(op, loss_fn):
    """Rewire a gradient node's cotangent to a non-scalar: its own rule must object."""
    g = _grad_graph(loss_fn)
    n = g.find(op)[0]
    ins = g.inputs(n)
    tanh = g.find("tanh")[0]
    g.set_inputs(n, [*ins[:-1], tanh] if op != "expand" else [tanh, ins[1]])
    with pytest.raises(gc.VerifyError, match=op):
        verify(g)
