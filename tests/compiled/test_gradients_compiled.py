"""The compiled backend's own gradients against finite differences: fused kernels and whole steps.

``test_ops_compiled`` and ``test_training_compiled`` hold the compiled backend to
the reference interpreter, and ``tests/foundation/test_ops.py`` holds the
reference to finite differences.  Here the compiled code is differentiated
directly, with the same checks (``tests/gradcheck.py``: float64 central
differences at ``rtol 1e-6, atol 1e-8``, the VJP inner product at ``rtol 1e-6,
atol 1e-7``, no per-op or per-case loosening), so a fused kernel whose backward is
not the derivative of its forward fails here even if the reference shared the bug.

Per op (every spec of ``tests/op_specs.py``): the gradients the compiled program
returns for ``sum(out * R)`` -- w.r.t. every differentiable input and every
parameter -- against central differences of the loss *the same compiled program*
returns, at batch sizes 1 and 3, and the VJP identity at batch 7.  The programs
are ``test_ops_compiled``'s float64 groups (``opgroups.program``: several specs per
compiled function, prewarmed in worker processes, shared in-process and through
Numba's cache), fed points sampled away from every kink.  Widths:

* 7, every spec: not a multiple of the 8 float64 SIMD lanes, so vector loops run
  their remainders; the dense layers take the small-layer loop kernels
  (``dense_fwd_small`` ...; PReLU always takes the GEMM kernels);
* 89, the dense specs: W is (89, 3), k*m = 267 > ``SMALL_MAX_KM`` (256), so every
  activation goes through the large-layer kernels (``dense_fwd`` / ``dense_bwd``,
  GEMMs through BLAS -- and at batch 1 dx's NT product through the loop GEMM).

``test_dense_paths_are_the_intended_ones`` checks in the generated source that the
two widths do reach the two paths.

Whole training steps (``STEP_CASES``: every fused pattern of
``training_cases.CASES`` -- hidden widths 7 and 13 -- with plain SGD, and three more
networks so that every activation, every loss, a layer without bias and a large
layer (37 -> 11, k*m = 407) are in): float64, ``SGD(lr=1)``, no momentum, weight
decay or clipping, so the update of every layer is folded into its backward kernel
(asserted): ``dense_bwd_sgd``'s BLAS GEMM accumulating into W, or
``dense_bwd_sgd_small``'s loop for the small layers. ONE native ``step`` from
parameters P gives P' and the gradient it applied, ``(P - P') / lr``; that is
compared with central differences of the loss the compiled step returns (its
forward, before the update) at P, entry by entry for every parameter, and in the VJP
identity. The loss comes from the step itself, not from ``evaluate``: it is the
forward pass whose backward is checked, and the evaluate entry would cost a second
compile per case (it is held to the reference by ``test_training_compiled``).

Why ``(P - P') / lr`` is the gradient to far below ``atol``: with lr = 1 (any
power of two would do) the products ``lr * g`` and the division by lr are exact;
the fused kernel computes ``P' = fl(P - g)`` (a BLAS ``beta = 1, alpha = -lr``
GEMM accumulating into W, the small kernel's ``W * keep - lr * acc`` with keep = 1,
or ``b -= lr * db``), whose one rounding moves the
recovered ``P - P'`` from the g the kernel computed by at most ~eps * (|P| + |g|)
~ 1e-15 for the O(1) values here -- 1e-7 of ``atol``.  The loss of each finite
difference is again evaluated to a few ulps of its terms, so the finite
differences' rounding argument (``gradcheck``) is unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import re

import numpy as np
import pytest
from gradcheck import assert_matches_finite_differences, assert_vjp_inner_product
from graphc.kernels.dense import SMALL_MAX_KM
from op_specs import KINK_MARGIN, PROJ, SPECS

import graphc as gc
from graphc.ops.activation import (
    ACTIVATION_NAMES,
    DEFAULT_ALPHA,
    act_forward,
    log_softmax_ref,
    softmax_ref,
)

from .opgroups import Group, built, groups, program
from .training_cases import CASES, N_IN, UNITS, WIDTHS, sample, targets
from .warm import prewarm, selected

# --- per op: the compiled op table ---------------------------------------------------------

DTYPE = "float64"
SMALL_WIDTH, LARGE_WIDTH = 7, 89
FD_BATCHES = (1, 3)
VJP_BATCH = 7

GROUP_OF = {s.id: i for i, grp in enumerate(groups()) for s in grp}
DENSE = [s.id for s in SPECS if s.op == "dense"]
OP_CASES = [(s.id, SMALL_WIDTH) for s in SPECS] + [(i, LARGE_WIDTH) for i in DENSE]


def _op_id(case: tuple[str, int]) -> str:
    return f"{case[0]}-w{case[1]}"


class CompiledSpec:
    """One spec of a compiled group seen alone: its loss and gradients at its own
    (unprefixed) feeds and parameters; the other members are fed a fixed background."""

    def __init__(self, spec_id: str, width: int) -> None:
        self.id = spec_id
        self.group: Group = program(DTYPE, width, GROUP_OF[spec_id], True, "compiled")
        self.m = next(m for m in self.group.members if m.spec.id == spec_id)
        self.feed_names = [*self.m.ins, *([PROJ] if self.m.proj is not None else [])]
        self.background: tuple[dict, dict] = ({}, {})

    def sample(self, batch: int, seed: int) -> tuple[dict, dict]:
        """fd-safe (feeds, params) of this spec; the whole group's become the background."""
        self.background = self.group.sample(batch, seed, fd_safe=True)
        feeds, params = self.background
        pre = self.m.prefix
        return ({n: feeds[pre + n] for n in self.feed_names},
                {n: params[pre + n] for n in self.m.param_shapes})

    def _results(self, feeds, params) -> dict:
        pre = self.m.prefix
        bf, bp = self.background
        return self.group.results({**bf, **{pre + n: v for n, v in feeds.items()}},
                                  {**bp, **{pre + n: v for n, v in params.items()}})

    def loss(self, feeds, params) -> float:
        return float(self._results(feeds, params)[(self.id, "loss")])

    def gradients(self, feeds, params) -> dict[str, np.ndarray]:
        r = self._results(feeds, params)
        return {w: r[(self.id, f"d/{w}")] for w in self.m.wrt}


