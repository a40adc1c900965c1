"""The float32 exp/tanh/sigmoid are polynomial approximations; hold them to <= 2 float32
steps from the correctly rounded result (the exhaustive sweep in mathfn.py found <= 1)."""

import numpy as np
import pytest
from graphc.kernels.mathfn import exp_, sigmoid_, tanh_
from numba import njit


@njit(cache=True)
def _map(kind, x, out):
    for i in range(x.size):
        if kind == 0:
            out[i] = exp_(x[i])
        elif kind == 1:
            out[i] = tanh_(x[i])
        else:
            out[i] = sigmoid_(x[i])


def _apply(kind, x):
    out = np.empty_like(x)
    _map(kind, x, out)
    return out


def _steps(y32, ref64):
    """Distance in float32 steps between y and the correctly rounded ref (+0 == -0:
    FASTMATH's nsz may drop the sign of a zero)."""

    def ordinal(v):
        i = v.view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)

    return np.abs(ordinal(y32) - ordinal(ref64.astype(np.float32)))


def _sigmoid64(x):
    return 1.0 / (1.0 + np.exp(-x))


REFS = {0: np.exp, 1: np.tanh, 2: _sigmoid64}
RANGES = {0: (-87.3, 88.7), 1: (-9.0, 9.0), 2: (-87.0, 17.0)}


@pytest.mark.parametrize("kind", [0, 1, 2], ids=["exp", "tanh", "sigmoid"])
def test_float32_within_two_steps(kind, rng):
    lo, hi = RANGES[kind]
    x = np.concatenate(
        [
            rng.uniform(lo, hi, 200_000),
            rng.uniform(-1, 1, 50_000),
            np.linspace(lo, hi, 50_001),
            np.array([0.0, -0.0, 0.625, -0.625, 1e-30, -1e-30, 1e-45]),
        ]
    ).astype(np.float32)
    with np.errstate(over="ignore"):
        ref = REFS[kind](x.astype(np.float64))
    assert _steps(_apply(kind, x), ref).max() <= 2


def test_float32_special_values():
    x = np.array([np.nan, np.inf, -np.inf, 88.8, 100.0, -104.0, -120.0, 0.0], np.float32)
    np.testing.assert_array_equal(_apply(0, x), [np.nan, np.inf, 0, np.inf, np.inf, 0, 0, 1])
    np.testing.assert_array_equal(_apply(1, x), [np.nan, 1, -1, 1, 1, -1, -1, 0])
    np.testing.assert_array_equal(_apply(2, x), [np.nan, 1, 0, 1, 1, 0, 0, 0.5])
    sub = np.array([-88.0, -95.0, -103.0], np.float32)  # subnormal results
    np.testing.assert_allclose(_apply(0, sub), np.exp(sub.astype(np.float64)), rtol=0, atol=2e-45)
    np.testing.assert_allclose(_apply(2, sub), np.exp(sub.astype(np.float64)), rtol=0, atol=2e-45)


def test_float64_is_libm(rng):
    x = rng.uniform(-700, 700, 10_000)
    np.testing.assert_allclose(_apply(0, x), np.exp(x), rtol=1e-15)
    np.testing.assert_allclose(_apply(1, x / 100), np.tanh(x / 100), rtol=1e-15)
    np.testing.assert_allclose(_apply(2, x / 10), _sigmoid64(x / 10), rtol=1e-14)
