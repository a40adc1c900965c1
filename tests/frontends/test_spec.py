"""Declarative model specs: JSON and TOML into the same compiled Sequential, strict checks."""

import json

import numpy as np
import pytest
from graphc.frontends.spec import dump_spec, read_spec, spec_to_toml

import graphc as gc
from graphc.ir.printer import to_text
from graphc.optim import StepLR

JSON_SPEC = """{
  "name": "digits-mlp",
  "input_dim": 64,
  "layers": [
    {"units": 128, "activation": "relu", "name": "fc1"},
    {"units": 64, "activation": "leaky_relu", "alpha": 0.1},
    {"type": "activation", "activation": "tanh"},
    {"units": 10, "init": "he_uniform", "use_bias": false}
  ],
  "loss": "cross_entropy",
  "optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9,
                "schedule": {"kind": "step", "step_size": 5, "gamma": 0.5}},
  "weight_decay": 0.0001,
  "clip_norm": null,
  "dtype": "float64",
  "seed": 3,
  "fit": {"epochs": 2, "batch_size": 16}
}
"""

TOML_SPEC = """
name = "digits-mlp"
input_dim = 64
loss = "cross_entropy"
weight_decay = 1e-4
dtype = "float64"
seed = 3

[optimizer]
name = "sgd"
lr = 0.1
momentum = 0.9

[optimizer.schedule]
kind = "step"
step_size = 5
gamma = 0.5

[fit]
epochs = 2
batch_size = 16

[[layers]]
units = 128
activation = "relu"
name = "fc1"

[[layers]]
units = 64
activation = "leaky_relu"
alpha = 0.1

[[layers]]
type = "activation"
activation = "tanh"

[[layers]]
units = 10
init = "he_uniform"
use_bias = false
"""

MINIMAL = {"input_dim": 4, "layers": [{"units": 3}], "loss": "cross_entropy"}


def _same_model(a, b):
    assert a.to_spec() == b.to_spec()
    assert a.fit_config == b.fit_config
    pa, pb = a.program, b.program
    assert to_text(pa.train_graph) == to_text(pb.train_graph)
    assert to_text(pa.forward_graph) == to_text(pb.forward_graph)
    assert sorted(pa.params) == sorted(pb.params)
    for name, value in pa.params.items():
        np.testing.assert_array_equal(value, pb.params[name])


def test_json_and_toml_give_the_same_model(tmp_path):
    (tmp_path / "m.json").write_text(JSON_SPEC)
    (tmp_path / "m.toml").write_text(TOML_SPEC)
    a = gc.load_spec(tmp_path / "m.json", backend="reference")
    b = gc.load_spec(str(tmp_path / "m.toml"), backend="reference")
    _same_model(a, b)
    assert [layer.name for layer in a.layers] == ["fc1", "dense_1", "activation_1", "dense_2"]
    assert a.fit_config == {"epochs": 2, "batch_size": 16}
    prog = a.program
    assert prog.dtype == np.float64 and prog.seed == 3 and prog.weight_decay == 1e-4
    assert isinstance(prog.optimizer.lr, StepLR) and prog.optimizer.momentum == 0.9
    assert "dense_2/b" not in prog.params
    # The spec's fit table drives fit's defaults.
    rng = np.random.default_rng(0)
    hist = a.fit(rng.normal(size=(40, 64)), rng.integers(0, 10, 40), progress=False)
    assert hist.epochs == [0, 1] and prog.step_count == 6


def test_spec_dict_equals_hand_written_sequential():
    model = gc.load_spec({**MINIMAL, "optimizer": "rmsprop", "metrics": ["accuracy"]},
                         backend="reference")
    ref = gc.Sequential([gc.layers.Dense(3)], input_dim=4).compile(
        loss="cross_entropy", optimizer="rmsprop", backend="reference")
    _same_model(model, ref)


