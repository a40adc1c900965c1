"""Loss kernels, forward (returning the loss) and backward (writing the gradient).

Reductions match PyTorch's reduction="mean": softmax cross-entropy averages
over the batch, the elementwise losses over all elements; an empty batch gives
NaN (0/0) like PyTorch's mean of an empty tensor.  Sums are accumulated in
float64 and the loss is returned in the arrays' dtype.  ``g`` in the backward
kernels is the upstream gradient of the (scalar) loss, usually 1.

The elementwise losses take 1-D arrays; callers pass ``.reshape(-1)`` views.
"""

import numpy as np
from graphc.kernels._util import FASTMATH, like
from graphc.kernels.mathfn import exp_, sigmoid_
from numba import njit

# The terms that cancel -- (max - z_label) + log(s) in cross-entropy, max(z,0) - z*t in
# BCE -- are computed in helpers without "reassoc": with it LLVM may regroup them with
# the running sum and round at the scale of |z| (float64 cross-entropy of the logits
# [-1e30, -1e30, -1e30] came out 0 instead of log 3; BCE of z = 88.7, t = 1 came out 0).
# Flags stay on the helpers' instructions when LLVM inlines them.
_NO_REASSOC = {"contract", "arcp", "nsz", "afn"}


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _mean(acc, count, arr):
    # float64 division first: count can exceed float32's exact-integer range.
    return like(arr, acc / count if count > 0 else np.nan)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _check_label(lab, c):
    # Numba does not bound-check: a bad label would read/write outside the row.
    if lab < 0 or lab >= c:
        raise ValueError("class label out of range")


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _softmax_row(z, p, i):
    """p[i] = softmax(z[i]); returns (row max, sum of exp(z - max)) for the log-sum-exp."""
    c = z.shape[1]
    mx = z[i, 0]
    for j in range(c):
        if z[i, j] > mx:
            mx = z[i, j]
    s = like(z, 0.0)
    for j in range(c):
        e = exp_(z[i, j] - mx)
        p[i, j] = e
        s += e
    r = 1 / s
    for j in range(c):
        p[i, j] *= r
    return mx, s


@njit(cache=True, nogil=True, fastmath=_NO_REASSOC)
def _nll(mx, ls, z):
    """-log_softmax(row)[j] = (max - z_j) + log(sum exp(z - max)), in float64."""
    return np.float64(mx - z) + ls


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def sce_fwd(logits, labels, p):
    """Softmax probabilities into p; returns mean_i(logsumexp(z_i) - z_i[label_i])."""
    n = logits.shape[0]
    acc = 0.0
    if logits.shape[1] > 0:
        for i in range(n):
            _check_label(labels[i], logits.shape[1])
            mx, s = _softmax_row(logits, p, i)
            acc += _nll(mx, np.log(np.float64(s)), logits[i, labels[i]])
    return _mean(acc, n, logits)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def sce_onehot_fwd(logits, t, p):
    """Softmax probabilities into p; returns mean_i(-sum_j t_ij * log_softmax(z)_ij)."""
    n, c = logits.shape
    acc = 0.0
    if c > 0:
        for i in range(n):
            mx, s = _softmax_row(logits, p, i)
            ls = np.log(np.float64(s))
            row = 0.0
            for j in range(c):
                tj = np.float64(t[i, j])
                # 0 * log(0) counts as 0 (a zero target against a -inf logit), as in the limit.
                row += tj * _nll(mx, ls, logits[i, j]) if tj != 0 else 0.0
            acc += row
    return _mean(acc, n, logits)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def sce_bwd(p, labels, g, dz):
    """dz = (p - onehot(labels)) * g / n; dz may be p."""
    n, c = p.shape
    if n == 0:
        return
    sc = like(p, g / n)
    for i in range(n):
        _check_label(labels[i], c)
        for j in range(c):
            dz[i, j] = p[i, j] * sc
        dz[i, labels[i]] -= sc


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def sce_onehot_bwd(p, t, g, dz):
    """dz = (p * sum_j t_ij - t) * g / n; dz may be p."""
    n, c = p.shape
    if n == 0:
        return
    sc = like(p, g / n)
    for i in range(n):
        st = like(p, 0.0)
        for j in range(c):
            st += t[i, j]
        for j in range(c):
            dz[i, j] = (p[i, j] * st - t[i, j]) * sc


