"""The Keras-like frontend: layer objects and :class:`Sequential`.

``Sequential`` is a thin builder over the symbolic API: ``compile`` turns the
layer list into exactly the ``gc.input`` / ``gc.dense`` / ``gc.activation``
calls a user would write by hand (same parameter names, so the same initial
values for the same seed) and hands them to ``gc.compile``; ``fit``,
``evaluate``, ``predict`` and ``save`` delegate to the resulting
:class:`~graphc.runtime.program.Program` (``model.program``).

Conventions (what ``compile`` builds):

* feeds are ``"x"`` of shape ``(N, input_dim)`` and ``"y"``; the output is
  named ``"output"``;
* cross-entropy (``"cross_entropy"`` / ``"softmax_cross_entropy"``): ``y`` is
  int64 class labels of shape ``(N,)``.  ``fit``/``evaluate`` also accept one-hot
  rows and whole-valued float labels and convert them;
* every other loss: ``y`` is float of shape ``(N, units_out)``; when the last
  layer has one unit, a 1-D ``y`` of shape ``(N,)`` is accepted too (reshaped to
  ``(N, 1)``), as a data set's regression or 0/1 targets usually are;
* graphc's cross-entropies take logits.  If the last layer ends in ``softmax``
  (cross-entropy) or ``sigmoid`` (binary cross-entropy), that activation is
  folded into the loss: the loss reads the pre-activation (numerically stable,
  no double softmax) and ``predict`` still returns probabilities.  Without it,
  ``predict`` returns logits;
* unnamed layers are named per kind and position in this model: ``dense_1``,
  ``dense_2``, ``activation_1``...; parameters are ``<layer>/W``, ``<layer>/b``
  and, for PReLU, ``<layer>/alpha``.

There is no Dropout: graphc graphs have no random ops.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from graphc.frontends import symbolic as sym
from graphc.frontends.api import compile as gc_compile

from graphc.errors import FeedError, GraphError
from graphc.ops.activation import ACTIVATION_NAMES, DEFAULT_ALPHA
from graphc.ops.sources import INITS
from graphc.optim import OPTIMIZERS, CosineLR, ExponentialLR, Optimizer, Schedule, StepLR
from graphc.runtime.fit import History
from graphc.runtime.program import Program

__all__ = ["LOSSES", "METRICS", "Activation", "Dense", "Layer", "Sequential", "make_optimizer",
           "optimizer_spec"]

# User-facing loss name -> graphc loss function name.
LOSSES = {
    "cross_entropy": "softmax_cross_entropy",
    "softmax_cross_entropy": "softmax_cross_entropy",
    "bce": "binary_cross_entropy",
    "binary_cross_entropy": "binary_cross_entropy",
    "mse": "mse",
    "mae": "mae",
    "quantile": "quantile",
}
# Keyword arguments each loss accepts (through ``loss_kwargs``).
LOSS_KWARGS = {"quantile": {"q"}}
# A final activation of this name is folded into the loss (which takes logits).
FOLDED = {"softmax_cross_entropy": "softmax", "binary_cross_entropy": "sigmoid"}
CLASSIFICATION = ("softmax_cross_entropy", "binary_cross_entropy")
REGRESSION = ("mse", "mae", "quantile")
METRICS = ("accuracy", "mse", "mae")
SCHEDULES = {"step": StepLR, "exponential": ExponentialLR, "cosine": CosineLR}
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_FIT_DEFAULTS = {"epochs": 1, "batch_size": 32, "shuffle": True, "seed": None, "patience": None}


def _check_name(name: str | None, what: str) -> None:
    if name is None:
        return
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise GraphError(f"{what} name {name!r}: use letters, digits, '_', '.', '-' (no '/', "
                         "which separates a layer from its parameter names)")


def _check_activation(activation: str | None, alpha: float | None, what: str) -> None:
    if activation is not None and activation not in (*ACTIVATION_NAMES, "linear"):
        raise GraphError(f"{what}: unknown activation {activation!r}; valid: linear, "
                         f"{', '.join(ACTIVATION_NAMES)}")
    if alpha is not None:
        if activation not in DEFAULT_ALPHA:
            raise GraphError(f"{what}: alpha is a parameter of {', '.join(DEFAULT_ALPHA)} only, "
                             f"not of activation {activation!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not math.isfinite(alpha):
            raise GraphError(f"{what}: alpha must be a finite number, got {alpha!r}")


# --- layers ---------------------------------------------------------------------------

class Layer:
    """A layer: a recipe that adds nodes to the graph when its model is compiled.

    Layers hold configuration only; the parameters live in the compiled
    program, under ``<layer name>/...``.
    """

    kind: ClassVar[str] = "layer"
    name: str | None

    @property
    def activation_name(self) -> str | None:
        """The activation this layer ends with (None for linear)."""
        raise NotImplementedError

    def output_dim(self, input_dim: int) -> int:
        """Features out for ``input_dim`` features in."""
        raise NotImplementedError

    def param_shapes(self, input_dim: int, name: str) -> dict[str, tuple[int, ...]]:
        """The parameters this layer creates, by full name."""
        raise NotImplementedError

    def build(self, x: sym.Tensor, name: str) -> tuple[sym.Tensor, sym.Tensor]:
        """Add this layer to the graph: returns (pre-activation, output)."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """This layer as a spec table (non-default fields only)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Dense(Layer):
    """``activation(x @ W + b)``: a fully connected layer (``gc.dense``).

    ``alpha`` is the slope of ``leaky_relu`` / ``elu`` or the initial slope of
    ``prelu`` (PyTorch's defaults when None).
    """

    units: int
    activation: str | None = None
    name: str | None = None
    use_bias: bool = True
    init: str = "glorot_uniform"
    alpha: float | None = None
    bias_init: str = "zeros"

    kind: ClassVar[str] = "dense"

    def __post_init__(self) -> None:
        what = f"Dense layer {self.name!r}" if self.name else "Dense layer"
        if isinstance(self.units, bool) or not isinstance(self.units, int | np.integer) or self.units < 1:
            raise GraphError(f"{what}: units must be a positive int, got {self.units!r}")
        object.__setattr__(self, "units", int(self.units))
        _check_name(self.name, "Dense layer")
        _check_activation(self.activation, self.alpha, what)
        if not isinstance(self.use_bias, bool):
            raise GraphError(f"{what}: use_bias must be True or False, got {self.use_bias!r}")
        for field_name in ("init", "bias_init"):
            if getattr(self, field_name) not in INITS:
                raise GraphError(f"{what}: unknown {field_name} {getattr(self, field_name)!r}; "
                                 f"valid: {', '.join(INITS)}")

    @property
    def activation_name(self) -> str | None:
        return None if self.activation in (None, "linear") else self.activation

    def output_dim(self, input_dim: int) -> int:
        return self.units

    def param_shapes(self, input_dim: int, name: str) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {f"{name}/W": (input_dim, self.units)}
        if self.use_bias:
            shapes[f"{name}/b"] = (self.units,)
        if self.activation == "prelu":
            shapes[f"{name}/alpha"] = (self.units,)
        return shapes

    def build(self, x: sym.Tensor, name: str) -> tuple[sym.Tensor, sym.Tensor]:
        # gc.dense is exactly dense(activation=None) followed by gc.activation, so
        # building it in two steps gives the same graph and exposes z.
        z = sym.dense(x, self.units, activation=None, name=name, use_bias=self.use_bias,
                      init=self.init, bias_init=self.bias_init)
        return z, sym.activation(z, self.activation_name, self.alpha, layer=name)

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"units": self.units}
        for f in dataclasses.fields(self):
            if f.name != "units":
                value = getattr(self, f.name)
                if value != f.default:
                    out[f.name] = value
        return out


