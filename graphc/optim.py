"""Optimizers and learning-rate schedules (PyTorch's formulas and defaults).

An optimizer here only describes itself: :meth:`Optimizer.update_attrs` gives
the attributes of the ``update`` nodes autodiff adds to the training graph;
the maths is in :mod:`graphc.ops.update` (reference) and the kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from graphc.errors import GraphError


class Schedule:
    """A learning rate as a function of the epoch (0-based)."""

    base: float

    def lr_at(self, epoch: int) -> float:
        raise NotImplementedError


@dataclass
class StepLR(Schedule):
    base: float
    step_size: int
    gamma: float = 0.1

    def lr_at(self, epoch: int) -> float:
        return self.base * self.gamma ** (epoch // self.step_size)


@dataclass
class ExponentialLR(Schedule):
    base: float
    gamma: float

    def lr_at(self, epoch: int) -> float:
        return self.base * self.gamma ** epoch


@dataclass
class CosineLR(Schedule):
    base: float
    t_max: int
    eta_min: float = 0.0

    def lr_at(self, epoch: int) -> float:
        e = min(epoch, self.t_max)
        return self.eta_min + (self.base - self.eta_min) * (1 + math.cos(math.pi * e / self.t_max)) / 2


def _check(owner: str, name: str, value, low: float = 0.0, high: float | None = None) -> float:
    """``value`` as a float in [low, high] (NaN never passes; torch.optim's checks), else
    GraphError."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise GraphError(f"{owner}: {name} must be a number, got {value!r}") from None
    if not (v >= low and (high is None or v <= high)):
        bound = f">= {low:g}" if high is None else f"in [{low:g}, {high:g}]"
        raise GraphError(f"{owner}: {name} must be {bound}, got {value!r}")
    return v


class Optimizer:
    kind = ""

    def __init__(self, lr: float | Schedule) -> None:
        base = lr.base if isinstance(lr, Schedule) else lr
        if not (isinstance(base, int | float) and base > 0 and math.isfinite(base)):
            raise GraphError(f"{type(self).__name__}: lr must be a positive number, got {lr!r}")
        self.lr = lr

    def lr_at(self, epoch: int) -> float:
        return self.lr.lr_at(epoch) if isinstance(self.lr, Schedule) else float(self.lr)

    def update_attrs(self) -> dict:
        raise NotImplementedError

    def decoupled_decay(self) -> float:
        return 0.0

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    kind = "sgd"

    def __init__(self, lr: float | Schedule = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, nesterov: bool = False) -> None:
        super().__init__(lr)
        momentum = _check("SGD", "momentum", momentum)
        dampening = _check("SGD", "dampening", dampening, 0.0, 1.0)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise GraphError("SGD: Nesterov momentum requires momentum > 0 and zero dampening")
        self.momentum, self.dampening, self.nesterov = momentum, dampening, nesterov

    def update_attrs(self) -> dict:
        return dict(opt="sgd", momentum=self.momentum, dampening=self.dampening,
                    nesterov=self.nesterov)


class Adam(Optimizer):
    kind = "adam"

    def __init__(self, lr: float | Schedule = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        super().__init__(lr)
        if not all(0.0 <= b < 1.0 for b in betas):
            raise GraphError(f"{type(self).__name__}: betas must lie in [0, 1), got {betas}")
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = _check(type(self).__name__, "eps", eps)

    def update_attrs(self) -> dict:
        return dict(opt="adam", beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                    decoupled=False)


class AdamW(Adam):
    """Adam with decoupled weight decay, applied to weight matrices only."""

    def __init__(self, lr: float | Schedule = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.01) -> None:
        super().__init__(lr, betas, eps)
        self.weight_decay = _check("AdamW", "weight_decay", weight_decay)

    def update_attrs(self) -> dict:
        return {**super().update_attrs(), "decoupled": True}

    def decoupled_decay(self) -> float:
        return self.weight_decay


class RMSprop(Optimizer):
    kind = "rmsprop"

    def __init__(self, lr: float | Schedule = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 momentum: float = 0.0, centered: bool = False) -> None:
        super().__init__(lr)
        self.alpha = _check("RMSprop", "alpha", alpha, 0.0, 1.0)
        self.eps = _check("RMSprop", "eps", eps)
        self.momentum = _check("RMSprop", "momentum", momentum)
        self.centered = bool(centered)

    def update_attrs(self) -> dict:
        return dict(opt="rmsprop", alpha=self.alpha, eps=self.eps, momentum=self.momentum,
                    centered=self.centered)


OPTIMIZERS = {"sgd": SGD, "adam": Adam, "adamw": AdamW, "rmsprop": RMSprop}


def get_optimizer(spec: str | Optimizer, lr: float | None = None) -> Optimizer:
    if isinstance(spec, Optimizer):
        return spec
    try:
        cls = OPTIMIZERS[str(spec).lower()]
    except KeyError:
        raise GraphError(f"unknown optimizer {spec!r}; valid: {', '.join(OPTIMIZERS)}") from None
    return cls() if lr is None else cls(lr=lr)


SCHEDULES = {"StepLR": StepLR, "ExponentialLR": ExponentialLR, "CosineLR": CosineLR}


def to_config(opt: Optimizer) -> dict:
    """A JSON-able description of ``opt`` (for model files)."""
    args = dict(vars(opt))
    if isinstance(opt.lr, Schedule):
        args["lr"] = {"schedule": type(opt.lr).__name__, **vars(opt.lr)}
    if "betas" in args:
        args["betas"] = list(args["betas"])
    return {"class": type(opt).__name__, "args": args}


def from_config(cfg: dict) -> Optimizer:
    classes = {c.__name__: c for c in OPTIMIZERS.values()}
    try:
        cls = classes[cfg["class"]]
        args = dict(cfg["args"])
        if isinstance(args.get("lr"), dict):
            lr = dict(args["lr"])
            args["lr"] = SCHEDULES[lr.pop("schedule")](**lr)
        if "betas" in args:
            args["betas"] = tuple(args["betas"])
        return cls(**args)
    except (KeyError, TypeError) as e:
        raise GraphError(f"invalid optimizer description {cfg!r}: {e}") from None
