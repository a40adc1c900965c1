"""Gradient checks shared by every backend: central finite differences and the VJP identity.

Both checks see a program only through ``loss(feeds, params) -> float`` and the
analytic gradients it claims, ``{name: array}`` (names of feeds or parameters),
so the same code judges the reference interpreter (``tests/foundation/test_ops.py``),
the compiled op table (fused kernels, ``tests/compiled/test_gradients_compiled.py``)
and whole compiled training steps (the same file).

* :func:`assert_matches_finite_differences`: every entry of every gradient against
  a central difference ``(f(x + h e_i) - f(x - h e_i)) / 2h`` with a relative step
  ``h_i = REL_STEP * max(1, |x_i|)``, compared with ``rtol=RTOL, atol=ATOL``.
* :func:`assert_vjp_inner_product`: ``<J^T u, v>`` (the analytic gradients, one
  reverse pass) equals ``<u, J v>`` (one directional central difference) along one
  random direction ``v`` through everything differentiated at once, JAX's
  ``check_grads`` style; step ``REL_STEP * max(1, max |value|)`` over every float
  feed and parameter, ``rtol=RTOL, atol=VJP_ATOL``.

Tolerances (the same for every op, kernel and step: no per-case loosening).  The
truncation error of a central difference is O(h^2 f''') ~ 1e-12; the rounding error
is ~ eps_mach * |terms of f| / h ~ 2.2e-16 * O(10) / 1e-6 ~ 2e-9, which is what
``ATOL`` covers (with a 5x margin) for gradient entries close to zero, where rtol
alone cannot.  This holds for any backend that evaluates f to a few ulps of its
terms -- the compiled kernels reassociate sums and use ``afn`` exp/log/tanh, which
moves f by a few ulps, not more -- and f must be smooth within h of the point: the
samplers keep every kink ``KINK_MARGIN`` (1e-3) away, ~1000 steps.  The VJP
check's single number sums ~100 products (a training step's, a few hundred), so
its atol is 10x the element-wise one; its rtol is the same.  Both are stricter than
PyTorch's ``gradcheck`` defaults (atol 1e-5, rtol 1e-3).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

RTOL, ATOL, REL_STEP = 1e-6, 1e-8, 1e-6
VJP_ATOL = 10 * ATOL

Arrays = Mapping[str, np.ndarray]
LossFn = Callable[[Arrays, Arrays], float]  # loss(feeds, params)


def _moved(feeds: Arrays, params: Arrays, name: str, value: np.ndarray) -> tuple[dict, dict]:
    """(feeds, params) with ``name`` (a feed or a parameter) replaced by ``value``."""
    if name in feeds:
        return {**feeds, name: value}, dict(params)
    return dict(feeds), {**params, name: value}


def numeric_gradient(loss: LossFn, feeds: Arrays, params: Arrays, name: str) -> np.ndarray:
    """d loss / d ``name``, entry by entry, by central differences with a relative step."""
    base = feeds[name] if name in feeds else params[name]
    out = np.zeros(base.shape, dtype=np.float64)
    for idx in np.ndindex(base.shape):
        h = REL_STEP * max(1.0, abs(float(base[idx])))
        vals = []
        for sign in (1, -1):
            moved = base.copy()
            moved[idx] += sign * h
            vals.append(loss(*_moved(feeds, params, name, moved)))
        out[idx] = (vals[0] - vals[1]) / (2 * h)
    return out


def assert_matches_finite_differences(loss: LossFn, feeds: Arrays, params: Arrays,
                                      analytic: Arrays, what: str = "",
                                      scaled_atol: bool = False) -> None:
    """Every gradient in ``analytic`` (by feed / parameter name) against central differences.

    ``scaled_atol``: ``ATOL * max(1, max |numeric|)`` per gradient, for whole losses
    (random graphs) whose gradients, and so the terms rounded in f, reach O(10-100)
    where one op's stay O(1); the rounding argument above is relative to those terms."""
    assert analytic, f"{what}: nothing to differentiate"
    for name, got in analytic.items():
        numeric = numeric_gradient(loss, feeds, params, name)
        atol = ATOL * max(1.0, float(np.abs(numeric).max(initial=0.0))) if scaled_atol else ATOL
        np.testing.assert_allclose(got, numeric, rtol=RTOL, atol=atol,
                                   err_msg=f"d/d{name} of {what}")


def vjp_sides(loss: LossFn, feeds: Arrays, params: Arrays, analytic: Arrays,
              seed: int = 3) -> tuple[float, float]:
    """(<analytic, v>, directional central difference along v), v ~ N(0, 1) drawn per
    name in ``analytic``'s order from ``default_rng(seed)``."""
    rng = np.random.default_rng(seed)
    direction = {n: rng.standard_normal(np.shape(g)) for n, g in analytic.items()}
    lhs = sum(float(np.sum(analytic[n] * direction[n])) for n in analytic)
    scale = max(1.0, *(float(np.abs(v).max()) for v in [*feeds.values(), *params.values()]
                       if v.size and v.dtype.kind == "f"))
    step = REL_STEP * scale

    def moved(sign: int) -> float:
        f = {n: v + sign * step * direction[n] if n in direction else v for n, v in feeds.items()}
        p = {n: v + sign * step * direction[n] if n in direction else v
             for n, v in params.items()}
        return loss(f, p)

    return lhs, (moved(1) - moved(-1)) / (2 * step)


def assert_vjp_inner_product(loss: LossFn, feeds: Arrays, params: Arrays, analytic: Arrays,
                             seed: int = 3, what: str = "") -> None:
    """<J^T u, v> (the analytic gradients) equals <u, J v> (a directional central difference)."""
    lhs, rhs = vjp_sides(loss, feeds, params, analytic, seed)
    np.testing.assert_allclose(lhs, rhs, rtol=RTOL, atol=VJP_ATOL, err_msg=f"VJP of {what}")