@pytest.mark.parametrize("batch", FD_BATCHES)
@pytest.mark.parametrize("case", OP_CASES, ids=_op_id)
def test_fused_gradients_match_finite_differences(case, batch):
    spec_id, width = case
    h = CompiledSpec(spec_id, width)
    feeds, params = h.sample(batch, seed=1)
    assert_matches_finite_differences(h.loss, feeds, params, h.gradients(feeds, params),
                                      f"{spec_id} (compiled, width {width}, batch {batch})")


@pytest.mark.parametrize("case", OP_CASES, ids=_op_id)
def test_fused_vjp_inner_product(case):
    spec_id, width = case
    h = CompiledSpec(spec_id, width)
    feeds, params = h.sample(VJP_BATCH, seed=2)
    assert_vjp_inner_product(h.loss, feeds, params, h.gradients(feeds, params), seed=3,
                             what=f"{spec_id} (compiled, width {width})")


def test_dense_paths_are_the_intended_ones():
    """Width 7: the small-layer kernels (PReLU excepted); width 89: only the GEMM kernels."""
    assert SMALL_WIDTH * 3 <= SMALL_MAX_KM < LARGE_WIDTH * 3  # the table's dense layers: (C, 3)
    assert SMALL_WIDTH % 8 and LARGE_WIDTH % 8
    for gi in sorted({GROUP_OF[i] for i in DENSE}):
        small = program(DTYPE, SMALL_WIDTH, gi, True, "compiled").fn.program._impl.source
        large = program(DTYPE, LARGE_WIDTH, gi, True, "compiled").fn.program._impl.source
        assert "dense_fwd_small(" in small and "dense_bwd_small(" in small, gi
        assert "_small(" not in large, gi
        assert "K_dense.dense_fwd(" in large and "K_dense.dense_bwd(" in large, gi


# --- whole training steps --------------------------------------------------------------------

LR = 1.0  # a power of two: lr * g and (P - P') / lr are exact (see the module docstring)
STEP_BATCH = 7


