"""Activation functions, their derivatives, softmax and log-softmax.

Semantics follow PyTorch exactly (see each scalar helper).  The 2-D kernels
branch on the activation code once, outside the element loops, so each loop
nest contains a single activation and LLVM can vectorise it; per-element
flags that are loop-invariant (bias present, from_y) are unswitched by LLVM.

Derivatives can be taken from the saved output y (``from_y=True``: linear,
relu, sigmoid, tanh, leaky_relu with alpha > 0, elu with alpha >= 0) or from
the saved pre-activation z (``from_y=False``: every activation; required for
softplus and prelu).

exp/tanh/sigmoid go through ``graphc.kernels.mathfn``, which picks libm for
float64 and a vectorisable polynomial for float32 (exhaustively swept: at most
1 float32 step from the correctly rounded result; in a loop exp 0.50 ns vs
libm's 2.24, tanh 0.83 vs 22.8, sigmoid 0.94 vs 2.9 ns per element; details
there).  Measured act_fwd/act_bwd on float32 (256x1000): relu 0.27/0.35,
sigmoid 0.94/1.08 (0.35 from y), tanh 0.81/0.84 (0.35 from y) ns per element.
softplus is still libm-bound (log1p: ~40 ns per element).
"""

import numpy as np
from graphc.kernels._util import FASTMATH, like
from graphc.kernels.mathfn import exp_, expm1_, sigmoid_, tanh_
from numba import njit

LINEAR = 0
RELU = 1
SIGMOID = 2
TANH = 3
LEAKY_RELU = 4
ELU = 5
SOFTPLUS = 6
PRELU = 7

ACTIVATION_CODES = {
    "linear": LINEAR,
    "relu": RELU,
    "sigmoid": SIGMOID,
    "tanh": TANH,
    "leaky_relu": LEAKY_RELU,
    "elu": ELU,
    "softplus": SOFTPLUS,
    "prelu": PRELU,
}

SOFTPLUS_THRESHOLD = 20.0  # PyTorch's default (beta = 1)


def derivative_from_y_ok(act, alpha=0.0):
    """Whether the derivative of ``act`` can be recovered from its output y."""
    if act in (LINEAR, RELU, SIGMOID, TANH):
        return True
    if act == LEAKY_RELU:
        return alpha > 0
    if act == ELU:
        return alpha >= 0
    return False


# ---------------------------------------------------------------- scalar helpers
# ``al``/``aj`` must already have the dtype of ``v`` (see _util.like).


# Tests are written "v <= 0" so that NaN falls through to v and propagates.
# Derivatives at a NaN input are PyTorch's, which are not uniform: relu and elu
# test "z <= 0" (NaN passes g through), leaky_relu and prelu test "z > 0" (NaN
# gets the slope); sigmoid, tanh and softplus give NaN.


@njit(fastmath=FASTMATH, error_model="numpy")
def relu(v):
    return like(v, 0.0) if v <= 0 else v


@njit(fastmath=FASTMATH, error_model="numpy")
def leaky_relu(v, al):
    return al * v if v <= 0 else v


@njit(fastmath=FASTMATH, error_model="numpy")
def elu(v, al):
    # expm1, not exp - 1, which cancels near 0 (elu(-1e-8) came out 0).  Conditional
    # expression, so the pure-Python path never evaluates exp of a large z.
    return al * expm1_(v) if v <= 0 else v


@njit(fastmath=FASTMATH, error_model="numpy")
def softplus(v):
    return v if v > 20 else np.log1p(exp_(v))


@njit(fastmath=FASTMATH, error_model="numpy")
def prelu(v, aj):
    return aj * v if v <= 0 else v


@njit(fastmath=FASTMATH, error_model="numpy")
def act_scalar(act, al, aj, v):
    """f(v) for one element (slow generic path; the kernels below branch outside loops)."""
    if act == RELU:
        return relu(v)
    if act == SIGMOID:
        return sigmoid_(v)
    if act == TANH:
        return tanh_(v)
    if act == LEAKY_RELU:
        return leaky_relu(v, al)
    if act == ELU:
        return elu(v, al)
    if act == SOFTPLUS:
        return softplus(v)
    if act == PRELU:
        return prelu(v, aj)
    return v


@njit(fastmath=FASTMATH, error_model="numpy")
def dact_from_z(act, al, aj, v):
    """f'(z)."""
    one = like(v, 1.0)
    if act == RELU:
        return like(v, 0.0) if v <= 0 else one
    if act == SIGMOID:
        s = sigmoid_(v)
        return s * (one - s)
    if act == TANH:
        t = tanh_(v)
        return one - t * t
    if act == LEAKY_RELU:
        return one if v > 0 else al
    if act == ELU:
        return al * exp_(v) if v <= 0 else one
    if act == SOFTPLUS:
        return one if v > 20 else sigmoid_(v)
    if act == PRELU:
        return one if v > 0 else aj
    return one


