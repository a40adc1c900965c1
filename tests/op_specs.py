"""The op table: one :class:`OpSpec` per op (and variant) of graphc's public API.

One table drives every per-op test (after JAX's ``lax_autodiff_test.py``):
shape inference, gradients against finite differences, VJP inner products,
the PyTorch forward/backward oracle, and -- later -- compiled kernels against
the NumPy reference.  A spec knows how to

* build its graph through the public ``gc.*`` API from fresh symbolic inputs
  (:meth:`OpSpec.build_graph`; parameters are created inside ``build`` with
  fixed names, so two builds give equal graphs),
* draw input and parameter arrays of a given dtype, batch size and seed
  (:meth:`OpSpec.sample`), optionally at points safe for finite differences:
  every value returned by ``kinks`` is kept at least :data:`KINK_MARGIN` away
  from the op's non-differentiable points (relu at 0, mae at p == t, softplus's
  threshold at 20, ...),
* say which inputs are differentiable (``Arg.diff``; parameters always are),
* optionally compute its forward pass with PyTorch (``torch``), an oracle
  independent of graphc's reference.

Batch dimensions are ``None`` in ``Arg.shape`` and filled by the batch size.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

import graphc as gc

KINK_MARGIN = 1e-3
C = 4  # feature / class count used throughout the table

Sampler = Callable[[np.random.Generator, tuple, np.dtype], np.ndarray]


# --- samplers ---------------------------------------------------------------------------

def normal(scale: float = 1.0, shift: float = 0.0) -> Sampler:
    def s(rng, shape, dtype):
        return (shift + scale * rng.standard_normal(shape)).astype(dtype)
    return s


def uniform(lo: float, hi: float) -> Sampler:
    def s(rng, shape, dtype):
        return rng.uniform(lo, hi, shape).astype(dtype)
    return s


def away_from_zero(lo: float = 0.05, hi: float = 2.5) -> Sampler:
    """Random sign times U(lo, hi): never near an activation's kink at 0."""
    def s(rng, shape, dtype):
        return (rng.choice([-1.0, 1.0], shape) * rng.uniform(lo, hi, shape)).astype(dtype)
    return s


def softplus_range(rng, shape, dtype):
    """Half the entries beyond softplus's threshold (|z| in [20.5, 35]), half in [-4, 4]."""
    far = rng.choice([-1.0, 1.0], shape) * rng.uniform(20.5, 35.0, shape)
    near = rng.uniform(-4.0, 4.0, shape)
    return np.where(rng.random(shape) < 0.5, far, near).astype(dtype)


def labels(classes: int = C) -> Sampler:
    def s(rng, shape, dtype):
        return rng.integers(0, classes, shape).astype(np.int64)
    return s


def onehot(rng, shape, dtype):
    return np.eye(shape[-1], dtype=dtype)[rng.integers(0, shape[-1], shape[:-1])]


def soft_targets(rng, shape, dtype):
    """Rows of a probability simplex (soft labels)."""
    t = rng.uniform(0.05, 1.0, shape)
    return (t / t.sum(axis=-1, keepdims=True)).astype(dtype)


# --- records ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Arg:
    """One ``gc.input`` of a spec."""

    name: str
    shape: tuple  # None = the batch dimension
    dtype: str = "float"  # "float" or "int64"
    sample: Sampler = field(default_factory=normal)
    diff: bool = True  # differentiable (ignored for int64 inputs)

    def concrete(self, batch: int) -> tuple:
        return tuple(batch if d is None else d for d in self.shape)


