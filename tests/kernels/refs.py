"""Straightforward float64 NumPy formulas the kernels are held against."""

import numpy as np

LINEAR, RELU, SIGMOID, TANH, LEAKY_RELU, ELU, SOFTPLUS, PRELU = range(8)


def sigmoid(z):
    z = np.asarray(z, np.float64)
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def act(code, z, alpha=0.0, a=None):
    z = np.asarray(z, np.float64)
    if code == RELU:
        return np.maximum(z, 0.0)
    if code == SIGMOID:
        return sigmoid(z)
    if code == TANH:
        return np.tanh(z)
    if code == LEAKY_RELU:
        return np.where(z > 0, z, alpha * z)
    if code == ELU:
        return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))
    if code == SOFTPLUS:
        return np.where(z > 20, z, np.log1p(np.exp(np.minimum(z, 20.0))))
    if code == PRELU:
        return np.where(z > 0, z, a * z)
    return z.copy()


def dact(code, z, alpha=0.0, a=None):
    z = np.asarray(z, np.float64)
    if code == RELU:
        return (z > 0).astype(np.float64)
    if code == SIGMOID:
        s = sigmoid(z)
        return s * (1 - s)
    if code == TANH:
        return 1 - np.tanh(z) ** 2
    if code == LEAKY_RELU:
        return np.where(z > 0, 1.0, alpha)
    if code == ELU:
        return np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0.0)))
    if code == SOFTPLUS:
        return np.where(z > 20, 1.0, sigmoid(z))
    if code == PRELU:
        return np.where(z > 0, 1.0, a * np.ones_like(z))
    return np.ones_like(z)


def softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(x):
    m = x.max(axis=1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=1, keepdims=True))
