"""The tolerances of the differential fuzzer: the ONE place they are stated.

The compiled backend and the reference interpreter compute the same maths
with different operation orders: BLAS GEMMs blocked differently from NumPy's
(or graphc's own loop kernels for small layers), fused loops compiled with
the ``reassoc``/``contract`` fast-math flags (re-associated sums, FMAs), and
``afn`` approximations of exp/log/tanh.  They are never bitwise equal, so
values are compared with

    |compiled - reference| <= rtol * (|reference| + scale)        elementwise

where ``scale = max |reference|`` over the finite entries of that array,
i.e. an absolute tolerance ``atol = rtol * scale`` relative to the
magnitude of the array's values.  Why the atol: an entry that is the sum of
terms of size ~scale which cancel (a bias gradient summed over the batch, a
softmax-gradient row that sums to zero, a parameter that an update moved
close to zero) carries a rounding error of ~eps * scale, not ~eps * |entry|;
a purely relative test would call that a bug.  Using the array's own largest
value as the size of its terms is what PyTorch's and JAX's tests do with
``atol`` -- here it scales with the data instead of being a constant.

rtol:

* float64: ``1e-10``, flat.  Worst case of a dot product of k <= 96 terms is
  k * eps ~ 2e-14 per GEMM; six layers forward and backward stay below 1e-12
  (the campaigns to seed 12031: before any update every float64 case but one
  used at most 0.0017 of the tolerance, i.e. 1.7e-13; from seed 13000 on,
  cancelling sums such as h - tanh(h) at small h used up to 60x and passed by
  the conditioning rule below), so 1e-10 leaves two orders of magnitude of
  headroom while still catching any wrong formula (which shows up at 1e-3 or
  worse).  After an optimizer step this does not hold: an adaptive optimizer
  turns rounding noise in a tiny gradient entry into a step of size ~lr (see
  below), and the campaigns saw float64 values after two steps up to 211x the
  tolerance (float32: 2.3e4x) -- all admitted by the measured allowances
  below (none by a looser rtol); one, seed 13035 case 16 (a cancelling
  h - tanh(h) carried through an Adam step), needed the spread and the
  rounding-noise allowance together.
* float32: ``1e-5 * (1 + depth)`` where depth is the number of dense layers
  (1-6).  float32 eps is 6e-8; a GEMM over k <= 96 terms has a typical
  (random-walk) error of sqrt(k) * eps ~ 6e-7 and ``afn`` transcendental
  approximations a few ulps; every further layer multiplies in another
  Jacobian and adds its own rounding, so the error grows about linearly with
  depth (errors of successive layers add, to first order, for the
  well-conditioned random networks the fuzzer draws).  1e-5 per layer is
  ~15x the per-layer estimate, and the ``1 +`` covers the loss and the
  optimizer update, which every graph has.

Values before any update (the loss, the gradients, ``run``) that miss this bound get
one allowance, measured like the one below: the reference is re-run with every float
feed entry multiplied by ``1 +- rtol``, and every value it computes multiplied by
``1 +- NOISE_ULPS * eps`` (4; random signs, ``CONDITIONING_DRAWS`` = 8 draws), and
each value may differ by ``UPDATE_SPREAD_FACTOR`` times the largest distance the
reference moved. The allowance is per entry, the largest move over the draws, so it
needs enough draws that no entry's sample is small by luck: in seed 13035 case 16
(arrays of 5320 entries, with the spread below added) two draws left 3 entries 1.5x
over, four draws 0.6x at most, eight 0.2x. Both backends are backward stable -- each
result is the exact answer for inputs perturbed by about the rounding of the terms
it sums, and each op's result one of the roundings of the exact one -- so this
measures how far two correct results can lie apart where the ``scale`` above cannot:
a sum that cancels to ~0 in an array with no larger entry (campaign seed 5003, case
27: a one-entry PReLU slope gradient of 1e-18 whose terms are ~1e-1), or a value
computed from a rounded intermediate that it amplifies (seed 9003, case 86: tanh' =
1 - y*y at y = 1 - 80 ulps moves ~1% per ulp of y, and every layer-0 gradient, all
~1e-20, came out 1.2% apart). A well-conditioned value moves by about rtol *
|value|, so the allowance adds about one tolerance, far below a wrong formula.

After an optimizer step (the second step's loss, the parameters, the
optimizer state, ``run`` after the steps) one more term is added, because
adaptive optimizers are ill-conditioned in the gradient: Adam's and RMSprop's
update ``lr * g / sqrt(v)`` has the same size for every entry whatever |g|,
so a gradient entry that is tiny next to the array's largest (|g| ~ rtol *
max|g|, i.e. one whose allowed error is as large as itself) gets an update
of size ~lr in a direction that is rounding noise.  The two backends then
legitimately differ by up to ~lr in that entry.  The same
holds, less dramatically, whenever a later value depends sensitively on an
earlier one (a second-step gradient of a saturated network on the
parameters the first step left).  The allowance is measured, not guessed:
the reference backend is re-run with every step's gradients, and the
parameters and optimizer state each step leaves, moved to the edge of their
own tolerance, ``a + s * rtol * (|a| + max|a|)``, for the four sign patterns
s = (+-1, +-1) over the two steps; each value may then differ by
``UPDATE_SPREAD_FACTOR`` (2) times the largest distance the reference
itself moved.  For well-conditioned entries (and for plain SGD) that spread
is a few times rtol * |value|, far below any real bug (a wrong formula moves
a parameter by ~lr); it is only computed when the plain comparison fails
after an update.  A value that still misses gets the rounding-noise
allowance above on top: a value that cancels before the update still
cancels after it, and the two allowances measure separate sources of
difference, so they add (seed 13035, case 16: ``h - tanh(h)`` at h ~ 1e-2,
carried into the second step's gradients; Adam's exp_avg for l3/W missed
by 68x, by 7.7x with the spread alone, 0.2x with both).

In float32 one last check applies to values after an update that still
differ: some training runs are chaotic in float32 (saturated tanh whose
derivative 1 - y*y is pure cancellation, a normalising optimizer turning
that noise into steps of size lr), and then NumPy's float32 answer is as
far from the true one as graphc's.  The truth is computed: the reference
backend in float64 from the same (float32-rounded) initial parameters and
feeds.  The value passes if, over the array, the compiled float32 result is
no further from the float64 truth than ``TRUTH_FACTOR`` (2) times the
farthest of the float32 references, plus rtol * scale.  The float32
references are the reference backend and ``ENSEMBLE_DRAWS`` (2) reruns of it
with every value it computes moved by ``NOISE_ULPS`` ulps (random signs,
feeds unchanged; this is judged once per array, not per entry, so a few draws
suffice and more would only loosen it): where float32 training is chaotic, which correct float32
computation lands near the truth is luck (campaign seed 13000, case 4: the
reference's output after two steps was 0.22 off the truth, graphc's 0.46,
and its two reruns 0.98 and 0.76).  NaN/inf positions must still
match exactly.  A wrong formula is far from the truth while the float32
references are close to it, so it still fails.

The same check applies in float32 to values before any update (the loss,
gradients, ``run``) that miss the tolerance.  The tolerance is relative to
the array's largest value, but a dot product whose terms are of size 1 and
sum to 1e-4 carries rounding of the terms' size; graphc's GEMMs (MKL) and
NumPy's (OpenBLAS) sum in different orders, so such cancellation shows up
as a mismatch in which neither side is wrong (campaign seed 3004, case 8:
graphc 1.5e-8 from the float64 truth, the reference 1.1e-7, the tolerance
1.4e-8; seed 3003, case 14: graphc closer to the truth in every value).

Non-finite values are compared strictly: NaN must be NaN in both arrays at
exactly the same positions, +inf/-inf likewise (with the same sign); there
is no NaN filtering.  Shapes and dtypes must be equal too.

This module only imports NumPy, so the reproduction snippets can inline it.
"""

