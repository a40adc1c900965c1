"""Hypothesis strategies for random networks, built through graphc's public API.

A drawn :class:`Case` *is* Python source: ``model()`` builds the network with
``gc.*`` calls and returns ``{"loss": ..., <outputs>}``; ``feeds(rng, n)``
draws a batch of n rows.  The fuzzers ``exec`` that source, so the
reproduction printed on a failure is exactly the code that ran (and
``graphc dump repro.py:model`` accepts it).

What a case covers:

* depth 1-6 dense layers, widths 1-96 (small ones, multiples of 8 and
  anything in between), every activation -- linear, relu, sigmoid, tanh,
  leaky_relu (alpha incl. 0 and negative), elu (alpha incl. 0 and negative),
  softplus, prelu (slope init incl. negative), and softmax / log_softmax as a
  hidden op now and then;
* three ways to write a layer: ``gc.dense(..., activation=...)``,
  ``gc.dense`` followed by a separate activation call, and the low-level
  ``x @ W + b`` with ``gc.parameter`` (operand order varied, with or without
  bias, assorted inits), plus tied weights (``h @ W_prev.T``);
* an extra head the loss does not use (zero gradients), an input as an output;
* hidden values used twice, which fusion must refuse to fuse across: skip
  connections before the activation (``act(dense(h) + h)``) and after it
  (``act(dense(h)) + h``), extra outputs exposing a hidden layer or a
  pre-activation, elementwise tails (``z * sigmoid(z)``, ``h * h``, scaling,
  negation) and an l2 penalty on a weight or on an activation;
* every loss: softmax cross-entropy with int labels, one-hot or soft targets,
  binary cross-entropy, mse, mae, quantile (random q), and an mse written
  with primitive ops; any activation on the output layer now and then;
* every optimizer: SGD (plain, momentum, dampening, Nesterov), Adam, AdamW,
  RMSprop (plain, momentum, centered, both), with weight_decay and clip_norm
  sometimes;
* float32 and float64, batch sizes including 0 and 1 (two steps may use
  different batch sizes), feature scales from 0.1 to 10, and now and then a
  NaN or an inf in the features.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field

import hypothesis.strategies as st

ACTS = ("linear", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "prelu")
HIDDEN_EXTRA = ("softmax", "log_softmax")
LOSSES = ("sce_int", "sce_onehot", "sce_soft", "bce", "mse", "mae", "quantile", "mse_prims")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "rmsprop_centered",
              "rmsprop_momentum", "rmsprop_centered_momentum")

# Drawn with more weight where bugs hide: tiny widths, multiples of 8 and odd sizes.
widths = st.one_of(st.integers(1, 9), st.sampled_from([8, 16, 24, 32, 48, 64, 96]),
                   st.integers(1, 96))
batch_sizes = st.one_of(st.sampled_from([0, 1, 1, 2, 3, 5, 8]), st.integers(1, 40))
# Compilation time grows with depth, so shallow graphs are drawn more often.
DEPTHS = (1, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 4, 5, 6)
ALPHAS = {
    "leaky_relu": [None, 0.2, 0.0, -0.5, 1.0, 1.5],
    "elu": [None, 0.5, 0.0, -1.0, 2.0],
    "prelu": [None, -0.5, 0.0, 1.0],
}
INITS = ("glorot_uniform", "he_normal", "normal", "uniform", "torch_linear", "xavier_normal")


@dataclass
class Case:
    """One fuzz case: the source of ``model()`` and ``feeds()`` plus how to train it."""

    model_src: str
    feeds_src: str
    dtype: str
    seed: int
    batches: tuple[int, ...]          # [run / gradients, step 1, step 2] batch sizes
    optimizer: str                    # a gc.optim constructor call
    train: dict                       # weight_decay / clip_norm for gc.compile
    depth: int
    grad_inputs: tuple[str, ...]      # float inputs to differentiate w.r.t. as well
    tags: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        """Importable source defining ``model`` and ``feeds``."""
        return ("import numpy as np\n\nimport graphc as gc\n\n\n" + self.model_src + "\n\n"
                + self.feeds_src)

    def snippet(self) -> str:
        """A self-contained script that rebuilds the network and runs both backends."""
        train = "".join(f", {k}={v!r}" for k, v in self.train.items())
        return f'''{self.source}
from graphc.frontends.symbolic import leaves


def _leaves(tensors, op):
    """The gc.input / gc.parameter tensors that ``tensors`` depend on, sorted by name."""
    return [t for _, t in sorted(leaves(list(tensors), op).items())]


if __name__ == "__main__":
    rng = np.random.default_rng({self.seed})
    batches = [feeds(rng, n) for n in {list(self.batches)!r}]
    results = {{}}
    for backend in ("compiled", "reference"):
        m = model()
        loss = m.pop("loss")
        inputs = _leaves([loss, *m.values()], "input")
        wrt = _leaves([loss, *m.values()], "parameter")  # incl. unused by the loss: zeros
        wrt += [t for t in inputs if t.node.get("name") in {list(self.grad_inputs)!r}]
        f = gc.function(inputs, [loss, *gc.grad(loss, wrt)], dtype={self.dtype!r}, seed={self.seed},
                        backend=backend)
        net = gc.compile(loss=loss, outputs=m, optimizer={self.optimizer}, dtype={self.dtype!r},
                         seed={self.seed}, backend=backend{train})
        names = ["loss", *(f"gradient of {{t.node.get('name')}}" for t in wrt)]
        r = dict(zip(names, f(*(batches[0][t.node.get("name")] for t in inputs))))
        r.update({{f"run: {{k}}": v for k, v in net.run(batches[0]).items()}})
        r.update({{f"step {{i}}: loss": net.step(b) for i, b in enumerate(batches[1:], 1)}})
        r.update({{f"after the steps: {{k}}": v for k, v in net.params.items()}})
        results[backend] = r
    for k, want in results["reference"].items():
        got, want = np.asarray(results["compiled"][k], float), np.asarray(want, float)
        nan = "" if np.array_equal(np.isnan(got), np.isnan(want)) else "  NaN in different places"
        err = np.abs(np.where(got == want, 0, got - want))
        print(f"{{k:32}} max |compiled - reference| {{np.nanmax(err, initial=0):.3g}}"
              f" (max |reference| {{np.nanmax(np.abs(want), initial=0):.3g}}){{nan}}")
'''


def case(model: str, feeds: str, *, dtype: str = "float64", batches=(3, 4, 2),
         optimizer: str = "gc.optim.SGD(lr=0.1)", train: dict | None = None, depth: int = 1,
         grad_inputs: tuple[str, ...] = (), seed: int = 0) -> Case:
    """A fixed case from hand-written ``model()`` and ``feeds(rng, n)`` sources (indented
    as in a test), for regression tests and the harness's own tests."""
    return Case(textwrap.dedent(model).strip() + "\n", textwrap.dedent(feeds).strip() + "\n",
                dtype, seed, tuple(batches), optimizer, train or {}, depth, grad_inputs,
                ["regression"])


