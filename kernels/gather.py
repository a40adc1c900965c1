"""Minibatch order and gathering for the compiled ``fit`` loop.

``epoch_order`` is fit's seeded shuffle: the permutation of an epoch is a
function of (seed, epoch) alone, so a run split over several ``fit`` calls,
or resumed from a saved model, visits the data in the same order as one
uninterrupted run.  It is a Fisher-Yates shuffle driven by SplitMix64 (Steele,
Lea and Flood, 2014) -- integer arithmetic only, so the order is the same on
every machine -- and it runs inside the native epoch loop, where NumPy's
``default_rng(seed).permutation`` would cost ~15 us of Python per epoch (more
than a whole xor epoch).  ``j = r mod (i + 1)`` has a modulo bias below
n / 2**64, far under anything a training run can notice.
"""

import numpy as np
from graphc.kernels._util import FASTMATH
from numba import njit

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, nogil=True)
def epoch_order(out, seed, epoch):
    """out[:] = the permutation of range(out.size) for (seed, epoch); both uint64."""
    n = out.size
    for i in range(n):
        out[i] = i
    state = seed * _GOLDEN ^ epoch
    for i in range(n - 1, 0, -1):
        state += _GOLDEN
        z = state
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
        j = np.int64(z % np.uint64(i + 1))
        t = out[i]
        out[i] = out[j]
        out[j] = t


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def gather_rows(src, idx, start, count, dst):
    """dst[i] = src[idx[start + i]] for i < count; src and dst 1-D or 2-D alike.

    Indices come from a permutation the runtime made of range(len(src)), so they
    are in bounds by construction.
    """
    if src.ndim == 1:
        for i in range(count):
            dst.reshape(dst.size)[i] = src.reshape(src.size)[idx[start + i]]
    else:
        w = src.shape[1] if src.ndim == 2 else 1
        s2 = src.reshape((src.shape[0], w))
        d2 = dst.reshape((dst.shape[0], w))
        for i in range(count):
            r = idx[start + i]
            for j in range(w):
                d2[i, j] = s2[r, j]