@njit(fastmath=FASTMATH, error_model="numpy")
def dact_from_y(act, al, y):
    """f'(z) expressed through y = f(z) (only for the activations where that is valid)."""
    one = like(y, 1.0)
    if act == RELU:
        return like(y, 0.0) if y <= 0 else one
    if act == SIGMOID:
        return y * (one - y)
    if act == TANH:
        return one - y * y
    if act == LEAKY_RELU:
        return one if y > 0 else al
    if act == ELU:
        return y + al if y <= 0 else one
    return one


# ---------------------------------------------------------------- 2-D kernels


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def bias_act_fwd(act, alpha, a, s, b, y):
    """Epilogue: v = s + b (b size-0: no bias); s = v; y = f(v), in one pass.

    ``s`` holds the GEMM result and keeps the pre-activation; it may be the
    same array as ``y`` (pre-activation not saved).
    """
    n, m = s.shape
    al = like(s, alpha)
    hb = b.size > 0
    if act == RELU:
        for i in range(n):
            for j in range(m):
                v = s[i, j] + b[j] if hb else s[i, j]
                s[i, j] = v
                y[i, j] = relu(v)
    elif act == SIGMOID:
        for i in range(n):
            for j in range(m):
                v = s[i, j] + b[j] if hb else s[i, j]
                s[i, j] = v
                y[i, j] = sigmoid_(v)
    elif act == TANH:
        for i in range(n):
            for j in range(m):
                v = s[i, j] + b[j] if hb else s[i, j]
                s[i, j] = v
                y[i, j] = tanh_(v)
    elif act == LEAKY_RELU:
        for i in range(n):
            for j in range(m):
                v = s[i, j] + b[j] if hb else s[i, j]
                s[i, j] = v
                y[i, j] = leaky_relu(v, al)
    elif act == ELU:
        for i in range(n):
            for j in range(m):
                v = s[i, j] + b[j] if hb else s[i, j]
                s[i, j] = v
                y[i, j] = elu(v, al)
    elif act == SOFTPLUS:
        for i in range(n):
            for j in range(m):
                v = s[i, j] + b[j] if hb else s[i, j]
                s[i, j] = v
                y[i, j] = softplus(v)
    elif act == PRELU:
        for i in range(n):
            for j in range(m):
                v = s[i, j] + b[j] if hb else s[i, j]
                s[i, j] = v
                y[i, j] = prelu(v, a[j])
    else:
        for i in range(n):
            for j in range(m):
                v = s[i, j] + b[j] if hb else s[i, j]
                s[i, j] = v
                y[i, j] = v


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def act_fwd(act, alpha, a, z, y):
    """y = f(z) elementwise on 2-D arrays; y may be z (in place)."""
    n, m = z.shape
    al = like(z, alpha)
    if act == RELU:
        for i in range(n):
            for j in range(m):
                y[i, j] = relu(z[i, j])
    elif act == SIGMOID:
        for i in range(n):
            for j in range(m):
                y[i, j] = sigmoid_(z[i, j])
    elif act == TANH:
        for i in range(n):
            for j in range(m):
                y[i, j] = tanh_(z[i, j])
    elif act == LEAKY_RELU:
        for i in range(n):
            for j in range(m):
                y[i, j] = leaky_relu(z[i, j], al)
    elif act == ELU:
        for i in range(n):
            for j in range(m):
                y[i, j] = elu(z[i, j], al)
    elif act == SOFTPLUS:
        for i in range(n):
            for j in range(m):
                y[i, j] = softplus(z[i, j])
    elif act == PRELU:
        for i in range(n):
            for j in range(m):
                y[i, j] = prelu(z[i, j], a[j])
    else:
        for i in range(n):
            for j in range(m):
                y[i, j] = z[i, j]


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def check_from_y(act, from_y):
    if from_y and (act == SOFTPLUS or act == PRELU):
        raise ValueError("softplus/prelu derivatives need the pre-activation (from_y=False)")


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def act_bwd_colsum(act, alpha, a, from_y, saved, g, dz, db, da):
    """dz = f'(saved) * g, and in the same pass db += colsum(dz) (db size-0: skip)
    and, for PRELU, da += colsum(g * z * (z <= 0)) (da size-0: skip).

    db/da are accumulated into, so callers zero them first.  dz may be g.
    """
    check_from_y(act, from_y)
    n, m = g.shape
    al = like(g, alpha)
    hb = db.size > 0
    if act == PRELU:
        hda = da.size > 0
        for i in range(n):
            for j in range(m):
                zv = saved[i, j]
                gv = g[i, j]
                neg = not zv > 0  # NaN takes the slope, as in PyTorch
                d = gv * a[j] if neg else gv
                if hda and neg:
                    da[j] += gv * zv
                dz[i, j] = d
                if hb:
                    db[j] += d
    elif from_y:
        for i in range(n):
            for j in range(m):
                d = dact_from_y(act, al, saved[i, j]) * g[i, j]
                dz[i, j] = d
                if hb:
                    db[j] += d
    elif act == RELU:
        for i in range(n):
            for j in range(m):
                d = like(g, 0.0) if saved[i, j] <= 0 else g[i, j]
                dz[i, j] = d
                if hb:
                    db[j] += d
    elif act == SIGMOID:
        for i in range(n):
            for j in range(m):
                d = dact_from_z(SIGMOID, al, al, saved[i, j]) * g[i, j]
                dz[i, j] = d
                if hb:
                    db[j] += d
    elif act == TANH:
        for i in range(n):
            for j in range(m):
                d = dact_from_z(TANH, al, al, saved[i, j]) * g[i, j]
                dz[i, j] = d
                if hb:
                    db[j] += d
    elif act == LEAKY_RELU:
        for i in range(n):
            for j in range(m):
                d = g[i, j] if saved[i, j] > 0 else al * g[i, j]
                dz[i, j] = d
                if hb:
                    db[j] += d
    elif act == ELU:
        for i in range(n):
            for j in range(m):
                d = dact_from_z(ELU, al, al, saved[i, j]) * g[i, j]
                dz[i, j] = d
                if hb:
                    db[j] += d
    elif act == SOFTPLUS:
        for i in range(n):
            for j in range(m):
                d = dact_from_z(SOFTPLUS, al, al, saved[i, j]) * g[i, j]
                dz[i, j] = d
                if hb:
                    db[j] += d
    else:
        for i in range(n):
            for j in range(m):
                d = g[i, j]
                dz[i, j] = d
                if hb:
                    db[j] += d


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def act_bwd(act, alpha, a, from_y, saved, g, dz):
    """dz = f'(.) * g on 2-D arrays; ``saved`` is y (from_y) or z; dz may be g."""
    empty = g.reshape(g.size)[:0]
    act_bwd_colsum(act, alpha, a, from_y, saved, g, dz, empty, empty)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def prelu_da(z, g, da):
    """da[j] = sum_i g[i,j] * z[i,j] * (z[i,j] <= 0)."""
    n, m = z.shape
    for j in range(m):
        da[j] = 0
    for i in range(n):
        for j in range(m):
            zv = z[i, j]
            if not zv > 0:  # a NaN z makes da NaN, as in PyTorch
                da[j] += g[i, j] * zv


