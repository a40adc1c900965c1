import numpy as np
import pytest
from graphc.kernels import elementwise as E

from .conftest import DTYPES, tol


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,op", [("ew_add", np.add), ("ew_sub", np.subtract), ("ew_mul", np.multiply)])
def test_binary_with_scalar_broadcast(name, op, dtype, rng):
    fn = getattr(E, name)
    for n in (0, 1, 7, 100):
        a = rng.standard_normal(n).astype(dtype)
        b = rng.standard_normal(n).astype(dtype)
        s = rng.standard_normal(1).astype(dtype)
        for x, y in [(a, b), (s, b), (a, s), (s, s)]:
            out = np.empty(n, dtype)
            fn(x, y, out)
            np.testing.assert_allclose(out, op(x, y) * np.ones(n), **tol(dtype))
        c = a.copy()
        fn(c, b, c)  # out aliases a
        np.testing.assert_allclose(c, op(a, b), **tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_broadcast_and_unary(dtype, rng):
    for n, m in [(3, 5), (1, 1), (0, 4), (6, 17)]:
        a = rng.standard_normal((n, m)).astype(dtype)
        b = rng.standard_normal(m).astype(dtype)
        out = np.empty((n, m), dtype)
        for fn, op in [(E.ew_add_row, np.add), (E.ew_sub_row, np.subtract), (E.ew_mul_row, np.multiply)]:
            fn(a, b, out)
            np.testing.assert_allclose(out, op(a, b), **tol(dtype))
        f = a.reshape(-1)
        o = out.reshape(-1)
        E.ew_neg(f, o)
        np.testing.assert_array_equal(o, -f)
        E.ew_scale(f, 2.5, o)
        np.testing.assert_allclose(o, f * 2.5, **tol(dtype))
        E.copy(f, o)
        np.testing.assert_array_equal(o, f)
        t = np.empty((m, n), dtype)
        E.transpose(a, t)
        np.testing.assert_array_equal(t, a.T)


def test_transpose_large_tiles(rng):
    a = rng.standard_normal((70, 45))
    t = np.empty((45, 70))
    E.transpose(a, t)
    np.testing.assert_array_equal(t, a.T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reductions_and_broadcasts(dtype, rng):
    for n, m in [(3, 5), (1, 1), (0, 4), (4, 0), (9, 33)]:
        x = rng.standard_normal((n, m)).astype(dtype)
        x64 = x.astype(np.float64)
        np.testing.assert_allclose(E.sum_all(x.reshape(-1)), x64.sum(), **tol(dtype))
        o0 = np.full(m, np.nan, dtype)
        E.sum_axis0(x, o0)
        np.testing.assert_allclose(o0, x64.sum(axis=0), **tol(dtype))
        o1 = np.full(n, np.nan, dtype)
        E.sum_axis1(x, o1)
        np.testing.assert_allclose(o1, x64.sum(axis=1), **tol(dtype))
        out = np.empty((n, m), dtype)
        E.broadcast_rows(o0, out)
        np.testing.assert_array_equal(out, np.broadcast_to(o0, (n, m)))
        E.broadcast_cols(o1, out)
        np.testing.assert_array_equal(out, np.broadcast_to(o1[:, None], (n, m)))
        E.broadcast_fill(out.reshape(-1), 1.25)
        assert (out == 1.25).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_all_finite(dtype):
    x = np.linspace(-1e30 if dtype == np.float32 else -1e300, 1e30, 1000).astype(dtype)
    assert E.all_finite(x)
    assert E.all_finite(x[:0])
    for bad in (np.nan, np.inf, -np.inf):
        for pos in (0, 255, 256, 999):
            y = x.copy()
            y[pos] = bad
            assert not E.all_finite(y), (bad, pos)
