"""Minibatch gathering for the compiled ``fit`` loop: rows of a data set by index."""

from graphc.kernels._util import FASTMATH
from numba import njit


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