class _Writer:
    """Accumulates the lines of ``model()``."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.weights: list[tuple[str, int, int]] = []   # low-level W variables: (var, in, out)
        self.tags: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append("    " + line)


def _alpha_arg(act: str, alpha) -> str:
    if alpha is None:
        return ""
    return {"leaky_relu": f", alpha={alpha!r}", "elu": f", alpha={alpha!r}",
            "prelu": f", init={alpha!r}"}[act]


def _apply_act(draw, w: _Writer, act: str, alpha, z: str, name: str) -> str:
    """Source of act(z) using the function API (gc.relu(z), gc.activation(z, ...), ...)."""
    if act == "linear":
        return z
    if draw(st.booleans()):
        a = "" if alpha is None else f", alpha={alpha!r}"
        return f'gc.activation({z}, "{act}"{a}, layer="{name}")'
    if act == "prelu":
        return f'gc.prelu({z}, name="{name}"{_alpha_arg(act, alpha)})'
    return f"gc.{act}({z}{_alpha_arg(act, alpha)})"


def _layer(draw, w: _Writer, i: int, h: str, width: int, units: int, act: str, alpha,
           final: bool) -> tuple[str, int]:
    """Emit layer i reading variable h (width features); returns (variable, units)."""
    name = f"l{i}"
    skip = None
    if not final and draw(st.integers(0, 5)) == 0:
        skip = draw(st.sampled_from(["pre", "post"]))
        units = width
    # Tied weights: an earlier low-level W (or its transpose) that fits this layer's input.
    fits = [(f"{v}.T", a) for v, a, b in w.weights if b == width]
    fits += [(v, b) for v, a, b in w.weights if a == width]
    fits = [(e, u) for e, u in fits if (skip is None or u == width) and (not final or u == units)]
    tie = None
    if fits and draw(st.integers(0, 2)) == 0:
        tie, units = draw(st.sampled_from(fits))
        style = "low"
    else:
        style = draw(st.sampled_from(["dense", "split", "low"]))
    w.tags.append(f"style:{style}")
    zvar = f"z{i}"
    if style in ("dense", "split"):
        bias = draw(st.sampled_from(["", "", ", use_bias=False", ', bias_init="normal"']))
        init = draw(st.sampled_from(["", "", f', init="{draw(st.sampled_from(INITS))}"']))
        if style == "dense" and skip != "pre":
            a = "" if alpha is None else f", alpha={alpha!r}"
            actarg = f', activation="{act}"' if act != "linear" or draw(st.booleans()) else ""
            w(f'h{i} = gc.dense({h}, {units}{actarg}{a}, name="{name}"{bias}{init})')
            out = f"h{i}"
        else:
            w(f'{zvar} = gc.dense({h}, {units}, name="{name}"{bias}{init})')
            z = zvar
            if skip == "pre":
                z = f"{zvar} + {h}"
                w.tags.append("skip:pre")
            w(f"h{i} = {_apply_act(draw, w, act, alpha, z, name)}")
            out = f"h{i}"
    else:
        if tie is not None:
            wexpr = tie
            if tie.endswith(".T") and draw(st.booleans()):
                wexpr = f"gc.transpose({tie[:-2]})"
            w.tags.append("tied")
        else:
            init = draw(st.sampled_from(INITS))
            w(f'W{i} = gc.parameter("{name}/W", ({width}, {units}), init="{init}")')
            w.weights.append((f"W{i}", width, units))
            wexpr = f"W{i}"
        mm = draw(st.sampled_from([f"{h} @ {wexpr}", f"gc.matmul({h}, {wexpr})"]))
        if draw(st.integers(0, 3)) == 0:
            z = mm
        else:
            binit = draw(st.sampled_from(['"zeros"', '"normal", std=0.5', '"uniform"']))
            w(f'b{i} = gc.parameter("{name}/b", ({units},), init={binit})')
            z = draw(st.sampled_from([f"{mm} + b{i}", f"b{i} + {mm}", f"gc.add({mm}, b{i})"]))
        if skip == "pre":
            z = f"{z} + {h}"
            w.tags.append("skip:pre")
        w(f"{zvar} = {z}")
        w(f"h{i} = {_apply_act(draw, w, act, alpha, zvar, name)}")
        out = f"h{i}"
    if skip == "post":
        w(f"h{i} = h{i} + {h}")
        w.tags.append("skip:post")
    if not final and draw(st.integers(0, 7)) == 0:
        tail = draw(st.sampled_from(["swish", "square", "scale", "div", "neg", "sub"]))
        w.tags.append(f"tail:{tail}")
        w({"swish": f"h{i} = h{i} * gc.sigmoid(h{i})",
           "square": f"h{i} = h{i} * h{i}",
           "scale": f"h{i} = 0.5 * h{i}",
           "div": f"h{i} = h{i} / 3.0",
           "neg": f"h{i} = -h{i}",
           "sub": f"h{i} = h{i} - gc.tanh(h{i})"}[tail])
    return out, units


@st.composite
def cases(draw, max_depth: int = 6) -> Case:
    """A random network, its feeds and its training configuration."""
    depth = draw(st.sampled_from([d for d in DEPTHS if d <= max_depth]))
    d_in = draw(widths)
    loss_kind = draw(st.sampled_from(LOSSES))
    n_out = draw(widths)
    w = _Writer()
    w(f'x = gc.input("x", (None, {d_in}))')
    h, width = "x", d_in
    exposed: dict[str, str] = {}
    l2_on: list[str] = []
    for i in range(depth):
        final = i == depth - 1
        if final:
            act = "linear" if draw(st.integers(0, 3)) else draw(st.sampled_from(
                ACTS + HIDDEN_EXTRA))
            units = n_out
        else:
            act = draw(st.sampled_from(ACTS) if draw(st.integers(0, 9)) else
                       st.sampled_from(HIDDEN_EXTRA))
            units = draw(widths)
        alpha = draw(st.sampled_from(ALPHAS[act])) if act in ALPHAS else None
        w.tags.append(f"act:{act}" + ("" if alpha is None else f"({alpha})"))
        h, width = _layer(draw, w, i, h, width, units, act, alpha, final)
        if not final and draw(st.integers(0, 5)) == 0:
            exposed[f"h{i}"] = h
            w.tags.append("expose:hidden")
        if not final and draw(st.integers(0, 11)) == 0 and f"z{i} =" in "\n".join(w.lines):
            exposed[f"z{i}"] = f"z{i}"
            w.tags.append("expose:pre-activation")
        if draw(st.integers(0, 11)) == 0:
            l2_on.append(draw(st.sampled_from([h] + [v for v, _, _ in w.weights[-1:]])))
    n_out = width
    # The loss and its targets.
    t_shape = f"(None, {n_out})"
    if loss_kind == "sce_int":
        w('y = gc.input("y", (None,), dtype="int64")')
        w(f"loss = gc.softmax_cross_entropy({h}, y)")
        target = f"rng.integers(0, {n_out}, n)"
    elif loss_kind in ("sce_onehot", "sce_soft"):
        w(f'y = gc.input("y", {t_shape})')
        w(f"loss = gc.softmax_cross_entropy({h}, y)")
        if loss_kind == "sce_onehot":
            target = f"np.eye({n_out})[rng.integers(0, {n_out}, n)]"
        else:
            target = f"_rows(rng.random((n, {n_out})) + 0.05)"
    elif loss_kind == "bce":
        w(f'y = gc.input("y", {t_shape})')
        w(f"loss = gc.binary_cross_entropy({h}, y)")
        target = draw(st.sampled_from([f"rng.random((n, {n_out}))",
                                       f"(rng.random((n, {n_out})) < 0.5) * 1.0"]))
    elif loss_kind == "mse_prims":
        w(f'y = gc.input("y", {t_shape})')
        w(f"d = {h} - y")
        w(draw(st.sampled_from(["loss = gc.mean(d * d)", "loss = gc.sum(d * d) / 7.0",
                                "loss = gc.mean(gc.sum(d * d, axis=1))",
                                "loss = gc.mean(gc.mean(d * d, axis=-1))"])))
        target = f"rng.standard_normal((n, {n_out}))"
    else:
        w(f'y = gc.input("y", {t_shape})')
        if loss_kind == "quantile":
            q = draw(st.sampled_from([0.1, 0.5, 0.9, 0.37]))
            w(f"loss = gc.quantile({h}, y, q={q})")
        else:
            w(f"loss = gc.{loss_kind}({h}, y)")
        target = f"rng.standard_normal((n, {n_out}))"
    for v in l2_on:
        c = draw(st.sampled_from(["0.01", "0.5"]))
        w(f"loss = loss + {c} * gc.l2({v})")
        w.tags.append("l2")
    outs = {"out": h, **exposed}
    if draw(st.integers(0, 9)) == 0:
        # A head the loss does not use: its parameters get zero gradients (weight decay
        # and AdamW still move them), and the inference graph has a second branch.
        src = draw(st.sampled_from(["x", *(f"h{i}" for i in range(depth - 1))]))
        act = draw(st.sampled_from(ACTS))
        w(f'aux = gc.dense({src}, {draw(widths)}, activation="{act}", name="aux")')
        outs["aux"] = "aux"
        w.tags.append("aux-head")
    if draw(st.integers(0, 19)) == 0:
        outs["x"] = "x"  # an input as an output
        w.tags.append("expose:input")
    w("return {\"loss\": loss, " + ", ".join(f'"{k}": {v}' for k, v in outs.items()) + "}")
    model_src = "def model():\n" + "\n".join(w.lines) + "\n"

    dtype = draw(st.sampled_from(["float32", "float64"]))
    scale = draw(st.sampled_from([1.0, 1.0, 1.0, 0.1, 3.0, 10.0]))
    special = draw(st.sampled_from([None] * 14 + ["np.nan", "np.inf", "-np.inf"]))
    f = ["def feeds(rng, n):",
         f"    x = rng.standard_normal((n, {d_in})) * {scale!r}"]
    if special is not None:
        col = draw(st.integers(0, d_in - 1))
        f.append(f"    x[n // 2:n // 2 + 1, {col}] = {special}")
        w.tags.append(f"feed:{special}")
    yexpr = target if loss_kind == "sce_int" else f"({target}).astype({dtype!r})"
    f.append(f'    return {{"x": x.astype({dtype!r}), "y": {yexpr}}}')
    feeds_src = "\n".join(f) + "\n"
    if loss_kind == "sce_soft":
        feeds_src = ("def _rows(t):\n    return t / t.sum(axis=1, keepdims=True)\n\n\n"
                     + feeds_src)

    opt = draw(st.sampled_from(OPTIMIZERS))
    lr = draw(st.sampled_from([0.1, 0.01, 0.5] if opt in ("sgd", "momentum", "nesterov")
                              else [1e-3, 1e-2, 0.1]))
    if opt == "sgd":
        optimizer = f"gc.optim.SGD(lr={lr})"
    elif opt == "momentum":
        optimizer = (f"gc.optim.SGD(lr={lr}, momentum=0.9, "
                     f"dampening={draw(st.sampled_from([0.0, 0.5]))})")
    elif opt == "nesterov":
        optimizer = (f"gc.optim.SGD(lr={lr}, momentum={draw(st.sampled_from([0.9, 0.5]))}, "
                     "nesterov=True)")
    elif opt == "adam":
        betas = draw(st.sampled_from([(0.9, 0.999), (0.5, 0.9), (0.0, 0.99)]))
        optimizer = f"gc.optim.Adam(lr={lr}, betas={betas})"
    elif opt == "adamw":
        optimizer = f"gc.optim.AdamW(lr={lr}, weight_decay={draw(st.sampled_from([0.01, 0.1]))})"
    else:
        optimizer = {
            "rmsprop": f"gc.optim.RMSprop(lr={lr})",
            "rmsprop_centered": f"gc.optim.RMSprop(lr={lr}, centered=True)",
            "rmsprop_momentum": f"gc.optim.RMSprop(lr={lr}, alpha=0.9, momentum=0.9)",
            "rmsprop_centered_momentum": f"gc.optim.RMSprop(lr={lr}, momentum=0.5, centered=True)",
        }[opt]
    train = {}
    if draw(st.integers(0, 3)) == 0:
        train["weight_decay"] = draw(st.sampled_from([1e-4, 0.1]))
    if draw(st.integers(0, 3)) == 0:
        train["clip_norm"] = draw(st.sampled_from([0.1, 1.0, 100.0]))
    batches = (draw(batch_sizes), draw(batch_sizes), draw(batch_sizes))
    grad_inputs = ("x",) if draw(st.integers(0, 3)) == 0 else ()
    if grad_inputs and loss_kind not in ("sce_int",) and draw(st.booleans()):
        grad_inputs = ("x", "y")
    tags = [*w.tags, f"loss:{loss_kind}", f"opt:{opt}", dtype, f"depth:{depth}",
            *(f"train:{k}" for k in train)]
    if 0 in batches:
        tags.append("batch:0")
    if 1 in batches:
        tags.append("batch:1")
    return Case(model_src, feeds_src, dtype, draw(st.integers(0, 2**16)), batches, optimizer,
                train, depth, grad_inputs, tags)
