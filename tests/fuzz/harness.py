"""Run one fuzz case on one backend and collect everything it observes.

:func:`observe` executes a :class:`~.strategies.Case` the way a user would:
``gc.function`` of ``[loss, *gc.grad(loss, params [+ inputs])]`` for the
gradients, ``gc.compile`` for ``run`` and two optimizer ``step`` calls, then
the parameters, the optimizer state and ``run`` again.  Both backends get the
same seed, so the same initial parameters and the same feeds.  A
``GraphcError`` raised by a stage is recorded (the other backend must raise
the same class); any other exception is a bug and propagates.

:func:`differences` compares two observations with :mod:`.tolerances`, and
:func:`report` formats a failure as a self-contained reproduction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import traceback

import numpy as np
from graphc.frontends import symbolic

import graphc as gc
from graphc.ir.graph import Graph
from graphc.ir.printer import to_text

from .strategies import Case
from .tolerances import (
    CONDITIONING_DRAWS,
    ENSEMBLE_DRAWS,
    NOISE_ULPS,
    TRUTH_FACTOR,
    mismatch,
    rtol_for,
    used,
)

BACKENDS = ("compiled", "reference")


class Raised:
    """A GraphcError a stage raised (compared by class, reported with its message)."""

    def __init__(self, e: Exception) -> None:
        self.kind = type(e).__name__
        self.message = str(e)

    def __repr__(self) -> str:
        return f"{self.kind}: {self.message}"


def leaves(tensors, op: str) -> list:
    """The ``gc.input`` / ``gc.parameter`` tensors ``tensors`` depend on, sorted by name."""
    return [t for _, t in sorted(symbolic.leaves(list(tensors), op).items())]


def load(case: Case) -> dict:
    """Execute the case's source: a namespace with ``model`` and ``feeds``."""
    ns: dict = {}
    exec(compile(case.source, f"<fuzz case {case.seed}>", "exec"), ns)  # noqa: S102
    return ns


def input_graph(case: Case) -> Graph:
    g, _ = Graph.from_values(load(case)["model"]())
    return g


@contextlib.contextmanager
def _stage(res: dict, name: str):
    try:
        yield
    except gc.GraphcError as e:
        res[f"{name}: raised"] = Raised(e)


def observe(case: Case, backend: str, perturb: tuple[tuple[int, ...], float] | None = None,
            init: dict | None = None,
            jitter: tuple[int, float] | None = None) -> dict[str, object]:
    """Everything the case observes on ``backend`` (see the module docstring).

    ``perturb=(signs, rtol)`` (reference backend only): skip the gradient
    function, and move the gradients each optimizer step applies, and the
    parameters and optimizer state it leaves, by ``sign * rtol * (|a| +
    max|a|)`` -- the edge of their tolerance -- to measure how far the rest
    of the training carries an allowed error.  ``init``: start the training
    from these parameters instead of the seed's.  ``jitter=(seed, rtol)``: multiply
    every float feed entry by ``1 +- rtol``, and every value the reference computes by
    ``1 +- NOISE_ULPS * eps`` (random signs from ``seed``; see :func:`conditioning`).
    """
    ns = load(case)
    rng = np.random.default_rng(case.seed)
    batches = [ns["feeds"](rng, n) for n in case.batches]
    if jitter is not None:
        batches = _jittered(batches, *jitter)
        with _rounding_noise(jitter[0]):
            return _observe(case, backend, perturb, init, batches)
    return _observe(case, backend, perturb, init, batches)


def _observe(case: Case, backend: str, perturb, init, batches) -> dict[str, object]:
    ns = load(case)
    res: dict[str, object] = {}
    m = ns["model"]()
    loss = m.pop("loss")
    inputs = leaves([loss, *m.values()], "input")
    wrt = leaves([loss, *m.values()], "parameter")  # incl. any the loss ignores: zero gradients
    wrt += [t for t in inputs if t.node.get("name") in case.grad_inputs]
    names = [t.node.get("name") for t in wrt]
    common = dict(dtype=case.dtype, seed=case.seed, backend=backend)
    if perturb is None:
        with _stage(res, "gradients"):
            f = gc.function(inputs, [loss, *gc.grad(loss, wrt)], **common)
            vals = f(*(batches[0][t.node.get("name")] for t in inputs))
            res["gc.function: loss"] = vals[0]
            for n, v in zip(names, vals[1:], strict=True):
                res[f"gradient of {n}"] = v
    optimizer = eval(case.optimizer, {"gc": gc})  # noqa: S307 -- our own generated call
    net = None
    with _stage(res, "gc.compile"):
        net = gc.compile(loss=loss, outputs=m, optimizer=optimizer, **common, **case.train)
    if net is None:
        return res
    if init is not None:
        net.set_params(init)
    if perturb is None:
        with _stage(res, "run"):
            for k, v in net.run(batches[0]).items():
                res[f"run: {k}"] = v
    with _perturbed_updates(perturb):
        for s, b in enumerate(batches[1:], 1):
            with _stage(res, f"step {s}"):
                res[f"step {s}: loss"] = np.float64(net.step(b))
    for k, v in net.params.items():
        res[f"after {len(batches) - 1} steps: {k}"] = v
    for k, v in net.state.items():
        res[f"optimizer state {k}"] = v
    with _stage(res, "run after the steps"):
        for k, v in net.run(batches[0]).items():
            res[f"run after the steps: {k}"] = v
    return res