@dataclasses.dataclass(frozen=True)
class StepCase:
    hidden: tuple  # (activation, alpha, width, use_bias) per hidden layer
    loss: str  # a loss of test_training_compiled.UNITS
    head: tuple = (None, None)  # the output layer's (activation, alpha)

    @property
    def id(self) -> str:
        def name(act, alpha):
            return f"{act}" if alpha is None else f"{act}({alpha})"
        hidden = "+".join(name(a, al) + f"{w}" + ("" if b else "nobias")
                          for a, al, w, b in self.hidden)
        head = "" if self.head[0] is None else f"-head_{name(*self.head)}"
        return f"{hidden}{head}-{self.loss}"

    def layers(self) -> list[tuple[str, str | None, float | None, int, bool]]:
        """(name, activation, alpha, units, use_bias) of every dense layer, in order."""
        out = [(f"h{i}", a, al, w, b) for i, (a, al, w, b) in enumerate(self.hidden)]
        return [*out, ("out", *self.head, UNITS[self.loss], True)]


STEP_CASES = [StepCase(tuple((a, al, w, True) for (a, al), w in zip(c.acts, WIDTHS, strict=True)),
                       c.loss, c.head) for c in CASES]
STEP_CASES = list(dict.fromkeys(STEP_CASES)) + [
    # linear (both spellings) and softmax hidden layers, a log_softmax head, a layer without bias
    StepCase((("linear", None, 7, False), ("softmax", None, 13, True)), "mse",
             ("log_softmax", None)),
    StepCase(((None, None, 7, True), ("tanh", None, 13, False)), "bce3", ("softmax", None)),
    # h1 is large (37 * 11 = 407 > SMALL_MAX_KM): dense_fwd / dense_bwd_sgd, GEMMs in BLAS
    StepCase((("elu", None, 37, True), ("relu", None, 11, True)), "sce_int"),
]


@functools.cache
def step_program(index: int) -> tuple[gc.Program, dict[str, np.ndarray]]:
    """STEP_CASES[index] compiled with plain SGD at lr = LR; (program, initial parameters)."""
    case = STEP_CASES[index]
    x = gc.input("x", (None, N_IN))
    h = x
    for name, act, alpha, units, bias in case.layers():
        h = gc.dense(h, units, activation=act, alpha=alpha, use_bias=bias, name=name)
    y, fn = targets(case.loss)
    net = gc.compile(loss=fn(h, y), outputs={"out": h}, optimizer=gc.optim.SGD(lr=LR),
                     dtype=DTYPE, seed=3)
    return net, net.params


def warm_step(index: int) -> None:
    """Compile one step program and run it once (a ``prewarm`` job)."""
    net, _ = step_program(index)
    net.step(sample(STEP_CASES[index].loss, 2, DTYPE, seed=0))


def _act(act: str | None, alpha: float | None, z: np.ndarray, slope) -> np.ndarray:
    """The activation's NumPy reference (``graphc.ops.activation``), only to locate the
    kinks of a sample."""
    if act is None:
        return z
    if act in ("softmax", "log_softmax"):
        return softmax_ref(z) if act == "softmax" else log_softmax_ref(z)
    return act_forward(act, z, DEFAULT_ALPHA.get(act) if alpha is None else alpha, slope)


def kinks(case: StepCase, params: dict, feeds: dict) -> list[np.ndarray]:
    """Values that must stay away from 0 for the loss to be smooth around ``params``."""
    vals, h = [], feeds["x"]
    for name, act, alpha, _, bias in case.layers():
        z = h @ params[f"{name}/W"] + (params[f"{name}/b"] if bias else 0)
        if act in ("relu", "leaky_relu", "elu", "prelu"):
            vals.append(z)
        elif act == "softplus":
            vals.append(z - 20.0)  # softplus's threshold
        h = _act(act, alpha, z, params.get(f"{name}/alpha"))
    if case.loss in ("mae", "quantile"):
        vals.append(h - feeds["y"])
    return vals


