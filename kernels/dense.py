"""Fully connected layer kernels: y = f(x @ W + b), its backward, and the SGD-folded backward.

Shapes: x (n, k), W (k, m), b (m,) or size-0 (no bias), z/y/g/dz (n, m).
Every GEMM goes through ``gemm_auto`` (BLAS or the loop kernel by size, see
``blas.py``); bias and activation run as one epilogue pass over the output,
and dz, db (and PReLU's da) are produced in one pass over g.
"""

from graphc.kernels._util import FASTMATH, like
from graphc.kernels.activations import (
    PRELU,
    act_bwd_colsum,
    act_scalar,
    bias_act_fwd,
    check_from_y,
    dact_from_y,
    dact_from_z,
)
from graphc.kernels.blas import gemm_auto
from graphc.kernels.views import carve
from numba import njit


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def dense_fwd(x, W, b, act, alpha, a, z, y):
    """z = x@W + b, y = f(z).  z size-0: the pre-activation is not kept (the GEMM
    writes into y and the epilogue works in place)."""
    s = z if z.size > 0 else y
    gemm_auto(False, False, 1.0, x, W, 0.0, s)
    bias_act_fwd(act, alpha, a, s, b, y)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def dense_bwd(x, W, saved, g, act, alpha, a, from_y, dz, dx, dW, db, da):
    """dz = f'(saved)*g (dz may be g), db = colsum(dz), dW = x.T@dz, dx = dz@W.T,
    da = PReLU slope gradient.  dx, db, da size-0: skipped."""
    for j in range(db.size):
        db[j] = 0
    if act == PRELU:
        for j in range(da.size):
            da[j] = 0
        act_bwd_colsum(act, alpha, a, from_y, saved, g, dz, db, da)
    else:
        act_bwd_colsum(act, alpha, a, from_y, saved, g, dz, db, da[:0])
    gemm_auto(True, False, 1.0, x, dz, 0.0, dW)
    if dx.size > 0:
        gemm_auto(False, True, 1.0, dz, W, 0.0, dx)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def dense_bwd_sgd(x, W, b, saved, g, act, alpha, a, from_y, dz, dx, tmp, lr, wd):
    """Backward fused with a plain SGD step (no dW buffer):

        dz = f'(saved)*g;  dx = dz @ W.T  (old W, skipped if dx is size-0)
        W  = W*(1 - lr*wd) - lr * x.T@dz  (one GEMM: alpha=-lr, beta=1-lr*wd)
        b -= lr*colsum(dz)                (no decay on b; skipped if b is size-0)
        a -= lr*da                        (PRELU only, no decay)

    ``tmp`` is a workspace of at least m*(has_bias + is_prelu) elements: the
    column sums of dz in tmp[:m] (when there is a bias), then da.  Both must be
    complete before b and a change, because a is still read while dz is formed.
    """
    m = W.shape[1]
    off = 0
    db = tmp[:0]
    if b.size > 0:
        db = tmp[:m]
        off = m
    da = tmp[:0]
    if act == PRELU:
        da = tmp[off : off + m]
    for j in range(db.size):
        db[j] = 0
    for j in range(da.size):
        da[j] = 0
    act_bwd_colsum(act, alpha, a, from_y, saved, g, dz, db, da)
    if dx.size > 0:
        gemm_auto(False, True, 1.0, dz, W, 0.0, dx)
    gemm_auto(True, False, -lr, x, dz, 1.0 - lr * wd, W)
    lr_ = like(W, lr)
    for j in range(db.size):
        b[j] -= lr_ * db[j]
    for j in range(da.size):
        a[j] -= lr_ * da[j]


# ------------------------------------------------------------------ tiny layers
# The same three kernels for layers whose k*m is tiny (codegen picks them by static
# shape, ``SMALL_MAX_KM``; never for PReLU): one loop nest each, no BLAS call, no
# separate epilogue pass.  On the xor step (2-8-1) this and ``carve`` took the native
# time from 1.75 to 0.44 us, where BLAS calls and separate passes cost more than the
# arithmetic.  Inlining them into the entry point (Numba's ``inline="always"``, so the
# shapes become literals) reached 0.15 us but tripled the compile time of small
# graphs (5 s instead of 1.6 s: Numba's IR inliner), so they are ordinary cached
# kernels.  Semantics are those of the kernels above: bias added after the product,
# beta = 0 overwrites, old W for dx.

SMALL_MAX_KM = 256


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def dense_fwd_small(x, W, b, act, alpha, a, z, y):
    n = y.shape[0]
    k = W.shape[0]
    m = W.shape[1]
    al = like(y, alpha)
    hb = b.size > 0
    keep = z.size > 0
    for i in range(n):
        for j in range(m):
            acc = like(y, 0.0)
            for p in range(k):
                acc += x[i, p] * W[p, j]
            v = acc + b[j] if hb else acc
            if keep:
                z[i, j] = v
            y[i, j] = act_scalar(act, al, al, v)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _dz_colsum_small(act, al, from_y, saved, g, dz, db):
    n = g.shape[0]
    m = g.shape[1]
    for j in range(db.size):
        db[j] = 0
    for i in range(n):
        for j in range(m):
            s = saved[i, j]
            d = (dact_from_y(act, al, s) if from_y else dact_from_z(act, al, al, s)) * g[i, j]
            dz[i, j] = d
            if db.size > 0:
                db[j] += d


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _dx_small(dz, W, dx):
    n = dz.shape[0]
    k = W.shape[0]
    m = W.shape[1]
    for i in range(n):
        for p in range(k):
            acc = like(dx, 0.0)
            for j in range(m):
                acc += dz[i, j] * W[p, j]
            dx[i, p] = acc


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def dense_bwd_small(x, W, saved, g, act, alpha, a, from_y, dz, dx, dW, db, da):
    check_from_y(act, from_y)
    _dz_colsum_small(act, like(g, alpha), from_y, saved, g, dz, db)
    n = g.shape[0]
    for p in range(W.shape[0]):
        for j in range(W.shape[1]):
            acc = like(dW, 0.0)
            for i in range(n):
                acc += x[i, p] * dz[i, j]
            dW[p, j] = acc
    if dx.size > 0:
        _dx_small(dz, W, dx)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def dense_bwd_sgd_small(x, W, b, saved, g, act, alpha, a, from_y, dz, dx, tmp, lr, wd):
    check_from_y(act, from_y)
    m = W.shape[1]
    db = carve(tmp, 0, m if b.size > 0 else 0)
    _dz_colsum_small(act, like(g, alpha), from_y, saved, g, dz, db)
    if dx.size > 0:
        _dx_small(dz, W, dx)
    n = g.shape[0]
    lr_ = like(W, lr)
    keep = like(W, 1.0 - lr * wd)
    for p in range(W.shape[0]):
        for j in range(m):
            acc = like(W, 0.0)
            for i in range(n):
                acc += x[i, p] * dz[i, j]
            W[p, j] = W[p, j] * keep - lr_ * acc
    for j in range(db.size):
        b[j] -= lr_ * db[j]
