"""Leaves of the graph: inputs (feeds), parameters (trained state), constants."""

from __future__ import annotations

import zlib

import numpy as np

from graphc.errors import GraphError, ShapeError
from graphc.ir.node import FLOAT, Node
from graphc.ops.base import Op, register

INITS = ("zeros", "ones", "constant", "normal", "uniform", "xavier_normal", "xavier_uniform",
         "glorot_normal", "glorot_uniform", "he_normal", "he_uniform", "kaiming_normal",
         "kaiming_uniform", "torch_linear")


def _fans(shape: tuple) -> tuple[int, int]:
    if len(shape) == 0:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    return shape[0], shape[1]


def init_param(node: Node, seed: int, dtype: str = "float32") -> np.ndarray:
    """Initial value of a parameter node, seeded per (seed, name) so order never matters."""
    shape = node.shape
    init = node.get("init")
    std = node.get("std")
    rng = np.random.default_rng([seed, zlib.crc32(node.get("name").encode())])
    fan_in, fan_out = _fans(shape)
    if init == "zeros":
        v = np.zeros(shape)
    elif init == "ones":
        v = np.ones(shape)
    elif init == "constant":
        v = np.full(shape, node.get("value"))
    elif init == "normal":
        v = rng.normal(0.0, 0.05 if std is None else std, shape)
    elif init == "uniform":
        lim = 0.05 if std is None else std
        v = rng.uniform(-lim, lim, shape)
    elif init in ("xavier_normal", "glorot_normal"):
        v = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)
    elif init in ("xavier_uniform", "glorot_uniform"):
        lim = np.sqrt(6.0 / (fan_in + fan_out))
        v = rng.uniform(-lim, lim, shape)
    elif init in ("he_normal", "kaiming_normal"):
        v = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
    elif init in ("he_uniform", "kaiming_uniform"):
        lim = np.sqrt(6.0 / fan_in)
        v = rng.uniform(-lim, lim, shape)
    elif init == "torch_linear":
        # torch.nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for W and b.
        fan = node.get("fan_in") or fan_in
        lim = 1.0 / np.sqrt(fan)
        v = rng.uniform(-lim, lim, shape)
    else:
        raise GraphError(f"parameter {node.get('name')!r}: unknown init {init!r}; "
                         f"valid: {', '.join(INITS)}")
    return np.ascontiguousarray(v, dtype=dtype)


@register
class Input(Op):
    name = "input"
    arity = 0
    fusion_kind = "source"

    def infer(self, ins, attrs):
        return tuple(attrs["shape"]), attrs["dtype"]


@register
class Parameter(Op):
    name = "parameter"
    arity = 0
    fusion_kind = "source"
    defaults = {"init": "glorot_uniform", "std": None, "value": None, "fan_in": None}

    def infer(self, ins, attrs):
        shape = tuple(attrs["shape"])
        if any(d is None or d < 0 for d in shape):
            raise ShapeError(f"parameter {attrs['name']!r} needs a fixed shape, got {shape}")
        if attrs["init"] not in INITS:
            raise ShapeError(f"parameter {attrs['name']!r}: unknown init {attrs['init']!r}; "
                             f"valid: {', '.join(INITS)}")
        return shape, FLOAT


@register
class Constant(Op):
    name = "constant"
    arity = 0
    fusion_kind = "source"

    def infer(self, ins, attrs):
        return tuple(attrs["shape"]), attrs.get("dtype", FLOAT)

    def reference(self, xs, attrs):
        return np.array(attrs["value"], dtype=float).reshape(attrs["shape"])


@register
class ZerosLike(Op):
    """Zeros of the input's shape: the gradient w.r.t. something the loss ignores."""

    name = "zeros_like"
    arity = 1
    fusion_kind = "elemwise"

    def infer(self, ins, attrs):
        return ins[0].shape, FLOAT

    def reference(self, xs, attrs):
        return np.zeros(xs[0].shape)

    def vjp(self, g, nid, ins, gout, wants):
        return [None]