@pytest.mark.parametrize("suffix", [".json", ".toml"])
def test_round_trip_through_files(tmp_path, suffix):
    model = gc.Sequential([
        gc.layers.Dense(8, activation="prelu", alpha=0.3, name="p"),
        gc.layers.Activation("elu", alpha=0.7, name="e"),
        gc.layers.Dense(1, init="torch_linear", bias_init="ones"),
    ], input_dim=5, name="quantile model")
    model.compile(loss="quantile", loss_kwargs={"q": 0.75},
                  optimizer={"name": "adamw", "lr": 0.003, "weight_decay": 0.02,
                             "betas": [0.8, 0.99], "schedule": {"kind": "cosine", "t_max": 9}},
                  metrics=["mae"], clip_norm=1.5, seed=11, backend="reference")
    model.fit_config = {"epochs": 4, "shuffle": False, "patience": 2}
    path = tmp_path / f"model{suffix}"
    dump_spec(model, path)
    again = gc.load_spec(path, backend="reference")
    _same_model(model, again)
    assert again.to_spec()["loss"] == {"name": "quantile", "q": 0.75}
    assert read_spec(path) == read_spec(model.to_spec())


def test_written_toml_is_readable_by_tomllib():
    import tomllib

    spec = gc.load_spec(json.loads(JSON_SPEC), backend="reference").to_spec()
    assert read_spec(tomllib.loads(spec_to_toml(spec))) == read_spec(spec)


def _with(**changes):
    spec = json.loads(json.dumps(MINIMAL))
    for key, value in changes.items():
        spec[key] = value
    return spec


def _layer(**fields):
    return _with(layers=[{"units": 3, **fields}])


BAD = [
    ({"layers": [{"units": 3}], "loss": "mse"}, r"input_dim: missing \(required\)"),
    (_with(extra=1), r"extra: unknown key; valid keys: input_dim"),
    (_with(layer=[]), r"layer: unknown key \(did you mean 'layers'\?\)"),
    (_with(input_dim="64"), r"input_dim: expected an integer, got '64' \(str\)"),
    (_with(input_dim=True), r"input_dim: expected an integer"),
    (_with(input_dim=0), r"input_dim: must be >= 1"),
    (_with(layers=[]), r"layers: expected a non-empty list"),
    (_with(layers={"units": 3}), r"layers: expected a non-empty list"),
    (_with(layers=[3]), r"layers\[0\]: expected a layer table"),
    (_layer(units=2.0), r"layers\[0\].units: expected an integer, got 2.0"),
    (_with(layers=[{"activation": "relu"}]), r"layers\[0\].units: missing"),
    (_layer(unit=3), r"layers\[0\]\.unit: unknown key \(did you mean 'units'\?\)"),
    (_layer(activation="swish"), r"layers\[0\].activation: unknown value 'swish'"),
    (_layer(activation="relu", alpha=0.1), r"layers\[0\].alpha: only leaky_relu, elu, prelu"),
    (_layer(use_bias="yes"), r"layers\[0\].use_bias: expected true or false"),
    (_layer(init="lecun"), r"layers\[0\].init: unknown value 'lecun'"),
    (_layer(type="conv"), r"layers\[0\].type: unknown value 'conv'"),
    (_layer(name="a/b"), r"layers\[0\].name: a layer name may not contain '/'"),
    (_with(layers=[{"units": 3, "name": "a"}, {"units": 3, "name": "a"}]),
     r"layers\[0\].name: two layers are named 'a'"),
    (_with(layers=[{"type": "activation"}]), r"layers\[0\].activation: missing"),
    (_with(layers=[{"type": "activation", "activation": "relu", "units": 3}]),
     r"layers\[0\]\.units: unknown key; valid keys: type, activation, alpha, name"),
    (_with(loss="hinge"), r"loss: unknown value 'hinge'; valid: cross_entropy"),
    (_with(loss=3), r"loss: expected a loss name or a table"),
    (_with(loss="quantile"), r"loss: quantile needs q"),
    (_with(loss={"name": "quantile"}), r"loss.q: missing"),
    (_with(loss={"name": "quantile", "q": 1.5}), r"loss.q: must be < 1.0"),
    (_with(loss={"name": "mse", "q": 0.5}), r"loss.q: unknown key"),
    (_with(loss={"q": 0.5}), r"loss.name: missing"),
    (_with(optimizer="adagrad"), r"optimizer: unknown value 'adagrad'; valid: sgd, adam"),
    (_with(optimizer={"lr": 0.1}), r"optimizer.name: missing"),
    (_with(optimizer={"name": "adam", "lr": -1}), r"optimizer.lr: must be > 0"),
    (_with(optimizer={"name": "adam", "lr": "fast"}), r"optimizer.lr: expected a finite number"),
    (_with(optimizer={"name": "adam", "momentum": 0.9}), r"optimizer.momentum: unknown key"),
    (_with(optimizer={"name": "adam", "betas": [0.9]}), r"optimizer.betas: expected a list of two"),
    (_with(optimizer={"name": "sgd", "nesterov": 1}), r"optimizer.nesterov: expected true or false"),
    (_with(optimizer={"name": "sgd", "schedule": {"kind": "linear"}}),
     r"optimizer.schedule.kind: unknown value 'linear'"),
    (_with(optimizer={"name": "sgd", "schedule": {"kind": "step"}}),
     r"optimizer.schedule.step_size: missing"),
    (_with(optimizer={"name": "sgd", "schedule": {"kind": "cosine", "t_max": 5, "gama": 1}}),
     r"optimizer.schedule.gama: unknown key"),
    (_with(metrics="accuracy"), r"metrics: expected a list"),
    (_with(metrics=["f1"]), r"metrics\[0\]: unknown value 'f1'"),
    (_with(weight_decay=-0.1), r"weight_decay: must be >= 0"),
    (_with(clip_norm=0), r"clip_norm: must be > 0"),
    (_with(dtype="float16"), r"dtype: unknown value 'float16'"),
    (_with(seed=1.5), r"seed: expected an integer"),
    (_with(fit={"epochs": -1}), r"fit.epochs: must be >= 0"),
    (_with(fit={"batch": 32}), r"fit.batch: unknown key \(did you mean 'batch_size'\?\)"),
    (_with(fit={"shuffle": "no"}), r"fit.shuffle: expected true or false"),
    (_with(fit=[1]), r"fit: expected a table"),
    (_with(name=""), r"name: expected a non-empty string"),
    # Passes the key checks, fails when compiled: still a GraphError naming the file.
    (_with(loss="mse", metrics=["accuracy"]), r"model spec: metric 'accuracy' needs a classification"),
    (_with(optimizer={"name": "sgd", "nesterov": True}), r"model spec: SGD: Nesterov"),
]


