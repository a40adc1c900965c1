"""Small example models for the command line, e.g.

    graphc dump examples/mlp.py:mlp --fusion-report
    graphc dump examples/mlp.py:mlp --stage grad --format svg -o mlp.svg

Each function takes no arguments and returns the loss tensor, or a dict of
named output tensors that may include "loss".
"""

import graphc as gc


def mlp():
    """A 3-layer MLP classifier (digits-sized: 64 features, 10 classes)."""
    x = gc.input("x", (None, 64))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 32, activation="relu", name="fc1")
    h = gc.dense(h, 32, activation="tanh", name="fc2")
    logits = gc.dense(h, 10, name="fc3")
    return gc.softmax_cross_entropy(logits, y)


def mlp_outputs():
    """The same classifier returning its logits and probabilities as well as the loss."""
    x = gc.input("x", (None, 64))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 32, activation="relu", name="fc1")
    h = gc.dense(h, 32, activation="tanh", name="fc2")
    logits = gc.dense(h, 10, name="fc3")
    return {"loss": gc.softmax_cross_entropy(logits, y), "logits": logits,
            "probs": gc.softmax(logits)}


def regressor():
    """A softplus / PReLU regressor (both save z for the backward)."""
    x = gc.input("x", (None, 8))
    t = gc.input("t", (None, 1))
    h = gc.dense(x, 16, activation="softplus", name="fc1")
    h = gc.dense(h, 16, activation="prelu", name="fc2")
    out = gc.dense(h, 1, name="out")
    return gc.mse(out, t)


def residual():
    """A residual block: the skip connection keeps the second activation out of dense."""
    x = gc.input("x", (None, 16))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 16, activation="relu", name="fc1")
    W = gc.parameter("fc2/W", (16, 16))
    b = gc.parameter("fc2/b", (16,), init="zeros")
    h = gc.relu(gc.matmul(h, W) + b + h)
    return gc.softmax_cross_entropy(gc.dense(h, 4, name="out"), y)