def after_an_update(key: str) -> bool:
    """Whether observation ``key`` depends on parameters an optimizer step has changed."""
    return not key.startswith(("gc.function", "gradient of", "run: ", "step 1"))


@contextlib.contextmanager
def _perturbed_updates(perturb):
    if perturb is None:
        yield
        return
    import graphc.runtime.program as program

    signs, rtol = perturb
    original = program.reference_update

    def edge(a: np.ndarray, sign: int) -> np.ndarray:
        fin = np.isfinite(a)
        scale = np.max(np.abs(a[fin]), initial=0.0)
        moved = a + a.dtype.type(sign * rtol) * (np.abs(a) + scale)
        return np.where(fin, moved, a).astype(a.dtype)

    def update(p, g, state, attrs, lr, step):
        sign = signs[step - 1]
        original(p, edge(np.asarray(g), sign), state, attrs, lr, step)
        for a in (p, *state.values()):  # and what the update computed, at its edge too
            a[...] = edge(a, sign)

    program.reference_update = update
    try:
        yield
    finally:
        program.reference_update = original


def spread(case: Case, want: dict, rtol: float) -> dict[str, np.ndarray]:
    """Per post-update observation: how far the reference moves when every step's gradients
    sit at the edge of their tolerance (all four sign patterns over the two steps)."""
    out: dict[str, np.ndarray] = {}
    steps = len(case.batches) - 1
    later = [k for k in want if after_an_update(k)]
    for signs in itertools.product((1, -1), repeat=steps):
        _widen(out, observe(case, "reference", perturb=(signs, rtol)), want, later)
    return out


def _widen(out: dict[str, np.ndarray], obs: dict, want: dict, keys) -> None:
    """``out[key]``: the largest elementwise distance so far between a perturbed
    reference run ``obs`` and ``want``, over the finite entries of both."""
    for key in keys:
        a, b = obs.get(key), want.get(key)
        if a is None or isinstance(a, Raised) or isinstance(b, Raised):
            continue
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.shape != b.shape:
            continue
        d = np.where(np.isfinite(a) & np.isfinite(b), np.abs(a - b), 0.0)
        out[key] = np.maximum(out[key], d) if key in out else d