@pytest.mark.parametrize("spec, match", BAD, ids=[m for _, m in BAD])
def test_bad_spec_raises_graph_error_naming_the_key(spec, match):
    with pytest.raises(gc.GraphError, match=match):
        gc.load_spec(spec, backend="reference")


@pytest.mark.parametrize("spec, match", BAD[:12], ids=[m for _, m in BAD[:12]])
def test_bad_spec_file_errors_name_the_file(tmp_path, spec, match):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(gc.GraphError, match=rf"bad\.json: {match}"):
        gc.load_spec(path, backend="reference")


@pytest.mark.parametrize("name, text, match", [
    ("m.json", '{"input_dim": 4,\n "layers": [}', r"m\.json: invalid JSON at line 2"),
    ("m.json", '{"input_dim": 4, "input_dim": 5}', r"m\.json: invalid JSON: duplicate key 'input_dim'"),
    ("m.json", "[1, 2]", r"m\.json: expected a table"),
    ("m.toml", "input_dim = \n", r"m\.toml: invalid TOML"),
    ("m.toml", 'input_dim = 4\nloss = "mse"\n[[layers]]\nunits = "3"\n',
     r"m\.toml: layers\[0\]\.units: expected an integer"),
    ("m.yaml", "input_dim: 4", r"m\.yaml: a model spec must be a \.json or \.toml file"),
])
def test_bad_spec_files(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(gc.GraphError, match=match):
        gc.load_spec(path)


def test_missing_file_and_wrong_argument_type(tmp_path):
    with pytest.raises(gc.GraphError, match=r"nope\.toml: cannot read the model spec"):
        gc.load_spec(tmp_path / "nope.toml")
    with pytest.raises(gc.GraphError, match="a path to a .json/.toml file or a dict"):
        gc.load_spec(42)
