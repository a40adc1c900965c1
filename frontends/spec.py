"""Declarative model specs (JSON or TOML) -> compiled :class:`Sequential` models.

A spec describes the network and how to train it::

    # model.toml                              # model.json
    name = "digits-mlp"                       {"name": "digits-mlp",
    input_dim = 64                             "input_dim": 64,
    loss = "cross_entropy"                     "loss": "cross_entropy",
    dtype = "float32"                          "dtype": "float32",
    [optimizer]                                "optimizer": {"name": "adam", "lr": 0.001},
    name = "adam"                              "layers": [
    lr = 0.001                                   {"units": 128, "activation": "relu"},
    [[layers]]                                   {"units": 10}]}
    units = 128
    activation = "relu"
    [[layers]]
    units = 10

Top-level keys (``input_dim``, ``layers`` and ``loss`` are required):

========== =====================================================================
name        model name (string)
input_dim   features per sample (positive int)
layers      non-empty list of layer tables: a Dense layer ``{units, activation,
            name, use_bias, init, bias_init, alpha}`` (``type = "dense"`` optional)
            or ``{type = "activation", activation, alpha, name}``
loss        a loss name (see ``graphc.frontends.layers.LOSSES``) or a table
            ``{name = "quantile", q = 0.9}``
optimizer   a name or a table ``{name, lr, <optimizer arguments>, schedule}``,
            ``schedule = {kind = "step"|"exponential"|"cosine", ...}``; default adam
metrics     list of metric names
weight_decay, clip_norm    numbers (L2 on weight matrices; global-norm clipping)
dtype       "float32" or "float64";   seed   int (parameter initialisation)
fit         defaults for ``fit``: ``{epochs, batch_size, shuffle, seed, patience}``
========== =====================================================================

Validation is strict: an unknown key, a wrong type or a missing field raises
:class:`graphc.GraphError` naming the file and the key path
(``model.toml: layers[1].units: ...``).  TOML has no null, so optional keys
are simply left out; JSON's ``null`` means the same.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from graphc.frontends.layers import (
    LOSS_KWARGS,
    LOSSES,
    METRICS,
    SCHEDULES,
    Activation,
    Dense,
    Layer,
    Sequential,
    make_optimizer,
)

from graphc.errors import GraphcError, GraphError
from graphc.ops.activation import ACTIVATION_NAMES, DEFAULT_ALPHA
from graphc.ops.sources import INITS
from graphc.optim import OPTIMIZERS

__all__ = ["dump_spec", "load_spec", "read_spec", "spec_to_json", "spec_to_toml"]

PathLike = str | os.PathLike[str]
_ACTIVATIONS = ("linear", *ACTIVATION_NAMES)


class _Checker:
    """Type checks that name the source and the key path in every error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, msg: str) -> GraphError:
        return GraphError(f"{self.source}: {path}: {msg}" if path else f"{self.source}: {msg}")

    def table(self, value: Any, path: str, required: tuple[str, ...], optional: tuple[str, ...]
              ) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a table (object), got {_show(value)}")
        valid = (*required, *optional)
        for key in value:
            if key not in valid:
                near = difflib.get_close_matches(str(key), valid, n=1)
                hint = f" (did you mean {near[0]!r}?)" if near else ""
                raise self.fail(_join(path, key), f"unknown key{hint}; valid keys: "
                                f"{', '.join(valid)}")
        for key in required:
            if key not in value:
                raise self.fail(_join(path, key), "missing (required)")
        # JSON null = absent (TOML cannot say null at all).
        return {k: v for k, v in value.items() if v is not None}

    def int_(self, value: Any, path: str, minimum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"expected an integer, got {_show(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        return value

    def number(self, value: Any, path: str, minimum: float | None = None,
               positive: bool = False, below: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(path, f"expected a finite number, got {_show(value)}")
        if positive and value <= 0:
            raise self.fail(path, f"must be > 0, got {value}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be >= {minimum}, got {value}")
        if below is not None and value >= below:
            raise self.fail(path, f"must be < {below}, got {value}")
        return float(value) if isinstance(value, float) else value

    def bool_(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"expected true or false, got {_show(value)}")
        return value

    def choice(self, value: Any, path: str, choices: tuple[str, ...] | list[str]) -> str:
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, one of {', '.join(choices)}; got "
                            f"{_show(value)}")
        if value not in choices:
            near = difflib.get_close_matches(value, choices, n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else ""
            raise self.fail(path, f"unknown value {value!r}{hint}; valid: {', '.join(choices)}")
        return value

    def string(self, value: Any, path: str) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"expected a non-empty string, got {_show(value)}")
        return value


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)


