"""Optimizer updates on 1-D views of a parameter p, its gradient g and the state,
all in place.  Formulas and operation order follow torch.optim (SGD, Adam/AdamW,
RMSprop) so float64 results agree with PyTorch to rounding.

``wd`` is the L2 coefficient added to the gradient (pass 0.0 for biases);
AdamW's decoupled decay is selected with ``decoupled=True``.  At ``wd == 0`` the
term is left out, not added as ``0 * p`` (as torch.optim does): a parameter that is
already inf or NaN would otherwise turn the gradient, and the moments, into NaN
(found by the fuzzer: Adam's exp_avg_sq came out NaN where PyTorch keeps inf).  Scalars arrive
as Python floats and are cast to the array dtype once, outside the loops.
"""

import numpy as np
from graphc.kernels._util import FASTMATH, like
from numba import njit


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _lerp(a, b, w, one_minus_w, small):
    """torch's lerp(a, b, w) (see ``graphc.ops.update.lerp_``): its two formulas
    differ where ``a`` is infinite.  ``small`` is ``|w| < 0.5``."""
    return a + w * (b - a) if small else b - (b - a) * one_minus_w


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def sgd(p, g, buf, lr, momentum, dampening, nesterov, wd, first):
    """torch.optim.SGD: d = g + wd*p; buf = d (first step) or momentum*buf + (1-dampening)*d;
    d = d + momentum*buf (nesterov) or buf; p -= lr*d.  buf may be size-0 if momentum == 0."""
    lr_ = like(p, lr)
    wd_ = like(p, wd)
    mu = like(p, momentum)
    damp = like(p, 1.0 - dampening)
    l2 = wd != 0
    if momentum == 0:
        for i in range(p.size):
            p[i] -= lr_ * (g[i] + wd_ * p[i] if l2 else g[i])
    elif first:
        for i in range(p.size):
            d = g[i] + wd_ * p[i] if l2 else g[i]
            buf[i] = d
            p[i] -= lr_ * (d + mu * d if nesterov else d)
    else:
        for i in range(p.size):
            d = g[i] + wd_ * p[i] if l2 else g[i]
            bv = mu * buf[i] + damp * d
            buf[i] = bv
            p[i] -= lr_ * (d + mu * bv if nesterov else bv)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def adam(p, g, m, v, lr, beta1, beta2, eps, wd, step, decoupled):
    """torch.optim.Adam (decoupled=False, wd as L2 in the gradient) or AdamW
    (decoupled=True: p *= 1 - lr*wd first).  ``step`` is the 1-based step count."""
    bc1 = 1.0 - beta1**step
    bc2 = 1.0 - beta2**step
    step_size = like(p, lr / bc1)
    bc2_sqrt = like(p, np.sqrt(bc2))
    w1 = like(p, 1.0 - beta1)
    w1c = like(p, 1.0 - (1.0 - beta1))
    small1 = abs(1.0 - beta1) < 0.5
    b2 = like(p, beta2)
    w2 = like(p, 1.0 - beta2)
    eps_ = like(p, eps)
    l2 = like(p, 0.0 if decoupled else wd)
    has_l2 = not decoupled and wd != 0
    shrink = like(p, 1.0 - lr * wd if decoupled else 1.0)
    for i in range(p.size):
        pv = p[i] * shrink
        gv = g[i] + l2 * pv if has_l2 else g[i]
        mv = _lerp(m[i], gv, w1, w1c, small1)  # torch: exp_avg.lerp_(grad, 1 - beta1)
        vv = b2 * v[i] + w2 * gv * gv
        m[i] = mv
        v[i] = vv
        p[i] = pv - step_size * (mv / (np.sqrt(vv) / bc2_sqrt + eps_))


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def rmsprop(p, g, sq, buf, gavg, lr, alpha, eps, momentum, centered, wd):
    """torch.optim.RMSprop; buf (momentum) and gavg (centered) may be size-0 when unused."""
    lr_ = like(p, lr)
    al = like(p, alpha)
    w = like(p, 1.0 - alpha)
    eps_ = like(p, eps)
    mu = like(p, momentum)
    wd_ = like(p, wd)
    wc = like(p, 1.0 - (1.0 - alpha))
    small_w = abs(1.0 - alpha) < 0.5
    use_mom = momentum > 0
    l2 = wd != 0
    for i in range(p.size):
        gv = g[i] + wd_ * p[i] if l2 else g[i]
        s = al * sq[i] + w * gv * gv
        sq[i] = s
        if centered:
            ga = _lerp(gavg[i], gv, w, wc, small_w)  # torch: grad_avg.lerp_(grad, 1 - alpha)
            gavg[i] = ga
            avg = np.sqrt(s - ga * ga) + eps_
        else:
            avg = np.sqrt(s) + eps_
        if use_mom:
            bv = mu * buf[i] + gv / avg
            buf[i] = bv
            p[i] -= lr_ * bv
        else:
            p[i] -= lr_ * (gv / avg)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def sum_sq(x):
    """sum(x^2), accumulated in float64 (for global-norm gradient clipping)."""
    acc = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        acc += v * v
    return acc


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def scale_(x, s):
    """x *= s in place."""
    s_ = like(x, s)
    for i in range(x.size):
        x[i] *= s_
