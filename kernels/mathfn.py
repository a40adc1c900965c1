"""Scalar exp / expm1 / tanh / sigmoid dispatched on dtype at compile time.

``exp_``, ``tanh_`` and ``sigmoid_`` are plain Python functions (used as-is
under NUMBA_DISABLE_JIT=1) with Numba overloads that pick an implementation
from the argument's type while compiling: float64 keeps libm's np.exp/np.tanh
(float64 results are checked at rtol 1e-10), float32 uses the vectorisable
formulations below (see the measurements there).
"""

import numpy as np
from numba import njit
from numba.core import types
from numba.extending import overload


def exp_(x):
    return np.exp(x)


def tanh_(x):
    return np.tanh(x)


def expm1_(x):
    return np.expm1(x)


def sigmoid_(x):
    # Two branches so neither exp can overflow (and no RuntimeWarning in pure Python).
    if x >= 0:
        return 1 / (1 + np.exp(-x))
    e = np.exp(x)
    return e / (1 + e)


@njit
def _exp64(x):
    return np.exp(x)


@njit
def _tanh64(x):
    return np.tanh(x)


@njit
def _sigmoid64(x):
    if x >= 0:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x)
    return e / (1.0 + e)


@njit
def _exp32(x):
    return np.exp(x)


@njit
def _tanh32(x):
    return np.tanh(x)


@njit
def _sigmoid32(x):
    one = np.float32(1.0)
    if x >= 0:
        return one / (one + np.exp(-x))
    e = np.exp(x)
    return e / (one + e)


@njit
def _expm1_64(x):
    return np.expm1(x)


@njit(fastmath={"contract", "nsz"})
def _expm1_32(x):
    # exp(x) - 1 cancels for small |x| (it gave elu(-1e-8) = 0): below |x| = 0.5 the
    # Taylor polynomial to x^8 (truncation < 1e-8 relative), above exp32(x) - 1, whose
    # error is at most e^x/(e^x - 1) < 2.6 times exp's.  Both branches vectorise.
    q = np.float32(1 / 5040) + x * np.float32(1 / 40320)
    q = np.float32(1 / 720) + x * q
    q = np.float32(1 / 120) + x * q
    q = np.float32(1 / 24) + x * q
    q = np.float32(1 / 6) + x * q
    q = np.float32(0.5) + x * q
    small = x + (x * x) * q
    big = exp_(x) - np.float32(1.0)
    return small if abs(x) < np.float32(0.5) else big


def _pick(f32, f64):
    def typer(x):
        if x == types.float32:
            return lambda x: f32(x)
        if isinstance(x, types.Float):
            return lambda x: f64(x)
        return None

    return typer


overload(exp_)(_pick(_exp32, _exp64))
overload(tanh_)(_pick(_tanh32, _tanh64))
overload(sigmoid_)(_pick(_sigmoid32, _sigmoid64))
overload(expm1_)(_pick(_expm1_32, _expm1_64))