# --- reading --------------------------------------------------------------------------

_TOP_REQUIRED = ("input_dim", "layers", "loss")
_TOP_OPTIONAL = ("name", "optimizer", "metrics", "weight_decay", "clip_norm", "dtype", "seed", "fit")
_DENSE_KEYS = ("type", "units", "activation", "name", "use_bias", "init", "bias_init", "alpha")
_ACT_KEYS = ("type", "activation", "alpha", "name")
_FIT_KEYS = ("epochs", "batch_size", "shuffle", "seed", "patience")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise GraphError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _parse_file(path: Path) -> Any:
    suffix = path.suffix.lower()
    if suffix not in (".json", ".toml"):
        raise GraphError(f"{path}: a model spec must be a .json or .toml file")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise GraphError(f"{path}: cannot read the model spec ({e.strerror or e})") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise GraphError(f"{path}: not UTF-8 text ({e})") from None
    if suffix == ".json":
        try:
            return json.loads(text, object_pairs_hook=_no_duplicates)
        except json.JSONDecodeError as e:
            raise GraphError(f"{path}: invalid JSON at line {e.lineno}, column {e.colno}: "
                             f"{e.msg}") from None
        except GraphError as e:
            raise GraphError(f"{path}: invalid JSON: {e}") from None
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise GraphError(f"{path}: TOML specs need Python >= 3.11 (tomllib) or the tomli "
                             "package") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise GraphError(f"{path}: invalid TOML: {e}") from None