@dataclass(frozen=True)
class OpSpec:
    id: str
    op: str  # the public gc function this spec exercises (coverage is checked against it)
    args: tuple[Arg, ...]
    build: Callable[..., gc.Tensor]  # build(*input tensors in args order) -> output
    params: Mapping[str, Sampler] = field(default_factory=dict)  # by name; default normal(0.5)
    # Values (from feeds + params, by name) that must stay away from kinks at 0.
    kinks: Callable[[Mapping[str, np.ndarray]], list[np.ndarray]] | None = None
    # Independent forward oracle: torch(torch_module, values by name) -> torch.Tensor.
    torch: Callable | None = None

    def __repr__(self) -> str:
        return f"OpSpec({self.id})"

    @property
    def diff_args(self) -> list[str]:
        return [a.name for a in self.args if a.diff and a.dtype == "float"]

    def inputs(self) -> dict[str, gc.Tensor]:
        """Fresh symbolic inputs, by name."""
        return {a.name: gc.input(a.name, a.shape, dtype=a.dtype) for a in self.args}

    def build_graph(self) -> tuple[gc.Tensor, dict[str, gc.Tensor], dict[str, gc.Tensor]]:
        """(output, inputs by name, parameters by name) from fresh symbolic inputs."""
        ins = self.inputs()
        out = self.build(*ins.values())
        return out, ins, find_parameters(out)

    def sample(self, batch: int, dtype="float64", seed: int = 0, fd_safe: bool = False,
               param_shapes: Mapping[str, tuple] | None = None
               ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """(feeds, params) drawn from the samplers; with ``fd_safe`` away from every kink."""
        dtype = np.dtype(dtype)
        if param_shapes is None:
            param_shapes = {n: t.shape for n, t in self.build_graph()[2].items()}
        for attempt in range(200):
            rng = np.random.default_rng([seed, batch, attempt])
            feeds = {a.name: np.asarray(a.sample(rng, a.concrete(batch), dtype))
                     for a in self.args}
            params = {n: np.asarray(self.params.get(n, normal(0.5))(rng, tuple(s), dtype))
                      for n, s in sorted(param_shapes.items())}
            if not fd_safe or self.kinks is None:
                return feeds, params
            vals = self.kinks({**feeds, **params})
            if all(np.all(np.abs(v) > KINK_MARGIN) for v in vals):
                return feeds, params
        raise RuntimeError(f"{self.id}: no fd-safe sample found")


PROJ = "proj__"  # the name of the projection input of a SpecProgram
SCALAR_PROJ = -0.7371  # scalar outputs are projected by this fixed number


class SpecProgram:
    """A spec compiled for one backend and dtype, for comparing backends and gradients.

    ``output`` runs the forward pass.  ``loss`` is the scalar ``sum(out * R)`` with
    ``R`` a random projection fed as input ``PROJ`` (a fixed number for scalar
    outputs, since the cotangent must not be 1), and ``gradients`` are ``gc.grad`` of
    it w.r.t. every differentiable input and every parameter (``wrt`` lists them)."""

    def __init__(self, spec: OpSpec, backend: str = "reference", dtype: str = "float64"):
        self.spec, self.backend, self.dtype = spec, backend, dtype
        opts = dict(backend=backend, dtype=dtype)
        self.out, self.ins, self.params = spec.build_graph()
        self.scalar = self.out.shape == ()
        self.proj = None if self.scalar else gc.input(PROJ, self.out.shape)
        self.loss_tensor = gc.sum(self.out * (SCALAR_PROJ if self.scalar else self.proj))
        self.wrt = [*spec.diff_args, *self.params]
        tensors = [self.ins[n] for n in spec.diff_args] + list(self.params.values())
        self.grads = gc.grad(self.loss_tensor, tensors)
        feeds = [*self.ins.values()] + ([] if self.scalar else [self.proj])
        self.f_out = gc.function(list(self.ins.values()), [self.out], **opts)
        self.f_loss = gc.function(feeds, [self.loss_tensor], **opts)
        self.f_grad = gc.function(feeds, [self.loss_tensor, *self.grads], **opts)

    def sample(self, batch: int, seed: int = 0, fd_safe: bool = False):
        """(feeds including the projection, params) in this program's dtype."""
        feeds, params = self.spec.sample(batch, self.dtype, seed, fd_safe=fd_safe,
                                         param_shapes={n: t.shape for n, t in self.params.items()})
        rng = np.random.default_rng([seed, batch, 99])
        shape = tuple(batch if d is None else d for d in self.out.shape)
        feeds[PROJ] = np.asarray(SCALAR_PROJ if self.scalar else rng.standard_normal(shape),
                                 dtype=self.dtype)
        return feeds, params

    def _args(self, feeds):
        return [feeds[n] for n in self.ins] + ([] if self.scalar else [feeds[PROJ]])

    def output(self, feeds, params) -> np.ndarray:
        self.f_out.set_params(params)
        return self.f_out(*[feeds[n] for n in self.ins])[0]

    def loss(self, feeds, params) -> float:
        self.f_loss.set_params(params)
        return float(self.f_loss(*self._args(feeds))[0])

    def gradients(self, feeds, params) -> dict[str, np.ndarray]:
        self.f_grad.set_params(params)
        _, *grads = self.f_grad(*self._args(feeds))
        return dict(zip(self.wrt, grads, strict=True))


def find_parameters(out: gc.Tensor) -> dict[str, gc.Tensor]:
    """Every parameter reachable from ``out``, by name."""
    seen, stack, params = set(), [out], {}
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if v.op == "parameter":
            params[v.node.get("name")] = v
        stack.extend(v.inputs)
    return dict(sorted(params.items()))


# --- the table --------------------------------------------------------------------------

X = Arg("x", (None, C))
Y = Arg("y", (None, C))
X_SAFE = Arg("x", (None, C), sample=away_from_zero())
V = Arg("v", (None,))  # 1-D (batch,)
B_IN = Arg("b", (C,))  # a fixed-shape input used as a bias


def _bias(name="b"):
    return gc.parameter(name, (C,), init="zeros")


def _scalar(name="s"):
    return gc.parameter(name, (), init="ones")


def _dense(act, alpha=None, use_bias=True, units=3):
    def build(x):
        return gc.dense(x, units, activation=act, name="fc", alpha=alpha, use_bias=use_bias)
    return build


def _dense_torch(act_fn, use_bias=True):
    def f(t, v):
        z = v["x"] @ v["fc/W"]
        if use_bias:
            z = z + v["fc/b"]
        return act_fn(t, z, v)
    return f


def _z(v):
    z = v["x"] @ v["fc/W"]
    return z + v["fc/b"] if "fc/b" in v else z


def _act_torch(name, alpha=None):
    def f(t, z, v):
        F = t.nn.functional
        if name is None or name == "linear":
            return z
        if name == "sigmoid":
            return t.sigmoid(z)
        if name == "tanh":
            return t.tanh(z)
        if name == "relu":
            return F.relu(z)
        if name == "leaky_relu":
            return F.leaky_relu(z, 0.01 if alpha is None else alpha)
        if name == "elu":
            return F.elu(z, 1.0 if alpha is None else alpha)
        if name == "softplus":
            return F.softplus(z)
        if name == "softmax":
            return t.softmax(z, dim=-1)
        if name == "log_softmax":
            return t.log_softmax(z, dim=-1)
        if name == "prelu":
            return F.prelu(z, v["fc/alpha"])
        raise ValueError(name)
    return f


def _quantile_torch(q):
    def f(t, v):
        u = v["t"] - v["p"]
        return t.mean(t.maximum(q * u, (q - 1) * u))
    return f


def _reduce(fn, axis, arg):
    """gc.sum / gc.mean over ``axis`` of a 2-D (x) or 1-D (v) input."""
    def build(x):
        return getattr(gc, fn)(x, axis=axis)

    def oracle(t, v):
        x = v[arg.name]
        return getattr(t, fn)(x) if axis is None else getattr(t, fn)(x, dim=axis)

    kind = "" if arg.name == "x" else "_1d"
    return OpSpec(f"{fn}{kind}_axis_{axis}", fn, (arg,), build, torch=oracle)


P = Arg("p", (None, C))
T = Arg("t", (None, C))

SPECS: list[OpSpec] = [
    # --- arithmetic, with bias and scalar broadcasting on both sides -------------------
    OpSpec("add", "add", (X, Y), lambda x, y: x + y, torch=lambda t, v: v["x"] + v["y"]),
    OpSpec("add_fn", "add", (X, Y), gc.add, torch=lambda t, v: v["x"] + v["y"]),
    OpSpec("add_bias_right", "add", (X,), lambda x: x + _bias(),
           torch=lambda t, v: v["x"] + v["b"]),
    OpSpec("add_bias_left", "add", (X,), lambda x: _bias() + x,
           torch=lambda t, v: v["b"] + v["x"]),
    OpSpec("add_bias_input", "add", (X, B_IN), lambda x, b: x + b,
           torch=lambda t, v: v["x"] + v["b"]),
    OpSpec("add_number_right", "add", (X,), lambda x: x + 1.5, torch=lambda t, v: v["x"] + 1.5),
    OpSpec("add_number_left", "add", (X,), lambda x: 1.5 + x, torch=lambda t, v: 1.5 + v["x"]),
    OpSpec("add_scalar_param_left", "add", (X,), lambda x: _scalar() + x,
           torch=lambda t, v: v["s"] + v["x"]),
    OpSpec("add_scalar_param_right", "add", (X,), lambda x: x + _scalar(),
           torch=lambda t, v: v["x"] + v["s"]),
    OpSpec("sub", "sub", (X, Y), lambda x, y: x - y, torch=lambda t, v: v["x"] - v["y"]),
    OpSpec("sub_fn", "sub", (X, Y), gc.sub, torch=lambda t, v: v["x"] - v["y"]),
    OpSpec("sub_bias_right", "sub", (X,), lambda x: x - _bias(),
           torch=lambda t, v: v["x"] - v["b"]),
    OpSpec("sub_bias_left", "sub", (X,), lambda x: _bias() - x,
           torch=lambda t, v: v["b"] - v["x"]),
    OpSpec("sub_number_right", "sub", (X,), lambda x: x - 2.0, torch=lambda t, v: v["x"] - 2.0),
    OpSpec("sub_number_left", "sub", (X,), lambda x: 2.0 - x, torch=lambda t, v: 2.0 - v["x"]),
    OpSpec("sub_scalar_param_left", "sub", (X,), lambda x: _scalar() - x,
           torch=lambda t, v: v["s"] - v["x"]),
    OpSpec("sub_scalar_param_right", "sub", (X,), lambda x: x - _scalar(),
           torch=lambda t, v: v["x"] - v["s"]),
    OpSpec("sub_bias_input_left", "sub", (X, B_IN), lambda x, b: b - x,
           torch=lambda t, v: v["b"] - v["x"]),
    OpSpec("mul", "mul", (X, Y), lambda x, y: x * y, torch=lambda t, v: v["x"] * v["y"]),
    OpSpec("mul_fn", "mul", (X, Y), gc.mul, torch=lambda t, v: v["x"] * v["y"]),
    OpSpec("mul_self", "mul", (X,), lambda x: x * x, torch=lambda t, v: v["x"] * v["x"]),
    OpSpec("mul_bias_right", "mul", (X,), lambda x: x * _bias(),
           torch=lambda t, v: v["x"] * v["b"]),
    OpSpec("mul_bias_left", "mul", (X, B_IN), lambda x, b: b * x,
           torch=lambda t, v: v["b"] * v["x"]),
    OpSpec("mul_number_right", "mul", (X,), lambda x: x * 3.0, torch=lambda t, v: v["x"] * 3.0),
    OpSpec("mul_number_left", "mul", (X,), lambda x: -0.5 * x, torch=lambda t, v: -0.5 * v["x"]),
    OpSpec("mul_scalar_param_left", "mul", (X,), lambda x: _scalar() * x,
           torch=lambda t, v: v["s"] * v["x"]),
    OpSpec("mul_scalar_param_right", "mul", (X,), lambda x: x * _scalar(),
           torch=lambda t, v: v["x"] * v["s"]),
    OpSpec("mul_by_own_sum", "mul", (X,), lambda x: gc.sum(x) * x,
           torch=lambda t, v: v["x"].sum() * v["x"]),
    OpSpec("div_number", "scale", (X,), lambda x: x / 4.0, torch=lambda t, v: v["x"] / 4.0),
    OpSpec("neg", "neg", (X,), lambda x: -x, torch=lambda t, v: -v["x"]),
    OpSpec("neg_fn", "neg", (X,), gc.neg, torch=lambda t, v: -v["x"]),
    OpSpec("identity", "identity", (X,), gc.identity, torch=lambda t, v: v["x"].clone()),
    # --- linear algebra ----------------------------------------------------------------
    OpSpec("matmul_param", "matmul", (X,), lambda x: gc.matmul(x, gc.parameter("W", (C, 3))),
           torch=lambda t, v: v["x"] @ v["W"]),
    OpSpec("matmul_inputs", "matmul", (X, Arg("w", (C, 2))), lambda x, w: x @ w,
           torch=lambda t, v: v["x"] @ v["w"]),
    OpSpec("matmul_transposed_param", "matmul", (X,),
           lambda x: x @ gc.parameter("W", (3, C)).T, torch=lambda t, v: v["x"] @ v["W"].T),
    OpSpec("matmul_gram", "matmul", (X,), lambda x: gc.transpose(x) @ x,
           torch=lambda t, v: v["x"].T @ v["x"]),
    OpSpec("transpose", "transpose", (X,), gc.transpose, torch=lambda t, v: v["x"].T),
    # --- reductions ----------------------------------------------------------------------
    *[_reduce(fn, axis, X) for fn in ("sum", "mean") for axis in (None, 0, -1)],
    *[_reduce(fn, axis, V) for fn in ("sum", "mean") for axis in (None, 0, -1)],
    # --- activations ---------------------------------------------------------------------
    OpSpec("sigmoid", "sigmoid", (Arg("x", (None, C), sample=normal(4.0)),), gc.sigmoid,
           torch=lambda t, v: t.sigmoid(v["x"])),
    OpSpec("tanh", "tanh", (Arg("x", (None, C), sample=normal(2.0)),), gc.tanh,
           torch=lambda t, v: t.tanh(v["x"])),
    OpSpec("relu", "relu", (X_SAFE,), gc.relu, torch=lambda t, v: t.relu(v["x"])),
    OpSpec("leaky_relu", "leaky_relu", (X_SAFE,), gc.leaky_relu,
           torch=lambda t, v: t.nn.functional.leaky_relu(v["x"], 0.01)),
    OpSpec("leaky_relu_alpha_0.2", "leaky_relu", (X_SAFE,), lambda x: gc.leaky_relu(x, alpha=0.2),
           torch=lambda t, v: t.nn.functional.leaky_relu(v["x"], 0.2)),
    OpSpec("leaky_relu_alpha_-0.3", "leaky_relu", (X_SAFE,),
           lambda x: gc.leaky_relu(x, alpha=-0.3),
           torch=lambda t, v: t.nn.functional.leaky_relu(v["x"], -0.3)),
    OpSpec("prelu", "prelu", (X_SAFE,), lambda x: gc.prelu(x, name="pr"),
           params={"pr/alpha": uniform(-0.5, 0.8)},
           torch=lambda t, v: t.nn.functional.prelu(v["x"], v["pr/alpha"])),
    OpSpec("prelu_1d", "prelu", (Arg("v", (C,), sample=away_from_zero()),),
           lambda x: gc.prelu(x, name="pr", init=0.1), params={"pr/alpha": uniform(-0.5, 0.8)},
           torch=lambda t, v: t.where(v["v"] > 0, v["v"], v["pr/alpha"] * v["v"])),
    OpSpec("elu", "elu", (X_SAFE,), gc.elu, torch=lambda t, v: t.nn.functional.elu(v["x"])),
    OpSpec("elu_alpha_0.5", "elu", (X_SAFE,), lambda x: gc.elu(x, alpha=0.5),
           torch=lambda t, v: t.nn.functional.elu(v["x"], 0.5)),
    OpSpec("elu_alpha_-0.7", "elu", (X_SAFE,), lambda x: gc.elu(x, alpha=-0.7),
           torch=lambda t, v: t.nn.functional.elu(v["x"], -0.7)),
    OpSpec("softplus", "softplus", (Arg("x", (None, C), sample=softplus_range),), gc.softplus,
           kinks=lambda v: [v["x"] - 20.0], torch=lambda t, v: t.nn.functional.softplus(v["x"])),
    OpSpec("softmax", "softmax", (Arg("x", (None, C), sample=normal(2.0)),), gc.softmax,
           torch=lambda t, v: t.softmax(v["x"], dim=-1)),
    OpSpec("softmax_1d", "softmax", (Arg("v", (C,), sample=normal(2.0)),), gc.softmax,
           torch=lambda t, v: t.softmax(v["v"], dim=-1)),
    OpSpec("log_softmax", "log_softmax", (Arg("x", (None, C), sample=normal(2.0)),),
           gc.log_softmax, torch=lambda t, v: t.log_softmax(v["x"], dim=-1)),
    OpSpec("log_softmax_1d", "log_softmax", (Arg("v", (C,), sample=normal(2.0)),),
           gc.log_softmax, torch=lambda t, v: t.log_softmax(v["v"], dim=-1)),
    # --- losses --------------------------------------------------------------------------
    OpSpec("sce_int_labels", "softmax_cross_entropy",
           (Arg("z", (None, C), sample=normal(2.0)), Arg("y", (None,), "int64", labels())),
           gc.softmax_cross_entropy,
           torch=lambda t, v: t.nn.functional.cross_entropy(v["z"], v["y"])),
    OpSpec("sce_onehot", "softmax_cross_entropy",
           (Arg("z", (None, C), sample=normal(2.0)), Arg("y", (None, C), sample=onehot)),
           gc.softmax_cross_entropy,
           torch=lambda t, v: t.nn.functional.cross_entropy(v["z"], v["y"])),
    OpSpec("sce_soft_targets", "softmax_cross_entropy",
           (Arg("z", (None, C), sample=normal(2.0)), Arg("y", (None, C), sample=soft_targets)),
           gc.softmax_cross_entropy,
           torch=lambda t, v: t.nn.functional.cross_entropy(v["z"], v["y"])),
    OpSpec("bce_logits", "binary_cross_entropy",
           (Arg("z", (None, C), sample=normal(3.0)), Arg("t", (None, C), sample=uniform(0, 1))),
           gc.binary_cross_entropy,
           torch=lambda t, v: t.nn.functional.binary_cross_entropy_with_logits(v["z"], v["t"])),
    OpSpec("bce_logits_1d", "binary_cross_entropy",
           (Arg("z", (None,), sample=normal(3.0)), Arg("t", (None,), sample=uniform(0, 1))),
           gc.binary_cross_entropy,
           torch=lambda t, v: t.nn.functional.binary_cross_entropy_with_logits(v["z"], v["t"])),
    OpSpec("mse", "mse", (P, T), gc.mse, torch=lambda t, v: t.nn.functional.mse_loss(v["p"], v["t"])),
    OpSpec("mse_1d", "mse", (Arg("p", (None,)), Arg("t", (None,))), gc.mse,
           torch=lambda t, v: t.nn.functional.mse_loss(v["p"], v["t"])),
    OpSpec("mae", "mae", (P, T), gc.mae, kinks=lambda v: [v["p"] - v["t"]],
           torch=lambda t, v: t.nn.functional.l1_loss(v["p"], v["t"])),
    *[OpSpec(f"quantile_{q}", "quantile", (P, T),
             (lambda q: lambda p, t: gc.quantile(p, t) if q is None else gc.quantile(p, t, q=q))(q),
             kinks=lambda v: [v["p"] - v["t"]], torch=_quantile_torch(0.5 if q is None else q))
      for q in (None, 0.9, 0.1)],
    OpSpec("l2_param", "l2", (X,), lambda x: gc.l2(gc.parameter("W", (C, 3))) + gc.sum(x),
           torch=lambda t, v: 0.5 * (v["W"] ** 2).sum() + v["x"].sum()),
    OpSpec("l2_input", "l2", (X,), gc.l2, torch=lambda t, v: 0.5 * (v["x"] ** 2).sum()),
    # --- dense, with every activation ----------------------------------------------------
    *[OpSpec(f"dense_{act or 'none'}" + ("" if alpha is None else f"_alpha_{alpha}")
             + ("" if bias else "_nobias"), "dense", (X,), _dense(act, alpha, bias),
             params={"fc/alpha": uniform(-0.5, 0.8)},
             kinks=(lambda v: [_z(v)]) if act in ("relu", "leaky_relu", "elu", "prelu") else
             (lambda v: [_z(v) - 20.0]) if act == "softplus" else None,
             torch=_dense_torch(_act_torch(act, alpha), bias))
      for act, alpha, bias in [
          (None, None, True), ("linear", None, True), (None, None, False),
          ("sigmoid", None, True), ("tanh", None, True), ("relu", None, True),
          ("relu", None, False), ("leaky_relu", None, True), ("leaky_relu", 0.2, True),
          ("prelu", None, True), ("elu", None, True), ("elu", 0.5, True),
          ("softplus", None, True), ("softmax", None, True), ("log_softmax", None, True)]],
]

BY_ID: dict[str, OpSpec] = {s.id: s for s in SPECS}
assert len(BY_ID) == len(SPECS), "duplicate spec ids"
