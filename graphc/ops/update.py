"""Optimizer updates as graph nodes, and their NumPy reference (PyTorch's formulas).

An ``update`` node reads a parameter and its gradient (and optionally a
global-norm clipping factor) and writes the parameter and its optimizer state
in place; the graph lists it in ``Graph.updates``.  The learning rate and the
step count are runtime values (so schedules need no recompilation).

``wd`` is the weight decay of this parameter (0 for biases): added to the
gradient (L2, torch's ``weight_decay``) or, with ``decoupled`` (AdamW),
applied to the parameter.
"""

from __future__ import annotations

import numpy as np

from graphc.ir.node import NONE
from graphc.ops.base import Op, register


def state_slots(attrs: dict) -> list[str]:
    """Names of the per-parameter state arrays (each the parameter's shape)."""
    opt = attrs["opt"]
    if opt == "sgd":
        return ["momentum"] if attrs["momentum"] else []
    if opt == "adam":
        return ["exp_avg", "exp_avg_sq"]
    if opt == "rmsprop":
        return (["square_avg"] + (["momentum"] if attrs["momentum"] else [])
                + (["grad_avg"] if attrs["centered"] else []))
    raise ValueError(f"unknown optimizer {opt!r}")


def lerp_(a: np.ndarray, b: np.ndarray, w) -> None:
    """``a.lerp_(b, w)`` as PyTorch computes it: ``a + w*(b - a)`` for ``|w| < 0.5``, else
    ``b - (b - a)*(1 - w)``.  The forms differ where ``a`` is infinite: an Adam or
    centered-RMSprop average that became inf turns NaN at the next finite gradient
    (inf - inf) with the first form, and stays inf with the second; so do we."""
    t = a.dtype.type
    if abs(w) < 0.5:
        a += t(w) * (b - a)
    else:
        a[...] = b - (b - a) * (t(1) - t(w))


def reference_update(p: np.ndarray, g: np.ndarray, state: dict[str, np.ndarray], attrs: dict,
                     lr: float, step: int) -> None:
    """Apply one update in place (``step`` is 1-based, after increment)."""
    t = p.dtype.type
    wd = t(attrs["wd"])
    lr = t(lr)
    if attrs["opt"] == "adam" and attrs["decoupled"]:
        p *= t(1) - lr * wd
    elif wd:
        g = g + wd * p
    if attrs["opt"] == "sgd":
        mom = t(attrs["momentum"])
        if mom:
            buf = state["momentum"]
            if step == 1:
                buf[...] = g
            else:
                buf *= mom
                buf += (t(1) - t(attrs["dampening"])) * g
            g = g + mom * buf if attrs["nesterov"] else buf
        p -= lr * g
    elif attrs["opt"] == "adam":
        b1, b2, eps = t(attrs["beta1"]), t(attrs["beta2"]), t(attrs["eps"])
        m, v = state["exp_avg"], state["exp_avg_sq"]
        lerp_(m, g, t(1) - b1)
        v *= b2
        v += (t(1) - b2) * g * g
        bc1 = t(1) - b1 ** step
        bc2 = t(1) - b2 ** step
        denom = np.sqrt(v) / np.sqrt(bc2) + eps
        p -= (lr / bc1) * m / denom
    else:  # rmsprop
        alpha, eps, mom = t(attrs["alpha"]), t(attrs["eps"]), t(attrs["momentum"])
        sq = state["square_avg"]
        sq *= alpha
        sq += (t(1) - alpha) * g * g
        if attrs["centered"]:
            ga = state["grad_avg"]
            lerp_(ga, g, t(1) - alpha)
            avg = np.sqrt(sq - ga * ga) + eps
        else:
            avg = np.sqrt(sq) + eps
        if mom:
            buf = state["momentum"]
            buf *= mom
            buf += g / avg
            p -= lr * buf
        else:
            p -= lr * g / avg


@register
class Update(Op):
    """In-place optimizer step of one parameter: inputs (param, grad[, clip factor])."""

    name = "update"
    arity = None
    fusion_kind = "update"
    defaults = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "beta1": 0.9,
                "beta2": 0.999, "eps": 1e-8, "alpha": 0.99, "centered": False,
                "decoupled": False, "wd": 0.0}

    def infer(self, ins, attrs):
        return (), NONE


@register
class ClipScale(Op):
    """min(1, max_norm / (global L2 norm of all inputs + 1e-6)), as torch's clip_grad_norm_."""

    name = "clip_scale"
    arity = None
    fusion_kind = "reduce"

    def infer(self, ins, attrs):
        return (), ins[0].dtype

    def reference(self, xs, attrs):
        dt = xs[0].dtype.type
        total = np.sqrt(sum(float((x.astype(np.float64) ** 2).sum()) for x in xs))
        return np.asarray(min(1.0, attrs["max_norm"] / (total + 1e-6)), dtype=dt)
