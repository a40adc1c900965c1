"""The define-then-run API: symbolic tensors and the functions that build them.

Nothing here keeps global graph state: every function returns a new
:class:`Tensor` that remembers its inputs, and a graph is whatever is
reachable from the outputs handed to ``gc.function`` / ``gc.compile``.
Shape errors are raised here, at build time, with the user's ``file:line``.
"""

from __future__ import annotations

import itertools
import os
import sys
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from graphc import autodiff
from graphc.errors import GradError, GraphError, ShapeError
from graphc.ir.graph import Graph
from graphc.ir.node import FLOAT, INT, shape_str
from graphc.ir.value import Value
from graphc.ops import build_node
from graphc.ops.activation import ACTIVATION_NAMES, DEFAULT_ALPHA
from graphc.ops.sources import INITS

# Frames in these folders are graphc's own; the first frame outside is the user's.
_PKG_DIRS = tuple(os.path.dirname(p) + os.sep for p in (__file__, sys.modules["graphc"].__file__))
_counters: dict[str, itertools.count] = defaultdict(lambda: itertools.count())


def _user_loc() -> str | None:
    """The first stack frame outside graphc: the user's file:line."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(_PKG_DIRS):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return None


def _unique(base: str) -> str:
    n = next(_counters[base])
    return base if n == 0 else f"{base}_{n}"


class Tensor(Value):
    """A symbolic tensor: a node of the graph being declared."""

    __slots__ = ()

    @property
    def name(self) -> str | None:
        return self.node.name

    def __add__(self, other):
        return add(self, other)

    def __radd__(self, other):
        return add(other, self)

    def __sub__(self, other):
        return sub(self, other)

    def __rsub__(self, other):
        return sub(other, self)

    def __mul__(self, other):
        return mul(self, other)

    def __rmul__(self, other):
        return mul(other, self)

    def __truediv__(self, other):
        if isinstance(other, int | float | np.integer | np.floating):  # as mul accepts
            if float(other) == 0.0:
                raise GraphError(f"division of a tensor by zero (at {_user_loc()})")
            return _make("scale", [self], factor=1.0 / float(other))
        raise ShapeError(f"graphc divides tensors only by Python numbers (at {_user_loc()})")

    def __neg__(self):
        return neg(self)

    def __matmul__(self, other):
        return matmul(self, other)

    @property
    def T(self):  # noqa: N802 (NumPy's spelling)
        return transpose(self)

    __hash__ = object.__hash__


def _make(op: str, inputs: Sequence[Value], name: str | None = None, **attrs) -> Tensor:
    ins = [as_tensor(i) for i in inputs]
    if op in ("input", "parameter"):
        attrs["name"] = name  # part of equality, so CSE never merges two parameters
    node = build_node(op, [i.node for i in ins], attrs, name=name, loc=_user_loc())
    return Tensor(node, tuple(ins))


def as_tensor(x) -> Tensor:
    if isinstance(x, Tensor):
        return x
    if isinstance(x, Value):
        return Tensor(x.node, x.inputs)
    if isinstance(x, int | float | np.ndarray | np.number | list):
        return constant(x)
    raise GraphError(f"expected a graphc tensor or a number, got {type(x).__name__} "
                     f"(at {_user_loc()})")


def _dtype(dtype: str) -> str:
    if dtype in ("float", "float32", "float64", "f4", "f8"):
        return FLOAT
    if dtype in ("int", "int64", "int32", "i8", "i4"):
        return INT
    raise GraphError(f"unknown dtype {dtype!r}: use 'float' (float32/float64 chosen at compile "
                     f"time) or 'int64' (labels) (at {_user_loc()})")


# --- leaves ---------------------------------------------------------------------------

def input(name: str, shape: Sequence[int | None], dtype: str = "float") -> Tensor:  # noqa: A001
    """A feed. ``None`` in ``shape`` is the batch dimension, fixed per call."""
    shape = tuple(shape)
    if any(d is not None and (not isinstance(d, int | np.integer) or d < 0) for d in shape):
        raise ShapeError(f"input {name!r}: dimensions must be non-negative ints or None, "
                         f"got {shape} (at {_user_loc()})")
    return _make("input", [], name=name, shape=shape, dtype=_dtype(dtype))


def parameter(name: str, shape: Sequence[int], init: str = "glorot_uniform",
              std: float | None = None, value: float | None = None,
              fan_in: int | None = None) -> Tensor:
    """A trained tensor, initialised by ``init`` from the compile seed and its name."""
    if init not in INITS:
        raise GraphError(f"parameter {name!r}: unknown init {init!r}; valid: {', '.join(INITS)} "
                         f"(at {_user_loc()})")
    shape = tuple(shape)
    if any(d is None for d in shape):  # e.g. prelu / dense on a batch-sized last axis
        raise ShapeError(f"parameter {name!r} needs a fixed shape, got {shape_str(shape)} "
                         f"(at {_user_loc()})")
    return _make("parameter", [], name=name, shape=tuple(int(d) for d in shape), init=init,
                 std=std, value=value, fan_in=fan_in)


def constant(value) -> Tensor:
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as e:
        raise GraphError(f"constant: expected numbers, got {value!r} ({e}) "
                         f"(at {_user_loc()})") from None
    return _make("constant", [], value=arr.tolist(), shape=arr.shape)


# --- arithmetic -----------------------------------------------------------------------

def add(a, b) -> Tensor:
    return _make("add", [a, b])


def sub(a, b) -> Tensor:
    return _make("sub", [a, b])


def mul(a, b) -> Tensor:
    return _make("mul", [a, b])


def neg(a) -> Tensor:
    return _make("neg", [a])


def identity(a) -> Tensor:
    return _make("identity", [a])


def matmul(a, b) -> Tensor:
    return _make("matmul", [a, b])


def transpose(a) -> Tensor:
    return _make("transpose", [a])


def _axis(t: Tensor, axis: int | None) -> int | None:
    if axis is None:
        return None
    nd = as_tensor(t).ndim
    ax = axis + max(nd, 1) if axis < 0 else axis  # a scalar reduces like a 1-D tensor
    if not 0 <= ax < max(nd, 1):
        raise ShapeError(f"axis {axis} out of range for a {nd}-D tensor (at {_user_loc()})")
    return None if nd <= 1 else ax


def sum(t, axis: int | None = None) -> Tensor:  # noqa: A001
    return _make("sum", [t], axis=_axis(t, axis))


def mean(t, axis: int | None = None) -> Tensor:
    return _make("mean", [t], axis=_axis(t, axis))


# --- activations ----------------------------------------------------------------------

def sigmoid(t) -> Tensor:
    return _make("sigmoid", [t])


def tanh(t) -> Tensor:
    return _make("tanh", [t])


def relu(t) -> Tensor:
    return _make("relu", [t])


def leaky_relu(t, alpha: float = DEFAULT_ALPHA["leaky_relu"]) -> Tensor:
    return _make("leaky_relu", [t], alpha=float(alpha))


def elu(t, alpha: float = DEFAULT_ALPHA["elu"]) -> Tensor:
    return _make("elu", [t], alpha=float(alpha))


def softplus(t) -> Tensor:
    return _make("softplus", [t])


def softmax(t) -> Tensor:
    return _make("softmax", [t])


def log_softmax(t) -> Tensor:
    return _make("log_softmax", [t])


def prelu(t, name: str | None = None, init: float = DEFAULT_ALPHA["prelu"]) -> Tensor:
    """PReLU with one learned slope per unit, named ``<name>/alpha``."""
    t = as_tensor(t)
    if t.ndim == 0:
        raise ShapeError(f"prelu needs at least 1-D input (at {_user_loc()})")
    name = name or _unique("prelu")
    a = parameter(f"{name}/alpha", t.shape[-1:], init="constant", value=float(init))
    return _make("prelu", [t, a])


def activation(t, name: str | None, alpha: float | None = None,
               layer: str | None = None) -> Tensor:
    """Apply an activation given by name (as accepted by ``dense(activation=...)``)."""
    if name is None or name == "linear":
        return as_tensor(t)
    if name not in ACTIVATION_NAMES:
        raise GraphError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATION_NAMES)}"
                         f" (at {_user_loc()})")
    if name == "prelu":
        return prelu(t, name=layer, init=DEFAULT_ALPHA["prelu"] if alpha is None else alpha)
    if name in ("leaky_relu", "elu"):
        return _make(name, [t], alpha=float(DEFAULT_ALPHA[name] if alpha is None else alpha))
    return _make(name, [t])


def dense(x, units: int, activation: str | None = None, name: str | None = None,
          use_bias: bool = True, init: str = "glorot_uniform", bias_init: str = "zeros",
          alpha: float | None = None) -> Tensor:
    """``activation(x @ W + b)`` with parameters ``<name>/W`` (in, units) and ``<name>/b``."""
    x = as_tensor(x)
    if x.ndim != 2:
        layer = f"dense layer {name!r}" if name else "dense layer"
        raise ShapeError(f"{layer} needs a 2-D input (batch, features), got a {x.ndim}-D "
                         f"tensor of shape {shape_str(x.shape)} (at {_user_loc()})")
    if not isinstance(units, int | np.integer) or units < 1:
        raise ShapeError(f"dense layer units must be a positive int, got {units!r} "
                         f"(at {_user_loc()})")
    if activation is not None and activation not in (*ACTIVATION_NAMES, "linear"):
        raise GraphError(f"unknown activation {activation!r}; valid: "
                         f"{', '.join(ACTIVATION_NAMES)} (at {_user_loc()})")
    name = name or _unique("dense")
    fan_in = x.shape[1]
    W = parameter(f"{name}/W", (fan_in, units), init=init, fan_in=fan_in)
    z = matmul(x, W)
    if use_bias:
        z = add(z, parameter(f"{name}/b", (units,), init=bias_init, fan_in=fan_in))
    return globals()["activation"](z, activation, alpha, layer=name)


# --- losses ---------------------------------------------------------------------------

def softmax_cross_entropy(logits, labels) -> Tensor:
    """Mean over the batch of -log softmax(logits)[label]; labels int64 or one-hot."""
    return _make("softmax_cross_entropy", [logits, labels])


def binary_cross_entropy(logits, targets) -> Tensor:
    """Mean binary cross-entropy of sigmoid(logits) against targets in [0, 1]."""
    return _make("binary_cross_entropy", [logits, targets])


def mse(pred, target) -> Tensor:
    return _make("mse", [pred, target])


def mae(pred, target) -> Tensor:
    return _make("mae", [pred, target])


def quantile(pred, target, q: float = 0.5) -> Tensor:
    if not 0.0 < q < 1.0:
        raise GraphError(f"quantile q must lie in (0, 1), got {q} (at {_user_loc()})")
    return _make("quantile", [pred, target], q=float(q))


def l2(t) -> Tensor:
    """0.5 * sum(t**2), the regulariser whose gradient is t."""
    return _make("l2", [t])


# --- gradients ------------------------------------------------------------------------

def grad(y, xs: Sequence) -> list[Tensor]:
    """Symbolic gradients of the scalar ``y`` w.r.t. each tensor in ``xs``."""
    if not isinstance(y, Value):
        raise GradError(f"gc.grad needs a graphc tensor as target, got {type(y).__name__}")
    if isinstance(xs, Value):
        raise GradError("gc.grad takes a list of tensors: gc.grad(loss, [W])")
    for x in xs:
        if not isinstance(x, Value):
            raise GradError(f"gc.grad w.r.t. {x!r}: not a graphc tensor")
    outs = {"__y": y, **{f"__x{i}": x for i, x in enumerate(xs)}}
    g, memo = Graph.from_values(outs)
    check_names(g)
    known = {memo[id(v)]: v for v in _walk(outs.values())}
    ids = autodiff.gradients(g, g.outputs["__y"], [g.outputs[f"__x{i}"] for i in range(len(xs))])
    return g.to_values(ids, known, cls=Tensor)


def _walk(roots) -> list[Value]:
    seen: dict[int, Value] = {}
    stack = list(roots)
    while stack:
        v = stack.pop()
        if id(v) not in seen:
            seen[id(v)] = v
            stack.extend(v.inputs)
    return list(seen.values())


def leaves(t: Value | Sequence[Value], op: str) -> dict[str, Tensor]:
    """The ``op`` leaves ("parameter" or "input") a tensor, or any of several, depends on,
    by name."""
    roots = list(t) if isinstance(t, list | tuple) else [t]
    return {v.node.get("name"): as_tensor(v) for v in _walk(roots) if v.node.op == op}


def check_names(g: Graph) -> None:
    """Two distinct parameters (or clashing inputs) may not share a name."""
    seen: dict[tuple[str, str], int] = {}
    for n in g.toposort():
        node = g.node(n)
        if node.op not in ("parameter", "input"):
            continue
        key = (node.op, node.get("name"))
        if key in seen and (node.op == "parameter" or g.node(seen[key]) != node):
            other = g.node(seen[key])
            raise GraphError(f"two {node.op}s named {key[1]!r}: {shape_str(other.shape)} at "
                             f"{other.loc} and {shape_str(node.shape)} at {node.loc}")
        seen[key] = n