@dataclass(frozen=True)
class Activation(Layer):
    """An activation on its own (``gc.activation``); ``alpha`` as for :class:`Dense`.

    Right after a Dense layer without an activation, the compiler fuses it into
    that layer's kernel; ``summary()`` shows where it went.
    """

    activation: str
    alpha: float | None = None
    name: str | None = None

    kind: ClassVar[str] = "activation"

    def __post_init__(self) -> None:
        what = f"Activation layer {self.name!r}" if self.name else "Activation layer"
        if not isinstance(self.activation, str):
            raise GraphError(f"{what}: activation must be a name, got {self.activation!r}")
        _check_name(self.name, "Activation layer")
        _check_activation(self.activation, self.alpha, what)

    @property
    def activation_name(self) -> str | None:
        return None if self.activation == "linear" else self.activation

    def output_dim(self, input_dim: int) -> int:
        return input_dim

    def param_shapes(self, input_dim: int, name: str) -> dict[str, tuple[int, ...]]:
        return {f"{name}/alpha": (input_dim,)} if self.activation == "prelu" else {}

    def build(self, x: sym.Tensor, name: str) -> tuple[sym.Tensor, sym.Tensor]:
        return x, sym.activation(x, self.activation_name, self.alpha, layer=name)

    def config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": "activation", "activation": self.activation}
        if self.alpha is not None:
            out["alpha"] = self.alpha
        if self.name is not None:
            out["name"] = self.name
        return out


