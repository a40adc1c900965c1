"""Shared pieces of the kernel library: the jit decorator and dtype helpers.

Every kernel is compiled with the same fastmath subset.  ``nnan``/``ninf`` are
deliberately absent so ``isnan``/``isfinite`` checks (numerics-check mode,
``all_finite``) are not folded away.

Kernels also use ``error_model="numpy"``: with Numba's default ("python")
every float division gets a divide-by-zero check that raises, and that branch
stops LLVM from vectorising the loop (tanh/sigmoid loops measured 10 ns per
element with it, 0.8 without).  With "numpy", x/0 gives inf/NaN as in IEEE and
PyTorch.  Generated code calling the kernels should use it as well.

``like(arr, x)`` casts a Python float to the element type of ``arr``.  Numba
types float literals as float64, and ``float32 * float64`` promotes to float64,
which halves SIMD width and adds conversions in every float32 loop; kernels
therefore build their constants through ``like`` at the top.
"""

import numpy as np
from numba.core import types
from numba.extending import overload

FASTMATH = {"reassoc", "contract", "arcp", "nsz", "afn"}


def like(arr, x):
    """``x`` as a scalar of ``arr``'s dtype (pure-Python path, NUMBA_DISABLE_JIT=1)."""
    return arr.dtype.type(x)


@overload(like)
def _like_ol(arr, x):
    dt = arr.dtype if isinstance(arr, types.Array) else arr
    if dt == types.float32:
        return lambda arr, x: np.float32(x)
    if dt == types.float64:
        return lambda arr, x: np.float64(x)
    return None