@njit(cache=True, nogil=True, fastmath=_NO_REASSOC)
def _bce(v, t):
    """max(v,0) - v*t + log1p(exp(-|v|)), with max(v,0) - v*t taken by the sign of v as
    v*(1-t) or -v*t: one rounding fewer, and +inf rather than inf - inf = NaN for an
    infinite logit on the wrong side of its target."""
    lin = v * (like(v, 1.0) - t) if v >= 0 else -v * t
    return lin + np.log1p(exp_(-abs(v)))


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def bce_fwd(z, t):
    """Binary cross-entropy on logits: mean(max(z,0) - z*t + log1p(exp(-|z|)))."""
    acc = 0.0
    for i in range(z.size):
        acc += _bce(z[i], t[i])
    return _mean(acc, z.size, z)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def bce_bwd(z, t, g, dz):
    """dz = (sigmoid(z) - t) * g / N; dz may be z."""
    if z.size == 0:
        return
    sc = like(z, g / z.size)
    for i in range(z.size):
        dz[i] = (sigmoid_(z[i]) - t[i]) * sc


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def mse_fwd(p, t):
    """mean((p - t)^2)."""
    acc = 0.0
    for i in range(p.size):
        d = np.float64(p[i] - t[i])
        acc += d * d
    return _mean(acc, p.size, p)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def mse_bwd(p, t, g, dp):
    """dp = 2 (p - t) g / N; dp may be p."""
    if p.size == 0:
        return
    sc = like(p, 2.0 * g / p.size)
    for i in range(p.size):
        dp[i] = (p[i] - t[i]) * sc


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def mae_fwd(p, t):
    """mean(|p - t|)."""
    acc = 0.0
    for i in range(p.size):
        acc += abs(np.float64(p[i] - t[i]))
    return _mean(acc, p.size, p)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def mae_bwd(p, t, g, dp):
    """dp = sign(p - t) g / N with sign(0) = 0 (PyTorch's L1Loss gradient)."""
    if p.size == 0:
        return
    sc = like(p, g / p.size)
    zero = like(p, 0.0)
    for i in range(p.size):
        d = p[i] - t[i]
        dp[i] = sc if d > 0 else (-sc if d < 0 else zero)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def quantile_fwd(p, t, q):
    """Pinball loss: u = t - p, mean(max(q*u, (q-1)*u))."""
    acc = 0.0
    for i in range(p.size):
        u = np.float64(t[i] - p[i])
        acc += max(q * u, (q - 1.0) * u)
    return _mean(acc, p.size, p)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def quantile_bwd(p, t, q, g, dp):
    """dp = d(pinball)/dp * g/N: -q where u = t - p > 0, 1 - q where u < 0.

    At the kink (u == 0) we use -q (the derivative from the u > 0 side); any
    value in [-q, 1-q] is a valid subgradient, PyTorch's autograd of
    max(q*u, (q-1)*u) would split ties, so the choice is fixed here and tested.
    """
    if p.size == 0:
        return
    sc = g / p.size
    neg = like(p, -q * sc)
    pos = like(p, (1.0 - q) * sc)
    for i in range(p.size):
        u = t[i] - p[i]
        dp[i] = neg if u >= 0 else (pos if u < 0 else u)  # a NaN u stays NaN


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def l2_fwd(W):
    """0.5 * sum(W^2) on a 1-D view."""
    acc = 0.0
    for i in range(W.size):
        v = np.float64(W[i])
        acc += v * v
    return like(W, 0.5 * acc)
