"""The op table (``tests/op_specs.py``) compiled in groups, at any feature width.

Compiling is what costs (Numba, ~0.5 s per op in a generated function, and
superlinear in the function's size: the whole table in one function takes
minutes), so ``test_ops_compiled`` puts :data:`GROUP` specs side by side in
one ``gc.function``: each spec gets its own inputs and parameters (names
prefixed ``s<i>_``), its own projection loss ``sum(out * R)`` as in
:class:`op_specs.SpecProgram`, and its own ``gc.grad``.  A group's function
returns, per spec, the op's output, that loss and every gradient; a
forward-only function returns just the outputs (no backward in the graph, so
the forward-only lowering is what runs).

Widths: the table is written for C = 4 features.  :func:`widen` replaces every
dimension 4 of a spec's inputs by the width, and :func:`renamed` sets
``op_specs.C`` while the spec builds, so the parameters it creates (biases,
scalars, weight matrices ``(C, 3)``) follow; labels are drawn from
``[0, width)``.

:func:`warm` compiles one group; ``test_ops_compiled`` runs it in worker
processes first (see ``warm.py``).  :func:`program` builds each configuration
once per process, so ``test_gradients_compiled`` (finite differences through the
float64 width-7 groups) and ``test_ops_compiled`` share those programs, and
whichever module runs second has nothing of them left to prewarm.
"""

from __future__ import annotations

import contextlib
import dataclasses
import warnings

import numpy as np
import op_specs
from graphc.frontends import symbolic
from op_specs import PROJ, SCALAR_PROJ, SPECS, OpSpec, find_parameters, labels

import graphc as gc

GROUP = 5


@contextlib.contextmanager
def renamed(prefix: str, width: int):
    """Parameters made inside get ``prefix`` before their name; ``op_specs.C`` is ``width``."""
    orig = symbolic.parameter

    def parameter(name, *args, **kwargs):
        return orig(prefix + name, *args, **kwargs)

    old = op_specs.C
    gc.parameter = symbolic.parameter = parameter
    op_specs.C = width
    try:
        yield
    finally:
        gc.parameter = symbolic.parameter = orig
        op_specs.C = old


def widen(spec: OpSpec, width: int) -> OpSpec:
    """The spec with feature width ``width`` instead of ``op_specs.C``."""
    args = []
    for a in spec.args:
        shape = tuple(width if d == op_specs.C else d for d in a.shape)
        extra = {"sample": labels(width)} if a.dtype == "int64" else {}
        args.append(dataclasses.replace(a, shape=shape, **extra))
    return dataclasses.replace(spec, args=tuple(args))


@dataclasses.dataclass
class Member:
    spec: OpSpec  # widened
    prefix: str
    ins: dict  # arg name -> gc.input
    proj: gc.Tensor | None
    out: gc.Tensor
    loss: gc.Tensor
    wrt: list[str]  # differentiable inputs, then parameters (unprefixed names)
    grads: list
    param_shapes: dict  # unprefixed name -> shape


def groups(specs=SPECS, size: int = GROUP) -> list[list[OpSpec]]:
    return [list(specs[i:i + size]) for i in range(0, len(specs), size)]


class Group:
    """Several specs in one program: ``results(feeds, params)`` -> {(spec id, what): array}."""

    def __init__(self, specs: list[OpSpec], width: int, dtype: str, backend: str,
                 grad: bool = True) -> None:
        self.width, self.dtype, self.backend, self.grad = width, dtype, backend, grad
        self.members: list[Member] = []
        inputs, outputs, self.keys = [], [], []
        for i, spec in enumerate(specs):
            spec = widen(spec, width)
            pre = f"s{i}_"
            with renamed(pre, width):
                ins = {a.name: gc.input(pre + a.name, a.shape, dtype=a.dtype) for a in spec.args}
                out = spec.build(*ins.values())
            params = find_parameters(out)
            scalar = out.shape == ()
            proj = None if scalar else gc.input(pre + PROJ, out.shape)
            loss = gc.sum(out * (SCALAR_PROJ if scalar else proj))
            wrt = [*spec.diff_args, *(p[len(pre):] for p in params)]
            tensors = [ins[n] for n in spec.diff_args] + list(params.values())
            grads = gc.grad(loss, tensors) if grad else []
            m = Member(spec, pre, ins, proj, out, loss, wrt, grads,
                       {p[len(pre):]: t.shape for p, t in params.items()})
            self.members.append(m)
            inputs += [*ins.values(), *([proj] if proj is not None else [])]
            outputs.append(out)
            self.keys.append((spec.id, "out"))
            if grad:
                outputs += [loss, *grads]
                self.keys += [(spec.id, "loss"), *((spec.id, f"d/{w}") for w in wrt)]
        self.inputs = inputs
        self.fn = gc.function(inputs, outputs, dtype=dtype, backend=backend)

    def sample(self, batch: int, seed: int = 0, fd_safe: bool = False) -> tuple[dict, dict]:
        """Feeds and parameters (prefixed names) for every member; with ``fd_safe``
        away from every member's kinks (see ``OpSpec.sample``)."""
        feeds, params = {}, {}
        for m in self.members:
            f, p = m.spec.sample(batch, self.dtype, seed, fd_safe=fd_safe,
                                 param_shapes=m.param_shapes)
            rng = np.random.default_rng([seed, batch, 99])
            shape = tuple(batch if d is None else d for d in m.out.shape)
            f[PROJ] = np.asarray(rng.standard_normal(shape) if m.proj is not None else SCALAR_PROJ,
                                 dtype=self.dtype)
            feeds.update({m.prefix + k: v for k, v in f.items()})
            params.update({m.prefix + k: v for k, v in p.items()})
        return feeds, params

    def results(self, feeds: dict, params: dict) -> dict[tuple[str, str], np.ndarray]:
        self.fn.set_params(params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # means of nothing at batch 0
            outs = self.fn(*[feeds[t.node.get("name")] for t in self.inputs])
        return dict(zip(self.keys, outs, strict=True))


# --- one program per configuration and process; warming the cache in parallel ----------------

_PROGRAMS: dict[tuple, Group] = {}


def program(dtype: str, width: int, gi: int, grad: bool, backend: str) -> Group:
    """Group ``gi`` of :func:`groups`, built once per process: the test modules that use
    the same configuration (``test_ops_compiled``, ``test_gradients_compiled``) share it."""
    key = (dtype, width, gi, grad, backend)
    if key not in _PROGRAMS:
        _PROGRAMS[key] = Group(groups()[gi], width, dtype, backend, grad)
    return _PROGRAMS[key]


def built(dtype: str, width: int, gi: int, grad: bool, backend: str = "compiled") -> bool:
    """Whether this process has the program already (then there is nothing to prewarm)."""
    return (dtype, width, gi, grad, backend) in _PROGRAMS


def warm(dtype: str, width: int, gi: int, grad: bool) -> None:
    """Compile one group (``prewarm`` job) and run it once, filling the cache."""
    g = Group(groups()[gi], width, dtype, "compiled", grad)
    g.results(*g.sample(1))