def _summed(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per key, the elementwise sum of two allowances (either may lack the key)."""
    return {k: a[k] + b[k] if k in a and k in b else a.get(k, b.get(k)) for k in {*a, *b}}


def _jittered(batches: list[dict], seed: int, rtol: float) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for b in batches:
        moved = {}
        for k, a in b.items():
            if a.dtype.kind == "f":
                s = rng.choice(np.array([-rtol, rtol]), size=a.shape)
                a = (a * (1 + s)).astype(a.dtype)
            moved[k] = a
        out.append(moved)
    return out


@contextlib.contextmanager
def _rounding_noise(seed: int):
    """Every float value the reference interpreter computes, multiplied by ``1 +-
    NOISE_ULPS * eps`` (random signs): each op's result as another correct rounding
    of it might be.  That shows how much a value depends on the rounding of one
    intermediate, e.g. tanh' = 1 - y*y at a saturated y, where one ulp of y moves
    the derivative by percents (campaign seed 9003, case 86)."""
    import graphc.runtime.reference as reference
    from graphc.ir.node import FLOAT

    original = reference._cast
    rng = np.random.default_rng([seed, 1])

    def noisy(out, kind, fdt):
        v = original(out, kind, fdt)
        if kind == FLOAT and v.dtype.kind == "f" and v.size:
            e = np.finfo(v.dtype).eps * NOISE_ULPS
            v = v * (1 + rng.choice(np.array([-e, e], dtype=v.dtype), size=v.shape))
        return v

    reference._cast = noisy
    try:
        yield
    finally:
        reference._cast = original


def conditioning(case: Case, want: dict, rtol: float, keys) -> dict[str, np.ndarray]:
    """Per observation in ``keys``: how far the reference moves when every float feed
    entry is moved by a relative ``rtol``, and every value it computes by a few ulps,
    with random signs (``CONDITIONING_DRAWS`` draws).

    Each backend's result is the exact answer for inputs perturbed by about the
    rounding of the terms it sums, and each op's result is one of the roundings of
    the exact one, so two correct results can differ by this much, whatever the
    value's own size (a sum that cancels to ~0, a derivative 1 - y*y at y ~ 1).
    """
    out: dict[str, np.ndarray] = {}
    for draw in range(CONDITIONING_DRAWS):
        _widen(out, observe(case, "reference", jitter=(draw, rtol)), want, keys)
    return out


def differences(got: dict, want: dict, rtol: float, extra: dict | None = None,
                keys=None) -> dict[str, str]:
    """Every way the compiled observation ``got`` differs from the reference ``want``:
    observation key -> what differs.

    ``extra``: per key, an elementwise allowance added to the tolerance (see
    :func:`.tolerances.mismatch`).  ``keys``: compare only these.
    """
    out = {}
    for key in sorted(set(got) | set(want)) if keys is None else keys:
        if key not in got or key not in want:
            which = "compiled" if key in got else "reference"
            out[key] = (f"{key}: only the {which} backend has it "
                        f"({got.get(key, want.get(key))!r})")
            continue
        a, b = got[key], want[key]
        if isinstance(a, Raised) or isinstance(b, Raised):
            if not (isinstance(a, Raised) and isinstance(b, Raised) and a.kind == b.kind):
                out[key] = f"{key}: compiled {a!r} but reference {b!r}"
            continue
        msg = mismatch(key, a, b, rtol, (extra or {}).get(key))
        if msg:
            out[key] = msg
    return out


def float64_truth(case: Case) -> dict[str, object]:
    """The reference backend in float64 from the float32 case's own initial parameters
    and feeds: what the float32 training would give without rounding."""
    assert case.dtype == "float32"
    init = gc.compile(loss=load(case)["model"]()["loss"], dtype="float32", seed=case.seed,
                      backend="reference").params
    exact = dataclasses.replace(case, dtype="float64")
    return observe(exact, "reference", init={k: v.astype(np.float64) for k, v in init.items()})


def float32_ensemble(case: Case) -> list[dict[str, object]]:
    """The reference in float32, re-run with every value it computes moved by a few ulps
    (``ENSEMBLE_DRAWS`` draws of :func:`_rounding_noise`, feeds unchanged): other
    float32 computations of the same maths, each as correct as the reference."""
    return [observe(case, "reference", jitter=(draw, 0.0)) for draw in range(ENSEMBLE_DRAWS)]


def judged_by_truth(key: str, got, wants: list, truth, rtol: float) -> str | None:
    """For a float32 value that float32 cannot compute reliably: None if the compiled
    value is about as close to the float64 truth as the float32 references ``wants``
    (the reference and its :func:`float32_ensemble`) are -- the farthest of them, as
    the chaotic cases show that which of them lands close is luck (see
    :mod:`.tolerances`) -- else why not."""
    a = np.asarray(got, dtype=np.float64)
    t = np.asarray(truth, dtype=np.float64)
    bs = [np.asarray(w, dtype=np.float64) for w in wants
          if w is not None and not isinstance(w, Raised)]
    bs = [b for b in bs if b.shape == a.shape]
    fin = np.isfinite(a) & np.isfinite(t)
    for b in bs:
        fin &= np.isfinite(b)
    if a.shape != t.shape or not bs or not fin.any():
        return f"{key}: no finite float64 truth to judge by"
    scale = float(np.max(np.abs(t[fin])))
    err_c = float(np.max(np.abs(a - t)[fin]))
    err_r = max(float(np.max(np.abs(b - t)[fin])) for b in bs)
    if err_c <= TRUTH_FACTOR * err_r + rtol * scale:
        return None
    return (f"{key}: and against the float64 truth the compiled float32 value is off by "
            f"{err_c:.3g}, the float32 reference (the farthest of it and its "
            f"{len(bs) - 1} rounding-noise reruns) by {err_r:.3g} (allowed: "
            f"{TRUTH_FACTOR:g}x + rtol)")


def hypothesis_seed() -> str:
    s = os.environ.get("GRAPHC_FUZZ_SEED")
    return f"GRAPHC_FUZZ_SEED={s}" if s else "derandomized (settings(derandomize=True))"


def report(case: Case, problems: list[str], error: BaseException | None = None) -> str:
    """A failure message a person can act on without the test suite."""
    try:
        graph = to_text(input_graph(case))
    except Exception as e:  # noqa: BLE001 -- the graph may be what is broken
        graph = f"(could not build the graph: {type(e).__name__}: {e})\n"
    lines = [f"differential fuzz failure: hypothesis seed {hypothesis_seed()}, case seed "
             f"{case.seed}, dtype {case.dtype}, depth {case.depth}, rtol "
             f"{rtol_for(case.dtype, case.depth):g}, batches {list(case.batches)}",
             f"features: {', '.join(case.tags)}", ""]
    lines += problems
    if error is not None:
        lines += ["", "".join(traceback.format_exception(error)).rstrip()]
    lines += ["", "--- the graph (graphc dump --stage input) ---", graph.rstrip(), "",
              "--- reproduction: save as repro.py, run `python repro.py` "
              "(or `graphc dump repro.py:model`) ---", case.snippet().rstrip()]
    return "\n".join(lines)


def check_case(case: Case) -> dict[str, float]:
    """Run both backends and fail with a reproduction if they disagree.

    Returns how much of the tolerance the case used (see :func:`.tolerances.used`):
    the largest fraction over the values before any update ("before") and after
    ("after", without the update allowances), and which escape hatch was needed.
    """
    stats = {"before": 0.0, "after": 0.0, "spread": 0.0, "truth": 0.0, "jitter": 0.0}

    def truth_judge(found: dict[str, str]) -> dict[str, str]:
        """In float32, drop from ``found`` the values about as close to the float64 truth
        as the float32 references are (see :mod:`.tolerances`)."""
        if not found or case.dtype != "float32":
            return found
        stats["truth"] = 1.0
        truth = float64_truth(case)
        others = float32_ensemble(case)
        out = {}
        for key, msg in found.items():
            a, b = got.get(key), want.get(key)
            if (a is None or b is None or isinstance(a, Raised) or isinstance(b, Raised)
                    or mismatch(key, a, b, np.inf) is not None):
                out[key] = msg  # missing, raised, or NaN/inf in other places: no excuse
                continue
            verdict = judged_by_truth(key, got[key], [want[key], *(o.get(key) for o in others)],
                                      truth.get(key), rtol)
            if verdict is not None:
                out[key] = f"{msg}\n  {verdict}"
        return out

    try:
        with np.errstate(all="ignore"):  # NaN/inf features make NumPy warn; they are intended
            got = observe(case, "compiled")
            want = observe(case, "reference")
            rtol = rtol_for(case.dtype, case.depth)
            problems = differences(got, want, rtol)
            for key in set(got) & set(want):
                if not isinstance(got[key], Raised) and not isinstance(want[key], Raised):
                    which = "after" if after_an_update(key) else "before"
                    stats[which] = max(stats[which], used(got[key], want[key], rtol))
            early = [k for k in problems if not after_an_update(k)]
            if early:
                # Values before an update: allow what the reference itself moves when
                # its feeds move by rtol (a sum of large terms cancelling to ~0; campaign
                # seed 5003 case 27: a PReLU slope gradient of 1e-18, one entry) ...
                stats["jitter"] = 1.0
                problems = {k: v for k, v in problems.items() if after_an_update(k)}
                problems.update(differences(got, want, rtol,
                                            conditioning(case, want, rtol, early), early))
            if any(after_an_update(k) for k in problems):
                stats["spread"] = 1.0
                # Values after an update: allow what the reference itself spreads to ...
                allowed = spread(case, want, rtol)
                later = differences(got, want, rtol, allowed,
                                    [k for k in problems if after_an_update(k)])
                if later:
                    # ... plus, where that is not enough, what it moves by rounding
                    # noise: a value that cancels before the update still cancels
                    # after it (seed 13035 case 16: h - tanh(h) at h ~ 1e-4, carried
                    # through an Adam step) ...
                    stats["jitter"] = 1.0
                    allowed = _summed(allowed, conditioning(case, want, rtol, list(later)))
                    later = differences(got, want, rtol, allowed, list(later))
                problems = {k: v for k, v in problems.items() if not after_an_update(k)}
                problems.update(later)
            # ... and in float32, whatever still differs is judged against the float64
            # answer: after an update, float32 training can be chaotic; before one, a dot
            # product can cancel (terms of size 1 summing to 1e-4), leaving each backend's
            # result off the truth by rounding of the terms' size while the two BLAS
            # libraries (MKL in graphc's kernels, OpenBLAS under NumPy's @ in the
            # reference) sum in different orders.  Campaign seed 3004, case 8: compiled
            # 1.5e-8 from the float64 truth, the reference 1.1e-7, the tolerance 1.4e-8.
            problems = truth_judge(problems)
    except Exception as e:  # noqa: BLE001 -- a crash is a finding too
        raise AssertionError(report(case, [f"crashed: {type(e).__name__}: {e}"], e)) from None
    if problems:
        raise AssertionError(report(case, list(problems.values())))
    return stats