from __future__ import annotations

import numpy as np

F64_RTOL = 1e-10
F32_RTOL = 1e-5
UPDATE_SPREAD_FACTOR = 2.0
TRUTH_FACTOR = 2.0
NOISE_ULPS = 4
CONDITIONING_DRAWS = 8
ENSEMBLE_DRAWS = 2


def rtol_for(dtype: str, depth: int) -> float:
    """The relative tolerance for a graph of ``depth`` dense layers in ``dtype``."""
    if np.dtype(dtype) == np.float64:
        return F64_RTOL
    return F32_RTOL * (1 + depth)


def mismatch(name: str, got, want, rtol: float, extra=None) -> str | None:
    """None if ``got`` (compiled) matches ``want`` (reference), else what differs.

    ``extra``: an elementwise allowance added to the bound (the optimizer
    spread for values after an update; see the module docstring).
    """
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"{name}: shape {got.shape} != reference {want.shape}"
    if got.dtype != want.dtype:
        return f"{name}: dtype {got.dtype} != reference {want.dtype}"
    if got.dtype.kind != "f":
        if not np.array_equal(got, want):
            return f"{name}: {got!r} != reference {want!r}"
        return None
    for label, test in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        g, w = test(got), test(want)
        if not np.array_equal(g, w):
            i = int(np.argmax(g != w))
            idx = np.unravel_index(i, got.shape) if got.ndim else ()
            return (f"{name}: {label} at different positions ({int(g.sum())} in compiled, "
                    f"{int(w.sum())} in reference; first at {idx}: compiled "
                    f"{float(got.flat[i])!r}, reference {float(want.flat[i])!r})")
    fin = np.isfinite(want)
    if not fin.any():
        return None
    a, b = got[fin].astype(np.float64), want[fin].astype(np.float64)
    scale = float(np.max(np.abs(b)))
    err = np.abs(a - b)
    bound = rtol * (np.abs(b) + scale)
    if extra is not None:
        bound = bound + UPDATE_SPREAD_FACTOR * np.asarray(extra, dtype=np.float64)[fin]
    bad = err > bound
    if bad.any():
        k = int(np.argmax(err - bound))
        where = np.argwhere(fin)[k]
        return (f"{name}: max abs error {float(err.max()):.3g} (relative to the array's scale "
                f"{scale:.3g}: {float(err.max()) / scale if scale else float('inf'):.3g}) "
                f"> rtol {rtol:g}; {int(bad.sum())} of {bad.size} entries off, worst at "
                f"{tuple(int(i) for i in where)}: compiled {float(a[k])!r}, reference {float(b[k])!r}")
    return None


def used(got, want, rtol: float) -> float:
    """The largest ``|got - want| / (rtol * (|want| + scale))`` over the finite entries:
    the fraction of the tolerance a comparison used (1 is the limit)."""
    a, b = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    fin = np.isfinite(a) & np.isfinite(b)
    if not fin.any():
        return 0.0
    a, b = a[fin], b[fin]
    bound = rtol * (np.abs(b) + np.max(np.abs(b)))
    err = np.abs(a - b)
    ratio = np.where(bound > 0, err / np.where(bound > 0, bound, 1.0), np.where(err > 0, np.inf, 0.0))
    return float(np.max(ratio))