def read_spec(spec: PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Parse (if a path) and validate a spec; returns it normalised (nulls dropped).

    Raises :class:`graphc.GraphError` naming the file and key for every problem.
    """
    if isinstance(spec, Mapping):
        source, raw = "model spec", spec
    elif isinstance(spec, str | os.PathLike):
        source, raw = os.fspath(spec), _parse_file(Path(spec))
    else:
        raise GraphError(f"a model spec is a path to a .json/.toml file or a dict, got "
                         f"{type(spec).__name__}")
    return _validate(raw, _Checker(source))


def _validate(raw: Any, c: _Checker) -> dict[str, Any]:
    top = c.table(raw, "", _TOP_REQUIRED, _TOP_OPTIONAL)
    out: dict[str, Any] = {}
    if "name" in top:
        out["name"] = c.string(top["name"], "name")
    out["input_dim"] = c.int_(top["input_dim"], "input_dim", minimum=1)
    layers = top["layers"]
    if not isinstance(layers, list) or not layers:
        raise c.fail("layers", f"expected a non-empty list of layer tables, got {_show(layers)}")
    out["layers"] = [_layer(entry, f"layers[{i}]", c) for i, entry in enumerate(layers)]
    names = [layer["name"] for layer in out["layers"] if "name" in layer]
    for i, layer in enumerate(out["layers"]):
        if "name" in layer and names.count(layer["name"]) > 1:
            raise c.fail(f"layers[{i}].name", f"two layers are named {layer['name']!r}")
    out["loss"] = _loss(top["loss"], c)
    out["optimizer"] = _optimizer(top.get("optimizer", "adam"), c)
    if "metrics" in top:
        metrics = top["metrics"]
        if not isinstance(metrics, list):
            raise c.fail("metrics", f"expected a list of metric names, got {_show(metrics)}")
        out["metrics"] = [c.choice(m, f"metrics[{i}]", METRICS) for i, m in enumerate(metrics)]
    if "weight_decay" in top:
        out["weight_decay"] = c.number(top["weight_decay"], "weight_decay", minimum=0)
    if "clip_norm" in top:
        out["clip_norm"] = c.number(top["clip_norm"], "clip_norm", positive=True)
    if "dtype" in top:
        out["dtype"] = c.choice(top["dtype"], "dtype", ("float32", "float64"))
    if "seed" in top:
        out["seed"] = c.int_(top["seed"], "seed", minimum=0)
    if "fit" in top:
        fit = c.table(top["fit"], "fit", (), _FIT_KEYS)
        checked: dict[str, Any] = {}
        for key, value in fit.items():
            if key == "shuffle":
                checked[key] = c.bool_(value, "fit.shuffle")
            else:
                low = {"epochs": 0, "batch_size": 1, "seed": 0, "patience": 1}[key]
                checked[key] = c.int_(value, f"fit.{key}", minimum=low)
        out["fit"] = checked
    return out


def _layer(entry: Any, path: str, c: _Checker) -> dict[str, Any]:
    if not isinstance(entry, Mapping):
        raise c.fail(path, f"expected a layer table, got {_show(entry)}")
    kind = entry.get("type", "dense")
    kind = c.choice(kind, f"{path}.type", ("dense", "activation"))
    if kind == "dense":
        t = c.table(entry, path, ("units",), tuple(k for k in _DENSE_KEYS if k != "units"))
        out: dict[str, Any] = {"units": c.int_(t["units"], f"{path}.units", minimum=1)}
        if "use_bias" in t:
            out["use_bias"] = c.bool_(t["use_bias"], f"{path}.use_bias")
        for key in ("init", "bias_init"):
            if key in t:
                out[key] = c.choice(t[key], f"{path}.{key}", INITS)
    else:
        t = c.table(entry, path, ("type", "activation"), ("alpha", "name"))
        out = {"type": "activation"}
    if "activation" in t:
        out["activation"] = c.choice(t["activation"], f"{path}.activation", _ACTIVATIONS)
    if "alpha" in t:
        act = out.get("activation")
        if act not in DEFAULT_ALPHA:
            raise c.fail(f"{path}.alpha", f"only {', '.join(DEFAULT_ALPHA)} take alpha, not "
                         f"activation {act!r}")
        out["alpha"] = c.number(t["alpha"], f"{path}.alpha")
    if "name" in t:
        out["name"] = c.string(t["name"], f"{path}.name")
        if "/" in out["name"]:
            raise c.fail(f"{path}.name", "a layer name may not contain '/'")
    return out


def _loss(value: Any, c: _Checker) -> str | dict[str, Any]:
    if isinstance(value, str):
        name = c.choice(value, "loss", tuple(LOSSES))
        if LOSSES[name] == "quantile":
            raise c.fail("loss", "quantile needs q: write loss = {name = \"quantile\", q = 0.9}")
        return name
    if not isinstance(value, Mapping):
        raise c.fail("loss", f"expected a loss name or a table, got {_show(value)}")
    if "name" not in value:
        raise c.fail("loss.name", "missing (required)")
    name = c.choice(value["name"], "loss.name", tuple(LOSSES))
    t = c.table(value, "loss", ("name",), tuple(sorted(LOSS_KWARGS.get(LOSSES[name], ()))))
    out: dict[str, Any] = {"name": name}
    if "q" in t:
        out["q"] = c.number(t["q"], "loss.q", positive=True, below=1.0)
    elif LOSSES[name] == "quantile":
        raise c.fail("loss.q", "missing (required by the quantile loss)")
    return out


def _optimizer(value: Any, c: _Checker) -> dict[str, Any]:
    if isinstance(value, str):
        return {"name": c.choice(value.lower(), "optimizer", tuple(OPTIMIZERS))}
    if not isinstance(value, Mapping):
        raise c.fail("optimizer", f"expected an optimizer name or a table, got {_show(value)}")
    if "name" not in value:
        raise c.fail("optimizer.name", "missing (required)")
    name = c.choice(value["name"], "optimizer.name", tuple(OPTIMIZERS))
    cls = OPTIMIZERS[name]
    params = inspect.signature(cls.__init__).parameters
    args = tuple(p for p in params if p != "self")
    t = c.table(value, "optimizer", ("name",), (*args, "schedule"))
    out: dict[str, Any] = {"name": name}
    for key, v in t.items():
        path = f"optimizer.{key}"
        if key == "name":
            continue
        if key == "schedule":
            out[key] = _schedule(v, c)
        elif isinstance(params[key].default, bool):
            out[key] = c.bool_(v, path)
        elif key == "betas":
            if not isinstance(v, list) or len(v) != 2:
                raise c.fail(path, f"expected a list of two numbers, got {_show(v)}")
            out[key] = [c.number(b, f"{path}[{i}]", minimum=0, below=1.0) for i, b in enumerate(v)]
        elif key == "lr":
            out[key] = c.number(v, path, positive=True)
        else:
            out[key] = c.number(v, path, minimum=0)
    return out


def _schedule(value: Any, c: _Checker) -> dict[str, Any]:
    path = "optimizer.schedule"
    if not isinstance(value, Mapping):
        raise c.fail(path, f"expected a table with 'kind', got {_show(value)}")
    if "kind" not in value:
        raise c.fail(f"{path}.kind", "missing (required)")
    kind = c.choice(value["kind"], f"{path}.kind", tuple(SCHEDULES))
    fields = [f for f in dataclasses.fields(SCHEDULES[kind]) if f.name != "base"]
    required = tuple(f.name for f in fields if f.default is dataclasses.MISSING)
    optional = tuple(f.name for f in fields if f.default is not dataclasses.MISSING)
    t = c.table(value, path, ("kind", *required), optional)
    out: dict[str, Any] = {"kind": kind}
    for key, v in t.items():
        if key in ("step_size", "t_max"):
            out[key] = c.int_(v, f"{path}.{key}", minimum=1)
        elif key != "kind":
            out[key] = c.number(v, f"{path}.{key}", minimum=0)
    return out


# --- building -------------------------------------------------------------------------

def _build_layer(cfg: Mapping[str, Any]) -> Layer:
    args = dict(cfg)
    if args.pop("type", "dense") == "activation":
        return Activation(**args)
    return Dense(**args)


def load_spec(spec: PathLike | Mapping[str, Any], backend: str = "compiled") -> Sequential:
    """A :class:`Sequential` built from a spec file (``.json``/``.toml``) or dict, compiled.

    ``backend`` is passed to ``compile`` (``"compiled"`` or ``"reference"``).  The
    spec's ``fit`` table becomes ``model.fit_config``.
    """
    cfg = read_spec(spec)
    source = "model spec" if isinstance(spec, Mapping) else os.fspath(spec)
    try:
        model = Sequential([_build_layer(layer) for layer in cfg["layers"]],
                           input_dim=cfg["input_dim"], name=cfg.get("name"))
        loss = cfg["loss"]
        loss_kwargs = {}
        if isinstance(loss, dict):
            loss_kwargs = {k: v for k, v in loss.items() if k != "name"}
            loss = loss["name"]
        model.compile(loss=loss, optimizer=make_optimizer(cfg["optimizer"]),
                      metrics=cfg.get("metrics"), weight_decay=cfg.get("weight_decay", 0.0),
                      clip_norm=cfg.get("clip_norm"), dtype=cfg.get("dtype", "float32"),
                      seed=cfg.get("seed", 0), backend=backend, loss_kwargs=loss_kwargs)
    except GraphcError as e:
        # Anything the checks above let through (an invalid combination, say).
        raise GraphError(f"{source}: {e}") from None
    model.fit_config = dict(cfg.get("fit", {}))
    return model


# --- writing --------------------------------------------------------------------------

def spec_to_json(spec: Mapping[str, Any]) -> str:
    """A spec dict as JSON text."""
    return json.dumps(spec, indent=2) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise GraphError(f"cannot write {value} to a spec")
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON's escapes are valid in TOML basic strings
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}"
                               for k, v in value.items() if v is not None) + "}"
    raise GraphError(f"cannot write a {type(value).__name__} to a TOML spec")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def spec_to_toml(spec: Mapping[str, Any]) -> str:
    """A spec dict as TOML text (scalars first, then tables, then ``[[layers]]``)."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping]] = []
    for key, value in spec.items():
        if value is None or key == "layers":
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, table in tables:
        lines += ["", f"[{_toml_key(key)}]"]
        subtables = []
        for k, v in table.items():
            if isinstance(v, Mapping):
                subtables.append((k, v))
            elif v is not None:
                lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
        for k, v in subtables:
            lines += ["", f"[{_toml_key(key)}.{_toml_key(k)}]"]
            lines += [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in v.items() if vv is not None]
    for layer in spec.get("layers", []):
        lines += ["", "[[layers]]"]
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in layer.items() if v is not None]
    return "\n".join(lines).lstrip("\n") + "\n"


def dump_spec(model: Sequential | Mapping[str, Any], path: PathLike) -> None:
    """Write a compiled model's spec (or a spec dict) to ``path`` (.json or .toml)."""
    spec = model.to_spec() if isinstance(model, Sequential) else dict(model)
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix == ".json":
        text = spec_to_json(spec)
    elif suffix == ".toml":
        text = spec_to_toml(spec)
    else:
        raise GraphError(f"{p}: a model spec must be a .json or .toml file")
    p.write_text(text, encoding="utf-8")
