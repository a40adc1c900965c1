"""The numerical pass guard: run a graph before and after a pass and compare.

Both graphs go through the NumPy reference interpreter in float64 on the
same random feeds and parameters.  Compared: every named output, and for
every ``update`` (matched by name) the gradient it applies (times the
clipping factor when there is one) -- that is everything a training step
observes.  A pass that changes any of them beyond ``rtol`` is a compiler
bug; :func:`graphc.passes.optimize` with ``guard=True`` raises
:class:`VerifyError` naming the pass.

Tolerance: ``|after - before| <= rtol * (|before| + max|before|)`` per
element, i.e. relative to each array's scale, so cancellation near zero
(reassociated sums) does not trip it.  NaNs must match position for position.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from graphc.errors import VerifyError
from graphc.ir.graph import Graph
from graphc.ir.node import INT
from graphc.passes.report import GuardResult
from graphc.runtime import reference
from graphc.runtime.feeds import label_classes

GUARD_BATCH = 5
EPS = float(np.finfo(np.float64).eps)


def random_feeds(g: Graph, seed: int = 0, batch: int = GUARD_BATCH
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Random float64 feeds and parameters for every input/parameter of ``g``.

    Integer inputs that are class labels get labels in range; other integer
    inputs get 0/1.
    """
    rng = np.random.default_rng(seed)
    classes = label_classes(g)
    feeds: dict[str, np.ndarray] = {}
    params: dict[str, np.ndarray] = {}
    for n in g.toposort():
        node = g.node(n)
        name = node.get("name")
        shape = tuple(batch if d is None else d for d in node.shape)
        if node.op == "input" and name not in feeds:
            if node.dtype == INT:
                feeds[name] = rng.integers(0, classes.get(name, 2), size=shape).astype(np.int64)
            else:
                feeds[name] = rng.standard_normal(shape)
        elif node.op == "parameter" and name not in params:
            params[name] = rng.standard_normal(shape) * 0.5
    return feeds, params


def observables(g: Graph, feeds: Mapping[str, np.ndarray], params: Mapping[str, np.ndarray],
                dtype: str = "float64") -> dict[str, np.ndarray]:
    """Everything a training step exposes: outputs and the gradient of each update."""
    values = reference.evaluate(g, feeds, params, dtype)
    out = {f"output {k}": np.asarray(values[n]) for k, n in g.outputs.items()}
    for name, uid in g.updates.items():
        ins = g.inputs(uid)
        grad = np.asarray(values[ins[1]])
        if len(ins) == 3:
            grad = grad * values[ins[2]]
        out[f"gradient of {name}"] = grad
    return out


def compare(before: Mapping[str, np.ndarray], after: Mapping[str, np.ndarray], rtol: float,
            where: str = "") -> GuardResult:
    """Compare two observables dicts; raise VerifyError beyond ``rtol``."""
    at = f" by {where}" if where else ""
    if set(before) != set(after):
        missing = sorted(set(before) ^ set(after))
        raise VerifyError(f"the outputs/updates were changed{at}: {', '.join(missing)}")
    max_abs = max_rel = max_ulps = 0.0
    worst = ""
    for key, b in before.items():
        a = after[key]
        if a.shape != b.shape:
            raise VerifyError(f"{key} changed shape{at}: {b.shape} -> {a.shape}")
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        if not np.array_equal(nan_a, nan_b):
            raise VerifyError(f"{key} has NaNs in different places{at}")
        ok = ~nan_b
        a, b = a[ok], b[ok]
        if a.size == 0:
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.where(a == b, 0.0, np.abs(a - b))  # inf == inf is no error
        scale = float(np.max(np.abs(b[np.isfinite(b)]), initial=0.0))
        err_abs = float(diff.max())
        err_rel = err_abs / scale if scale > 0 else err_abs
        mag = np.maximum(np.abs(a), np.abs(b))
        ulps = float(np.max(diff / (np.spacing(np.where(np.isfinite(mag), mag, 1.0)) + 1e-300)))
        if err_rel > max_rel or not worst:
            worst = key
        max_abs, max_rel, max_ulps = max(max_abs, err_abs), max(max_rel, err_rel), max(max_ulps, ulps)
        bad = ~(diff <= rtol * (np.abs(b) + scale))
        if bad.any():
            i = int(np.argmax(bad))
            raise VerifyError(f"{key} changed{at}: max abs error {err_abs:.3g}, relative "
                              f"{err_rel:.3g} > rtol {rtol:g} (element {i}: {b.flat[i]!r} -> "
                              f"{a.flat[i]!r})")
    return GuardResult(len(before), max_abs, max_rel, max_ulps, worst)


def check_pass(before: Graph, after: Graph, rtol: float = 1e-7, where: str = "",
               seed: int = 0) -> GuardResult:
    """Run both graphs on the same random inputs; raise VerifyError if they disagree."""
    feeds, params = random_feeds(before, seed)
    return compare(observables(before, feeds, params), observables(after, feeds, params),
                   rtol, where)