# --- optimizers by name ---------------------------------------------------------------

def _optimizer_name(opt: Optimizer) -> str:
    for name, cls in OPTIMIZERS.items():
        if type(opt) is cls:
            return name
    raise GraphError(f"optimizer {type(opt).__name__} has no spec name")


def make_optimizer(optimizer: str | Optimizer | Mapping[str, Any],
                   lr: float | Schedule | None = None) -> Optimizer:
    """An optimizer from a name (``"adam"``), an instance, or a table ``{"name": ..., **args}``.

    A table may carry ``schedule``: ``{"kind": "step"|"exponential"|"cosine", ...}``,
    whose base learning rate is ``lr``.  Unknown names or arguments raise GraphError.
    """
    if isinstance(optimizer, Optimizer):
        if lr is not None:
            raise GraphError("lr= is ambiguous with an optimizer instance: set the instance's lr")
        return optimizer
    if isinstance(optimizer, str):
        optimizer = {"name": optimizer}
    if not isinstance(optimizer, Mapping):
        raise GraphError(f"optimizer must be a name, a graphc.optim optimizer or a table, got "
                         f"{type(optimizer).__name__}")
    args = dict(optimizer)
    name = args.pop("name", None)
    cls = OPTIMIZERS.get(str(name).lower()) if isinstance(name, str) else None
    if cls is None:
        raise GraphError(f"unknown optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(args) - set(valid) - {"schedule"})
    if unknown:
        raise GraphError(f"optimizer {name!r}: unknown argument {unknown[0]!r}; valid: "
                         f"{', '.join([*valid, 'schedule'])}")
    if lr is not None:
        if "lr" in args and args["lr"] != lr:
            raise GraphError(f"optimizer {name!r}: lr given twice ({args['lr']} and {lr})")
        args["lr"] = lr
    schedule = args.pop("schedule", None)
    if schedule is not None:
        args["lr"] = _make_schedule(schedule, args.get("lr", cls().lr))
    if "betas" in args and isinstance(args["betas"], list):
        args["betas"] = tuple(args["betas"])
    try:
        return cls(**args)
    except TypeError as e:
        raise GraphError(f"optimizer {name!r}: {e}") from None


def _make_schedule(schedule: Schedule | Mapping[str, Any], base: float | Schedule) -> Schedule:
    if isinstance(schedule, Schedule):
        return schedule
    if isinstance(base, Schedule):
        raise GraphError("a schedule cannot wrap another schedule")
    if not isinstance(schedule, Mapping):
        raise GraphError(f"schedule must be a table with 'kind', got {schedule!r}")
    args = dict(schedule)
    kind = args.pop("kind", None)
    cls = SCHEDULES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise GraphError(f"unknown schedule kind {kind!r}; valid: {', '.join(SCHEDULES)}")
    valid = [f.name for f in dataclasses.fields(cls) if f.name != "base"]
    unknown = sorted(set(args) - set(valid))
    missing = [f.name for f in dataclasses.fields(cls) if f.name != "base"
               and f.default is dataclasses.MISSING and f.name not in args]
    if unknown or missing:
        raise GraphError(f"schedule {kind!r}: {'unknown' if unknown else 'missing'} argument "
                         f"{(unknown or missing)[0]!r}; arguments: {', '.join(valid)}")
    return cls(base=base, **args)


def optimizer_spec(opt: Optimizer) -> dict[str, Any]:
    """The spec table of an optimizer (inverse of :func:`make_optimizer`)."""
    out: dict[str, Any] = {"name": _optimizer_name(opt)}
    for key, value in vars(opt).items():
        if key == "lr" and isinstance(value, Schedule):
            out["lr"] = value.base
            kind = next(k for k, c in SCHEDULES.items() if type(value) is c)
            out["schedule"] = {"kind": kind, **{k: v for k, v in vars(value).items()
                                                if k != "base"}}
        else:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


# --- the model ------------------------------------------------------------------------

class Sequential:
    """A stack of layers, each feeding the next, compiled into one training program.

    >>> model = gc.Sequential([gc.layers.Dense(128, activation="relu"),
    ...                        gc.layers.Dense(10)], input_dim=64)
    >>> model.compile(loss="cross_entropy", optimizer="adam", lr=1e-3)
    >>> history = model.fit(x, y, epochs=20, batch_size=32, validation_data=(xv, yv))
    >>> model.evaluate(xt, yt)          # {"loss": ..., "accuracy": ...}
    """

    def __init__(self, layers: Sequence[Layer] = (), input_dim: int | None = None,
                 name: str | None = None) -> None:
        if input_dim is not None and (isinstance(input_dim, bool)
                                      or not isinstance(input_dim, int | np.integer)
                                      or input_dim < 1):
            raise GraphError(f"Sequential: input_dim must be a positive int, got {input_dim!r}")
        self.input_dim = None if input_dim is None else int(input_dim)
        self.name = name or "sequential"
        self._layers: list[Layer] = []
        self._program = None
        self._config: dict[str, Any] | None = None
        self._folded: str | None = None
        #: Defaults for ``fit`` (a spec's ``fit`` table fills these).
        self.fit_config: dict[str, Any] = {}
        for layer in layers:
            self.add(layer)

    def add(self, layer: Layer) -> None:
        """Append a layer (a compiled model must be compiled again afterwards)."""
        if not isinstance(layer, Layer):
            raise GraphError(f"Sequential takes graphc layers (gc.layers.Dense, "
                             f"gc.layers.Activation), got {type(layer).__name__}")
        if layer.name is not None and any(other.name == layer.name for other in self._layers):
            raise GraphError(f"Sequential {self.name!r}: two layers named {layer.name!r}")
        self._layers.append(layer)
        self._program = None

    @property
    def layers(self) -> list[Layer]:
        """The layers, each with its resolved name (``dense_1``... when not given)."""
        taken = {layer.name for layer in self._layers if layer.name is not None}
        counts: dict[str, int] = {}
        out = []
        for layer in self._layers:
            if layer.name is None:
                while True:
                    counts[layer.kind] = counts.get(layer.kind, 0) + 1
                    auto = f"{layer.kind}_{counts[layer.kind]}"
                    if auto not in taken:
                        break
                taken.add(auto)
                layer = dataclasses.replace(layer, name=auto)
            out.append(layer)
        return out

    def _dims(self) -> list[int]:
        dims = [self._need_input_dim()]
        for layer in self._layers:
            dims.append(layer.output_dim(dims[-1]))
        return dims

    def _need_input_dim(self) -> int:
        if self.input_dim is None:
            raise GraphError(f"Sequential {self.name!r} needs input_dim=... (features per sample)")
        return self.input_dim

    # --- compile ------------------------------------------------------------------------
    def compile(self, loss: str = "cross_entropy", optimizer: str | Optimizer | Mapping = "adam",
                lr: float | Schedule | None = None, metrics: Sequence[str] | None = None,
                weight_decay: float = 0.0, clip_norm: float | None = None,
                dtype: str = "float32", seed: int = 0, backend: str = "compiled",
                loss_kwargs: Mapping[str, Any] | None = None) -> Sequential:
        """Build the graph and compile it into ``self.program``; returns ``self``.

        ``loss``: one of :data:`LOSSES` (``q`` for ``"quantile"`` goes in
        ``loss_kwargs``).  ``optimizer``: ``"adam"``, ``"sgd"``, ``"adamw"``,
        ``"rmsprop"`` (with ``lr``, else the optimizer's default), a table
        ``{"name": "sgd", "lr": 0.1, "momentum": 0.9}`` or a ``gc.optim`` instance.
        ``metrics``: subset of :data:`METRICS`; by default ``["accuracy"]`` for
        classification losses and none otherwise.  The rest is passed to
        ``gc.compile``.  Compiling again starts from fresh parameters.
        """
        if not self._layers:
            raise GraphError(f"Sequential {self.name!r} has no layers to compile")
        if not isinstance(loss, str) or loss not in LOSSES:
            raise GraphError(f"unknown loss {loss!r}; valid: {', '.join(LOSSES)}")
        kind = LOSSES[loss]
        kwargs = dict(loss_kwargs or {})
        bad = sorted(set(kwargs) - LOSS_KWARGS.get(kind, set()))
        if bad:
            valid = ", ".join(sorted(LOSS_KWARGS.get(kind, set()))) or "none"
            raise GraphError(f"loss {loss!r} takes no argument {bad[0]!r} (valid: {valid})")
        if metrics is None:
            metrics = ["accuracy"] if kind in CLASSIFICATION else []
        if isinstance(metrics, str):
            metrics = [metrics]
        for m in metrics:
            if m not in METRICS:
                raise GraphError(f"unknown metric {m!r}; valid: {', '.join(METRICS)}")
            if m == "accuracy" and kind not in CLASSIFICATION:
                raise GraphError(f"metric 'accuracy' needs a classification loss, not {loss!r}")
            if m in ("mse", "mae") and kind not in REGRESSION:
                raise GraphError(f"metric {m!r} needs a regression loss (mse, mae, quantile), "
                                 f"not {loss!r}")
        opt = make_optimizer(optimizer, lr)

        names = [layer.name for layer in self.layers]
        dims = self._dims()
        x = sym.input("x", (None, dims[0]))
        h = pre = x
        for layer, name in zip(self._layers, names, strict=True):
            pre, h = layer.build(h, name)
        last = self._layers[-1].activation_name
        self._folded = last if FOLDED.get(kind) == last else None
        logits = pre if self._folded else h
        if kind == "softmax_cross_entropy":
            y = sym.input("y", (None,), dtype="int64")
        else:
            y = sym.input("y", (None, dims[-1]))
        loss_t = getattr(sym, kind)(logits, y, **kwargs)
        self._program = gc_compile(loss=loss_t, outputs={"output": h}, optimizer=opt,
                                   weight_decay=weight_decay, clip_norm=clip_norm, dtype=dtype,
                                   seed=seed, backend=backend)
        self._config = dict(loss=loss, loss_kwargs=kwargs, optimizer=opt, metrics=list(metrics),
                            weight_decay=weight_decay, clip_norm=clip_norm, dtype=dtype,
                            seed=seed, backend=backend, kind=kind)
        return self

    @property
    def program(self) -> Program:
        """The compiled :class:`~graphc.runtime.program.Program` (after ``compile``)."""
        if self._program is None:
            raise GraphError(f"Sequential {self.name!r} is not compiled: call .compile(...) first")
        return self._program

    @property
    def compiled(self) -> bool:
        """Whether ``compile`` has built ``self.program``."""
        return self._program is not None

    @property
    def params(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, by name (``<layer>/W`` ...)."""
        return self.program.params

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        """Copy parameter values in (names and shapes must match)."""
        self.program.set_params(values)

    # --- data -----------------------------------------------------------------------
    def _feeds(self, x: Any, y: Any, what: str) -> dict[str, np.ndarray]:
        if isinstance(x, tuple) and y is None and len(x) == 2:
            x, y = x
        elif y is None and hasattr(x, "x") and hasattr(x, "y"):  # a graphc.data.Dataset
            x, y = x.x, x.y
        elif isinstance(x, Mapping):
            if y is not None:
                raise FeedError(f"{what}: pass either a dict of feeds or x and y, not both")
            x, y = x.get("x"), x.get("y")
        if x is None or y is None:
            raise FeedError(f"{what} needs inputs and targets: {what}(x, y), a Dataset, or "
                            "{'x': ..., 'y': ...}")
        return {"x": x, "y": self._targets(y, what)}

    def _targets(self, y: Any, what: str) -> np.ndarray:
        y = np.asarray(y)
        kind = self._config["kind"]
        units = self._dims()[-1]
        if kind == "softmax_cross_entropy":
            if y.ndim == 2 and y.shape[1] == units and y.dtype.kind in "fiub":
                if not (np.all((y == 0) | (y == 1)) and np.all(y.sum(axis=1) == 1)):
                    raise FeedError(f"{what}: 2-D targets for cross-entropy must be one-hot rows "
                                    "(soft labels are not supported by Sequential)")
                return y.argmax(axis=1).astype(np.int64)
            if y.ndim == 1 and y.dtype.kind == "f":
                if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                    raise FeedError(f"{what}: class labels must be whole numbers")
                return y.astype(np.int64)
            return y
        if y.ndim == 1 and units == 1:
            return y.reshape(-1, 1)
        if y.ndim == 1:
            raise FeedError(f"{what}: targets of shape {y.shape} for a last layer of {units} "
                            f"units; expected shape (N, {units})")
        return y

    # --- training and inference ------------------------------------------------------
    def fit(self, x: Any, y: Any = None, epochs: int | None = None, batch_size: int | None = None,
            validation_data: Any = None, shuffle: bool | None = None, seed: int | None = None,
            patience: int | None = None, progress: bool = True,
            callbacks: Sequence[Callable] | None = None) -> History:
        """Train; returns a :class:`~graphc.runtime.fit.History`.

        ``x``/``y`` are arrays (or ``x`` is a Dataset or ``(x, y)``);
        ``validation_data`` likewise (``(xv, yv)`` or a Dataset).  With ``patience``,
        early stopping on the validation loss restores the best epoch's weights.
        Arguments left as None come from ``fit_config`` (a spec's ``fit`` table), then
        from the defaults epochs=1, batch_size=32, shuffle=True.  ``callbacks`` are
        called as ``cb(epoch, history)``; returning False stops training.
        """
        given = dict(epochs=epochs, batch_size=batch_size, shuffle=shuffle, seed=seed,
                     patience=patience)
        opts = {k: v if v is not None else self.fit_config.get(k, _FIT_DEFAULTS[k])
                for k, v in given.items()}
        prog = self.program
        data = self._feeds(x, y, "fit")
        val = None if validation_data is None else self._feeds(validation_data, None,
                                                               "validation_data")
        return prog.fit(data, epochs=opts["epochs"], batch_size=opts["batch_size"],
                        validation=val, shuffle=opts["shuffle"], seed=opts["seed"],
                        patience=opts["patience"], progress=progress,
                        callbacks=list(callbacks) if callbacks else None)

    def evaluate(self, x: Any, y: Any = None) -> dict[str, float]:
        """The loss and the compiled metrics on ``x``/``y``, without training."""
        feeds = self._feeds(x, y, "evaluate")
        res = self.program.evaluate(feeds)
        out = {"loss": res["loss"]}
        metrics = self._config["metrics"]
        if "accuracy" in metrics:
            out["accuracy"] = res["accuracy"]
        if "mse" in metrics or "mae" in metrics:
            err = self.predict(feeds["x"]).astype(np.float64) - np.asarray(feeds["y"], np.float64)
            if "mse" in metrics:
                out["mse"] = float(np.mean(err ** 2))
            if "mae" in metrics:
                out["mae"] = float(np.mean(np.abs(err)))
        return out

    def predict(self, x: Any, batch_size: int = 4096) -> np.ndarray:
        """The last layer's output for ``x``, shape ``(N, units_out)``."""
        if hasattr(x, "x") and hasattr(x, "y"):
            x = x.x
        return self.program.predict({"x": x}, output="output", batch_size=batch_size)

    def save(self, path: Any) -> None:
        """Save the compiled program (graph, parameters, optimizer state) to a ``.gcm`` file.

        ``gc.load(path)`` returns it as a Program (feeds ``"x"``/``"y"``, output
        ``"output"``); the layer list itself is not stored, so keep the spec to
        rebuild a Sequential.
        """
        self.program.save(path)

    # --- description ------------------------------------------------------------------
    def to_spec(self) -> dict[str, Any]:
        """This model and its compile settings as a spec dict (see ``graphc.frontends.spec``)."""
        if self._config is None:
            raise GraphError(f"Sequential {self.name!r}: compile it before exporting a spec "
                             "(the spec holds the loss and optimizer)")
        c = self._config
        spec: dict[str, Any] = {"name": self.name, "input_dim": self.input_dim,
                                "layers": [layer.config() for layer in self._layers]}
        spec["loss"] = {"name": c["loss"], **c["loss_kwargs"]} if c["loss_kwargs"] else c["loss"]
        spec["optimizer"] = optimizer_spec(c["optimizer"])
        spec["metrics"] = list(c["metrics"])
        spec["weight_decay"] = c["weight_decay"]
        if c["clip_norm"] is not None:
            spec["clip_norm"] = c["clip_norm"]
        spec["dtype"] = c["dtype"]
        spec["seed"] = c["seed"]
        if self.fit_config:
            spec["fit"] = dict(self.fit_config)
        return spec

    def summary(self) -> str:
        """A table of the layers and the fused kernel each became; printed and returned."""
        text = _summary(self)
        print(text)
        return text

    def __repr__(self) -> str:
        layers = ", ".join(f"{layer.kind}:{layer.name}" for layer in self.layers)
        return f"Sequential({self.name!r}, input_dim={self.input_dim}, [{layers}])"


# --- summary --------------------------------------------------------------------------

def _layer_nodes(graph, op: str, param: str) -> list[int]:
    """Nodes of ``op`` that read parameter ``param`` (directly or through a view)."""
    hits = []
    for n in graph.find(op):
        for i in graph.inputs(n):
            node = graph.node(i)
            if node.op in ("transpose", "identity", "getitem") and graph.inputs(i):
                node = graph.node(graph.inputs(i)[0])
            if node.op == "parameter" and node.get("name") == param:
                hits.append(n)
                break
    return hits


def _kernel_text(graph, node_id: int) -> str:
    node = graph.node(node_id)
    text = f"{node.op}[{node.get('act')}]"
    if node.op == "dense_bwd":
        text += f"({', '.join(node.get('outs'))})"
    return text


def _fused_kernels(model: Sequential, layers: list[Layer]) -> tuple[list[str], list[str]]:
    """One kernel description per layer, plus footnotes (loss fusion, refusals)."""
    prog = model.program
    if prog.backend != "compiled" or prog._impl is None:
        return ["reference interpreter (not fused)"] * len(layers), []
    entry = prog._impl.entries["train_step"]
    g = entry.graph
    fwd_act: dict[str, str] = {}
    col = []
    for i, layer in enumerate(layers):
        act = layer.activation_name
        if isinstance(layer, Dense):
            fwd = _layer_nodes(g, "dense", f"{layer.name}/W")
            bwd = _layer_nodes(g, "dense_bwd", f"{layer.name}/W")
            if not fwd:
                col.append("unfused matmul")
                continue
            fwd_act[layer.name] = g.node(fwd[0]).get("act")
            text = _kernel_text(g, fwd[0])
            folded = i == len(layers) - 1 and model._folded == act
            if act is not None and fwd_act[layer.name] != act and not folded:
                text += f" + separate {act} op"
            if bwd:
                text += f" → {_kernel_text(g, bwd[0])}"
            col.append(text)
        else:
            prev = layers[i - 1] if i else None
            if (act is not None and isinstance(prev, Dense) and prev.activation_name is None
                    and fwd_act.get(prev.name) == act):
                col.append(f"fused into {prev.name}")
            elif act is not None and i == len(layers) - 1 and model._folded == act:
                col.append("(folded into the loss)")
            elif act is None:
                col.append("identity (removed)")
            else:
                col.append(f"separate {act} op")
    notes = []
    names = {layer.name for layer in layers}
    for rec in entry.report.fusions:
        if rec.pass_name == "fuse_loss" and rec.accepted:
            notes.append(f"loss: {rec.pattern} → {rec.result} ({rec.reason})" if rec.reason
                         else f"loss: {rec.pattern} → {rec.result}")
        elif not rec.accepted and rec.layer in names:
            notes.append(f"{rec.layer}: not fused: {rec.reason}")
    return col, notes


def _summary(model: Sequential) -> str:
    layers = model.layers
    dims = model._dims()
    compiled = model.compiled
    kernels, notes = _fused_kernels(model, layers) if compiled else (["(not compiled)"] * len(layers),
                                                                       [])
    rows = [("layer", "kind", "output", "params", "activation", "kernel (forward → backward)")]
    total = 0
    for layer, din, dout, kernel in zip(layers, dims[:-1], dims[1:], kernels, strict=True):
        count = sum(math.prod(s) for s in layer.param_shapes(din, layer.name).values())
        total += count
        act = layer.activation_name or "linear"
        if act in DEFAULT_ALPHA:
            alpha = getattr(layer, "alpha", None)
            act += f"({DEFAULT_ALPHA[act] if alpha is None else alpha})"
        rows.append((layer.name, type(layer).__name__, f"(N, {dout})", f"{count:,}", act, kernel))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [f'Model "{model.name}": input (N, {dims[0]})']
    for j, r in enumerate(rows):
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1]), r[2].ljust(widths[2]),
                 r[3].rjust(widths[3]), r[4].ljust(widths[4]), r[5]]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(r[5]))
    lines.append(f"total params: {total:,}")
    if compiled:
        c = model._config
        loss = c["loss"] + (f"({', '.join(f'{k}={v}' for k, v in c['loss_kwargs'].items())})"
                            if c["loss_kwargs"] else "")
        lines.append(f"loss: {loss}; optimizer: {c['optimizer']!r}; dtype {c['dtype']}; "
                     f"backend {model.program.backend}")
        if model._folded:
            lines.append(f"{layers[-1].name}: the final {model._folded} is folded into the loss "
                         f"(the loss reads the logits; predict returns probabilities)")
        lines.extend(notes)
    return "\n".join(lines)
