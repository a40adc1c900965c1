import numpy as np
import pytest
from graphc.kernels import activations as A

from . import refs
from .conftest import DTYPES, tol

ACTS = [A.LINEAR, A.RELU, A.SIGMOID, A.TANH, A.LEAKY_RELU, A.ELU, A.SOFTPLUS, A.PRELU]
ALPHA = {A.LEAKY_RELU: 0.01, A.ELU: 1.3}
SHAPES = [(5, 13), (1, 1), (1, 9), (7, 1), (0, 4), (3, 0), (4, 33)]


def _data(rng, shape, dtype, scale=3.0):
    z = rng.standard_normal(shape) * scale
    if z.size:
        z.flat[0] = 0.0  # the kink: relu'(0) = 0, leaky'(0) = alpha
    return z.astype(dtype)


def _slopes(rng, m, dtype, act):
    if act != A.PRELU:
        return np.zeros(0, dtype)
    return rng.uniform(-0.5, 0.5, m).astype(dtype)


def test_codes_match_brief():
    assert (A.LINEAR, A.RELU, A.SIGMOID, A.TANH) == (0, 1, 2, 3)
    assert (A.LEAKY_RELU, A.ELU, A.SOFTPLUS, A.PRELU) == (4, 5, 6, 7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_act_fwd(act, dtype, rng):
    alpha = ALPHA.get(act, 0.0)
    for shape in SHAPES:
        z = _data(rng, shape, dtype)
        a = _slopes(rng, shape[1], dtype, act)
        ref = refs.act(act, z, alpha, a.astype(np.float64) if act == A.PRELU else None)
        y = np.empty_like(z)
        A.act_fwd(act, alpha, a, z, y)
        np.testing.assert_allclose(y, ref, **tol(dtype))
        A.act_fwd(act, alpha, a, z, z)  # in place
        np.testing.assert_allclose(z, ref, **tol(dtype))


def _from_y_modes(act, alpha):
    modes = [False]
    if A.derivative_from_y_ok(act, alpha):
        modes.append(True)
    return modes


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_act_bwd(act, dtype, rng):
    alpha = ALPHA.get(act, 0.0)
    for shape in SHAPES:
        z = _data(rng, shape, dtype)
        a = _slopes(rng, shape[1], dtype, act)
        a64 = a.astype(np.float64) if act == A.PRELU else None
        g = rng.standard_normal(shape).astype(dtype)
        ref = refs.dact(act, z, alpha, a64) * g
        y = refs.act(act, z, alpha, a64).astype(dtype)
        for from_y in _from_y_modes(act, alpha):
            saved = y if from_y else z
            dz = np.empty_like(g)
            A.act_bwd(act, alpha, a, from_y, saved, g, dz)
            np.testing.assert_allclose(dz, ref, **tol(dtype), err_msg=f"from_y={from_y}")
            g2 = g.copy()
            A.act_bwd(act, alpha, a, from_y, saved, g2, g2)  # dz aliases g
            np.testing.assert_allclose(g2, ref, **tol(dtype))


def test_from_y_rejected_for_softplus_and_prelu():
    z = np.ones((2, 3))
    for act in (A.SOFTPLUS, A.PRELU):
        with pytest.raises(ValueError):
            A.act_bwd(act, 0.0, np.ones(3), True, z, z, np.empty_like(z))


def test_from_y_validity_table():
    assert A.derivative_from_y_ok(A.LEAKY_RELU, 0.01)
    assert not A.derivative_from_y_ok(A.LEAKY_RELU, -0.1)
    assert A.derivative_from_y_ok(A.ELU, 0.0)
    assert not A.derivative_from_y_ok(A.ELU, -1.0)
    assert not A.derivative_from_y_ok(A.SOFTPLUS)


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_da(dtype, rng):
    for shape in SHAPES:
        z = _data(rng, shape, dtype)
        g = rng.standard_normal(shape).astype(dtype)
        da = np.full(shape[1], np.nan, dtype)
        A.prelu_da(z, g, da)
        z64 = z.astype(np.float64)
        ref = (g * z64 * (z64 <= 0)).sum(axis=0)
        np.testing.assert_allclose(da, ref, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_extreme_values(dtype):
    big = [-1e4, -800.0, -100.0, -30.0, -20.5, 20.5, 30.0, 100.0, 800.0, 1e4]
    z = np.array([big], dtype)
    with np.errstate(over="ignore"):
        for act in (A.SIGMOID, A.TANH, A.SOFTPLUS, A.ELU):
            y = np.empty_like(z)
            A.act_fwd(act, 1.0, np.zeros(0, dtype), z, y)
            ref = refs.act(act, z.astype(np.float64), 1.0)
            assert np.isfinite(y).all(), act
            np.testing.assert_allclose(
                y, ref, rtol=1e-6 if dtype == np.float32 else 1e-14, atol=np.finfo(dtype).tiny
            )
    special = np.array([[np.nan, np.inf, -np.inf, 0.0, -0.0]], dtype)
    y = np.empty_like(special)
    A.act_fwd(A.SIGMOID, 0.0, np.zeros(0, dtype), special, y)
    np.testing.assert_array_equal(y, [[np.nan, 1.0, 0.0, 0.5, 0.5]])
    A.act_fwd(A.TANH, 0.0, np.zeros(0, dtype), special, y)
    np.testing.assert_array_equal(y, [[np.nan, 1.0, -1.0, 0.0, 0.0]])
    A.act_fwd(A.RELU, 0.0, np.zeros(0, dtype), special, y)
    np.testing.assert_array_equal(y, [[np.nan, np.inf, 0.0, 0.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_family(dtype, rng):
    for shape in [(4, 10), (1, 1), (3, 1), (0, 5), (2, 17)]:
        x = (rng.standard_normal(shape) * 5).astype(dtype)
        g = rng.standard_normal(shape).astype(dtype)
        x64, g64 = x.astype(np.float64), g.astype(np.float64)
        y = np.empty_like(x)
        A.softmax_fwd(x, y)
        p = refs.softmax(x64) if x.size else x64
        np.testing.assert_allclose(y, p, **tol(dtype))
        dx = np.empty_like(x)
        A.softmax_bwd(y, g, dx)
        ref = p * (g64 - (g64 * p).sum(axis=1, keepdims=True))
        np.testing.assert_allclose(dx, ref, **tol(dtype))

        ly = np.empty_like(x)
        A.log_softmax_fwd(x, ly)
        lp = refs.log_softmax(x64) if x.size else x64
        np.testing.assert_allclose(ly, lp, **tol(dtype))
        A.log_softmax_bwd(ly, g, dx)
        ref = g64 - np.exp(lp) * g64.sum(axis=1, keepdims=True)
        np.testing.assert_allclose(dx, ref, **tol(dtype))

        # in place
        xc = x.copy()
        A.softmax_fwd(xc, xc)
        np.testing.assert_allclose(xc, p, **tol(dtype))
        gc = g.copy()
        A.log_softmax_bwd(ly, gc, gc)
        np.testing.assert_allclose(gc, ref, **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_stability_and_inf_rows(dtype):
    x = np.array([[1000.0, 1000.0, -1000.0], [-np.inf] * 3, [0.0, -np.inf, 0.0]], dtype)
    y = np.empty_like(x)
    A.softmax_fwd(x, y)
    np.testing.assert_allclose(y[0], [0.5, 0.5, 0.0])
    assert np.isnan(y[1]).all()  # like torch.softmax of an all -inf row
    np.testing.assert_allclose(y[2], [0.5, 0.0, 0.5])
    A.log_softmax_fwd(x, y)
    np.testing.assert_allclose(y[0, :2], [-np.log(2)] * 2, rtol=1e-6)
    assert np.isnan(y[1]).all()
