"""Generic elementwise and reduction kernels for graph nodes the fusion passes
left alone.  1-D views unless noted; every output is preallocated and may be
one of the inputs (each element is read before it is written).
"""

import numpy as np
from graphc.kernels._util import FASTMATH, like
from numba import njit

# ------------------------------------------------------------ binary, scalar-broadcast
# a and b each have out.size elements or exactly one (a broadcast scalar); the
# four cases get their own loops so each stays a plain vectorisable stream.


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ew_add(a, b, out):
    n = out.size
    if a.size == n and b.size == n:
        for i in range(n):
            out[i] = a[i] + b[i]
    elif b.size == n:
        s = a[0]
        for i in range(n):
            out[i] = s + b[i]
    elif a.size == n:
        s = b[0]
        for i in range(n):
            out[i] = a[i] + s
    else:
        s = a[0] + b[0]
        for i in range(n):
            out[i] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ew_sub(a, b, out):
    n = out.size
    if a.size == n and b.size == n:
        for i in range(n):
            out[i] = a[i] - b[i]
    elif b.size == n:
        s = a[0]
        for i in range(n):
            out[i] = s - b[i]
    elif a.size == n:
        s = b[0]
        for i in range(n):
            out[i] = a[i] - s
    else:
        s = a[0] - b[0]
        for i in range(n):
            out[i] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ew_mul(a, b, out):
    n = out.size
    if a.size == n and b.size == n:
        for i in range(n):
            out[i] = a[i] * b[i]
    elif b.size == n:
        s = a[0]
        for i in range(n):
            out[i] = s * b[i]
    elif a.size == n:
        s = b[0]
        for i in range(n):
            out[i] = a[i] * s
    else:
        s = a[0] * b[0]
        for i in range(n):
            out[i] = s


# ------------------------------------------------------------ row-vector broadcast (2-D)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ew_add_row(a, b, out):
    """out[i, j] = a[i, j] + b[j]."""
    n, m = out.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = a[i, j] + b[j]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ew_sub_row(a, b, out):
    """out[i, j] = a[i, j] - b[j]."""
    n, m = out.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = a[i, j] - b[j]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ew_mul_row(a, b, out):
    """out[i, j] = a[i, j] * b[j]."""
    n, m = out.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = a[i, j] * b[j]


# ------------------------------------------------------------ unary


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ew_neg(a, out):
    for i in range(out.size):
        out[i] = -a[i]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def ew_scale(a, s, out):
    """out = a * s (s a Python float, cast to the array dtype)."""
    s_ = like(out, s)
    for i in range(out.size):
        out[i] = a[i] * s_


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def copy(a, out):
    for i in range(out.size):
        out[i] = a[i]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def transpose(a, out):
    """out (m, n) = a (n, m).T, in 32x32 tiles so both sides stay in cache."""
    n, m = a.shape
    T = 32
    for i0 in range(0, n, T):
        i1 = min(i0 + T, n)
        for j0 in range(0, m, T):
            j1 = min(j0 + T, m)
            for i in range(i0, i1):
                for j in range(j0, j1):
                    out[j, i] = a[i, j]


# ------------------------------------------------------------ reductions and broadcasts


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def sum_all(x):
    """Sum of all elements (1-D), accumulated in float64, returned in x's precision."""
    acc = 0.0
    for i in range(x.size):
        acc += np.float64(x[i])
    return like(x, acc)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def sum_axis0(x, out):
    """out[j] = sum_i x[i, j] (row-major: accumulate whole rows into out)."""
    n, m = x.shape
    for j in range(m):
        out[j] = 0
    for i in range(n):
        for j in range(m):
            out[j] += x[i, j]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def sum_axis1(x, out):
    """out[i] = sum_j x[i, j]."""
    n, m = x.shape
    for i in range(n):
        s = like(x, 0.0)
        for j in range(m):
            s += x[i, j]
        out[i] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def broadcast_fill(out, s):
    """out[:] = s (1-D view)."""
    s_ = like(out, s)
    for i in range(out.size):
        out[i] = s_


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def broadcast_rows(v, out):
    """out[i, :] = v (v of shape (m,))."""
    n, m = out.shape
    for i in range(n):
        for j in range(m):
            out[i, j] = v[j]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def broadcast_cols(v, out):
    """out[:, j] = v (v of shape (n,))."""
    n, m = out.shape
    for i in range(n):
        s = v[i]
        for j in range(m):
            out[i, j] = s


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def all_finite(x):
    """True when no element is NaN or +-inf.

    x*0 is 0 for finite x and NaN otherwise; summing that vectorises and cannot
    be folded to 0 because FASTMATH has neither nnan nor ninf.  Checking per
    block keeps the early exit without an unvectorisable per-element branch.
    """
    n = x.size
    B = 256
    for i0 in range(0, n, B):
        acc = like(x, 0.0)
        for i in range(i0, min(i0 + B, n)):
            acc += x[i] * 0
        if acc != acc:
            return False
    return True