def step_point(index: int) -> tuple[gc.Program, dict, dict]:
    """(program at its initial parameters, fd-safe feeds, those parameters)."""
    case = STEP_CASES[index]
    net, params = step_program(index)
    net.set_params(params)
    for attempt in range(200):
        feeds = sample(case.loss, STEP_BATCH, DTYPE, seed=1000 + attempt)
        if all(np.all(np.abs(v) > KINK_MARGIN) for v in kinks(case, params, feeds)):
            return net, feeds, params
    raise RuntimeError(f"{case.id}: no fd-safe sample found")


def step_gradient(net: gc.Program, feeds: dict, params: dict) -> dict[str, np.ndarray]:
    """The gradient ONE native step applied: (P - P') / lr, in ``params``' order."""
    net.set_params(params)
    assert np.isfinite(net.step(feeds))
    after = net.params
    net.set_params(params)
    return {k: (params[k] - after[k]) / LR for k in params}


def step_loss(net: gc.Program):
    """loss(feeds, params) through the compiled step (the loss before its update)."""
    def loss(feeds, params) -> float:
        net.set_params(params)
        return net.step(feeds)
    return loss


def _step_id(index: int) -> str:
    return STEP_CASES[index].id


@pytest.mark.parametrize("index", range(len(STEP_CASES)), ids=_step_id)
def test_step_gradient_matches_finite_differences(index):
    net, feeds, params = step_point(index)
    # What is differentiated is the fused step: every layer fused forward and backward,
    # every update (W, b, a PReLU slope) folded into its layer's backward kernel.
    entry = net._impl.entries["train_step"]
    accepted = {(f.pass_name, f.layer) for f in entry.report.fusions if f.accepted}
    layers = [layer[0] for layer in STEP_CASES[index].layers()]
    for layer in layers:
        assert ("fuse_dense", layer) in accepted, layer
        assert ("fuse_dense_bwd", layer) in accepted, layer
    assert len(entry.emitter.folded) == len(layers)
    assert set(entry.graph.updates.values()) <= entry.emitter.skip
    analytic = step_gradient(net, feeds, params)
    assert_matches_finite_differences(step_loss(net), feeds, params, analytic,
                                      f"the step of {STEP_CASES[index].id}")


@pytest.mark.parametrize("index", range(len(STEP_CASES)), ids=_step_id)
def test_step_vjp_inner_product(index):
    net, feeds, params = step_point(index)
    analytic = step_gradient(net, feeds, params)
    assert_vjp_inner_product(step_loss(net), feeds, params, analytic, seed=3,
                             what=f"the step of {STEP_CASES[index].id}")


def test_step_cases_cover_every_activation_loss_and_path():
    acts = {a or "linear" for c in STEP_CASES for a, *_ in (*c.hidden, c.head)}
    assert set(ACTIVATION_NAMES) | {"linear"} <= acts, set(ACTIVATION_NAMES) - acts
    assert {c.loss for c in STEP_CASES} == set(UNITS)
    assert any(not b for c in STEP_CASES for *_, b in c.hidden)
    sizes = [(k, m) for c in STEP_CASES
             for k, m in zip([N_IN, *(w for _, _, w, _ in c.hidden)],
                             [*(w for _, _, w, _ in c.hidden), UNITS[c.loss]])]
    assert any(k * m > SMALL_MAX_KM for k, m in sizes)
    index = next(i for i, c in enumerate(STEP_CASES) if c.hidden[0][2] == 37)
    source = step_program(index)[0]._impl.source
    kernels = set(re.findall(r"K_dense\.(\w+)\(", source))
    assert {"dense_fwd", "dense_bwd_sgd", "dense_fwd_small", "dense_bwd_sgd_small"} <= kernels


# --- compiling in parallel first -----------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def _warm_cache(request):
    """Compile what the selected tests need in worker processes (see ``warm.py``)."""
    groups_needed, steps = set(), set()
    for _, p in selected(request, __name__):
        if "case" in p:
            groups_needed.add((p["case"][1], GROUP_OF[p["case"][0]]))
        elif "index" in p:
            steps.add(p["index"])
    jobs = [("compiled.opgroups", "warm", [DTYPE, w, gi, True])
            for w, gi in sorted(groups_needed) if not built(DTYPE, w, gi, True)]
    jobs += [("compiled.test_gradients_compiled", "warm_step", [i]) for i in sorted(steps)]
    prewarm(jobs)
