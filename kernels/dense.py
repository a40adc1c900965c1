"""Fully connected layer kernels: y = f(x @ W + b), its backward, and the SGD-folded backward.

Shapes: x (n, k), W (k, m), b (m,) or size-0 (no bias), z/y/g/dz (n, m).
Every GEMM goes through ``gemm_auto`` (BLAS or the loop kernel by size, see
``blas.py``); bias and activation run as one epilogue pass over the output,
and dz, db (and PReLU's da) are produced in one pass over g.
"""

from graphc.kernels._util import FASTMATH, like
from graphc.kernels.activations import PRELU, act_bwd_colsum, bias_act_fwd
from graphc.kernels.blas import gemm_auto
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