# ---------------------------------------------------------------- softmax family


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def softmax_fwd(x, y):
    """Row-wise softmax; a row of all -inf gives NaN (like PyTorch); y may be x."""
    n, c = x.shape
    if c == 0:
        return
    for i in range(n):
        mx = x[i, 0]
        for j in range(c):
            if x[i, j] > mx:
                mx = x[i, j]
        s = like(x, 0.0)
        for j in range(c):
            e = exp_(x[i, j] - mx)
            y[i, j] = e
            s += e
        r = 1 / s
        for j in range(c):
            y[i, j] *= r


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def log_softmax_fwd(x, y):
    """Row-wise log-softmax: (x - max) - log(sum exp(x - max)); y may be x."""
    n, c = x.shape
    if c == 0:
        return
    for i in range(n):
        mx = x[i, 0]
        for j in range(c):
            if x[i, j] > mx:
                mx = x[i, j]
        s = like(x, 0.0)
        for j in range(c):
            d = x[i, j] - mx
            y[i, j] = d
            s += exp_(d)
        # x - max is stored before log(s) is subtracted: written as one expression,
        # reassoc may turn it into x - (max + log s), which rounds at the scale of max.
        ls = np.log(s)
        for j in range(c):
            y[i, j] -= ls


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def softmax_bwd(y, g, dx):
    """dx = y * (g - sum_j g*y), row-wise; dx may be g or y."""
    n, c = y.shape
    for i in range(n):
        s = like(y, 0.0)
        for j in range(c):
            s += g[i, j] * y[i, j]
        for j in range(c):
            dx[i, j] = y[i, j] * (g[i, j] - s)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def log_softmax_bwd(y, g, dx):
    """dx = g - exp(y) * sum_j g, row-wise, with y the log-softmax output; dx may be g or y."""
    n, c = y.shape
    for i in range(n):
        s = like(g, 0.0)
        for j in range(c):
            s += g[i, j]
        for j in range(c):
            dx[i, j] = g[i, j] - exp_(y[i, j]) * s
