"""The Keras-like frontend: gc.Sequential and gc.layers.

Most tests use the reference backend (no Numba compile); the digits test and
the summary test share one compiled model, so the session compiles it once.
"""

import time

import numpy as np
import pytest
from graphc.frontends.layers import make_optimizer, optimizer_spec

import graphc as gc
from graphc.ir.printer import to_text
from graphc.optim import SGD, Adam, CosineLR

REF = {"backend": "reference"}


def _graphs(program):
    return [to_text(g) for g in (program.forward_graph, program.train_graph, program.eval_graph)]


def _toy(n=64, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng


# --- equivalence with the symbolic API --------------------------------------------------

@pytest.mark.parametrize("named", [True, False])
def test_sequential_builds_the_gc_dense_graph(named):
    n1, n2, n3 = ("fc1", "fc2", "out") if named else ("dense_1", "dense_2", "dense_3")
    model = gc.Sequential([
        gc.layers.Dense(16, activation="relu", name="fc1" if named else None),
        gc.layers.Dense(8, activation="leaky_relu", alpha=0.2, name="fc2" if named else None,
                        init="he_normal"),
        gc.layers.Dense(3, name="out" if named else None, use_bias=False),
    ], input_dim=5)
    model.compile(loss="cross_entropy", optimizer="sgd", lr=0.1, seed=7, **REF)

    x = gc.input("x", (None, 5))
    h = gc.dense(x, 16, activation="relu", name=n1)
    h = gc.dense(h, 8, activation="leaky_relu", alpha=0.2, name=n2, init="he_normal")
    logits = gc.dense(h, 3, name=n3, use_bias=False)
    y = gc.input("y", (None,), dtype="int64")
    ref = gc.compile(loss=gc.softmax_cross_entropy(logits, y), outputs={"output": logits},
                     optimizer=SGD(lr=0.1), seed=7, **REF)

    assert _graphs(model.program) == _graphs(ref)
    assert sorted(model.params) == sorted(ref.params) == sorted(
        [f"{n1}/W", f"{n1}/b", f"{n2}/W", f"{n2}/b", f"{n3}/W"])
    for name, value in ref.params.items():
        np.testing.assert_array_equal(model.params[name], value)
    xb, rng = _toy(32)
    yb = rng.integers(0, 3, 32)
    for _ in range(3):
        assert model.program.step({"x": xb, "y": yb}) == ref.step({"x": xb, "y": yb})
    np.testing.assert_array_equal(model.predict(xb), ref.predict(xb))


def test_final_softmax_is_folded_into_cross_entropy():
    model = gc.Sequential([gc.layers.Dense(4, activation="tanh", name="h"),
                           gc.layers.Dense(3, activation="softmax", name="o")], input_dim=5)
    model.compile(loss="softmax_cross_entropy", optimizer="adam", **REF)
    x = gc.input("x", (None, 5))
    z = gc.dense(gc.dense(x, 4, activation="tanh", name="h"), 3, name="o")
    loss = gc.softmax_cross_entropy(z, gc.input("y", (None,), dtype="int64"))
    ref = gc.compile(loss=loss, outputs={"output": gc.softmax(z)}, optimizer="adam", **REF)
    assert _graphs(model.program) == _graphs(ref)
    xb, _ = _toy(10)
    p = model.predict(xb)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)  # probabilities, not logits


def test_activation_layer_and_prelu_parameters():
    model = gc.Sequential([gc.layers.Dense(6, name="a"), gc.layers.Activation("prelu"),
                           gc.layers.Dense(2, activation="prelu", alpha=0.1),
                           gc.layers.Activation("elu", alpha=0.5)], input_dim=3)
    assert [layer.name for layer in model.layers] == ["a", "activation_1", "dense_1",
                                                      "activation_2"]
    model.compile(loss="mse", optimizer="sgd", **REF)
    params = model.params
    assert params["activation_1/alpha"].shape == (6,)
    np.testing.assert_array_equal(params["activation_1/alpha"], 0.25)
    np.testing.assert_array_equal(params["dense_1/alpha"], np.float32(0.1))
    text = model.summary()
    assert "prelu(0.25)" in text and "elu(0.5)" in text
    assert sum(v.size for v in params.values()) == 46 and "total params: 46" in text


# --- targets and losses -----------------------------------------------------------------

def test_bce_single_unit_accepts_1d_targets_and_folds_sigmoid():
    x, rng = _toy(200, 2, seed=1)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)  # 0/1 ints, 1-D, as a Dataset holds them
    model = gc.Sequential([gc.layers.Dense(8, activation="tanh"),
                           gc.layers.Dense(1, activation="sigmoid")], input_dim=2)
    model.compile(loss="bce", optimizer="adam", lr=0.05, **REF)
    assert model.program.feed_spec.inputs["y"][0] == (None, 1)
    model.fit(x, y, epochs=30, batch_size=32, progress=False)
    res = model.evaluate(x, y)
    assert set(res) == {"loss", "accuracy"} and res["accuracy"] > 0.95
    p = model.predict(x)
    assert p.shape == (200, 1) and np.all((p > 0) & (p < 1))


def test_regression_losses_metrics_and_quantile():
    x, rng = _toy(128, 3, seed=2)
    y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3).astype(np.float32)  # 1-D targets
    model = gc.Sequential([gc.layers.Dense(1)], input_dim=3)
    model.compile(loss="mse", optimizer="adam", lr=0.05, metrics=["mse", "mae"], **REF)
    model.fit(x, y, epochs=40, batch_size=16, progress=False)
    res = model.evaluate(x, y)
    assert set(res) == {"loss", "mse", "mae"}
    assert res["mse"] == pytest.approx(res["loss"], rel=1e-4) and res["mse"] < 1e-3
    q = gc.Sequential([gc.layers.Dense(1)], input_dim=3)
    q.compile(loss="quantile", loss_kwargs={"q": 0.9}, **REF)
    assert q.program.train_graph.node(q.program.train_graph.outputs["loss"]).get("q") == 0.9
    assert "quantile(q=0.9)" in q.summary()
    with pytest.raises(gc.FeedError, match=r"expected shape \(N, 2\)"):
        m2 = gc.Sequential([gc.layers.Dense(2)], input_dim=3).compile(loss="mae", **REF)
        m2.fit(x, y, progress=False)


def test_cross_entropy_accepts_one_hot_and_float_labels():
    x, rng = _toy(30, 4)
    labels = rng.integers(0, 3, 30)
    model = gc.Sequential([gc.layers.Dense(3)], input_dim=4).compile(**REF)
    a = model.evaluate(x, labels)
    assert model.evaluate(x, np.eye(3)[labels]) == a
    assert model.evaluate(x, labels.astype(np.float64)) == a
    assert model.evaluate({"x": x, "y": labels}) == model.evaluate((x, labels)) == a
    with pytest.raises(gc.FeedError, match="one-hot"):
        model.evaluate(x, np.full((30, 3), 1 / 3))
    with pytest.raises(gc.FeedError, match="whole numbers"):
        model.evaluate(x, labels + 0.5)


# --- options and errors -----------------------------------------------------------------

def test_optimizers_by_name_table_and_instance():
    assert isinstance(make_optimizer("ADAM"), Adam)
    opt = make_optimizer({"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True})
    assert (opt.lr, opt.momentum, opt.nesterov) == (0.1, 0.9, True)
    sched = make_optimizer({"name": "adamw", "weight_decay": 0.05,
                            "schedule": {"kind": "cosine", "t_max": 10}}, lr=0.01)
    assert isinstance(sched.lr, CosineLR) and sched.lr.base == 0.01 and sched.weight_decay == 0.05
    spec = optimizer_spec(sched)
    assert spec["name"] == "adamw" and spec["schedule"] == {"kind": "cosine", "t_max": 10,
                                                            "eta_min": 0.0}
    assert optimizer_spec(make_optimizer(spec)) == spec
    m = gc.Sequential([gc.layers.Dense(2)], input_dim=2)
    m.compile(optimizer=SGD(lr=0.5), **REF)
    assert m.program.optimizer.lr == 0.5


@pytest.mark.parametrize("call, match", [
    (lambda m: m.compile(loss="hinge"), r"unknown loss 'hinge'; valid: cross_entropy, .*quantile"),
    (lambda m: m.compile(optimizer="adagrad"), r"unknown optimizer 'adagrad'; valid: sgd, adam, "
                                                r"adamw, rmsprop"),
    (lambda m: m.compile(optimizer={"name": "sgd", "momentun": 0.9}), "unknown argument 'momentun'"),
    (lambda m: m.compile(optimizer=SGD(), lr=0.1), "ambiguous"),
    (lambda m: m.compile(metrics=["f1"]), "unknown metric 'f1'"),
    (lambda m: m.compile(loss="mse", metrics=["accuracy"]), "needs a classification loss"),
    (lambda m: m.compile(loss="mse", loss_kwargs={"q": 0.5}), "takes no argument 'q'"),
    (lambda m: m.fit(np.zeros((2, 3)), np.zeros(2)), "not compiled"),
    (lambda m: m.to_spec(), "compile it before"),
])
def test_bad_compile_arguments_raise_graph_error(call, match):
    model = gc.Sequential([gc.layers.Dense(2)], input_dim=3)
    with pytest.raises(gc.GraphError, match=match):
        call(model)


@pytest.mark.parametrize("make, match", [
    (lambda: gc.layers.Dense(0), "units must be a positive int"),
    (lambda: gc.layers.Dense(3, activation="swish"), "unknown activation 'swish'"),
    (lambda: gc.layers.Dense(3, activation="relu", alpha=0.1), "alpha is a parameter of"),
    (lambda: gc.layers.Dense(3, init="lecun"), "unknown init 'lecun'"),
    (lambda: gc.layers.Dense(3, name="a/b"), "no '/'"),
    (lambda: gc.layers.Activation("gelu"), "unknown activation 'gelu'"),
    (lambda: gc.Sequential([gc.layers.Dense(2, name="a"), gc.layers.Dense(2, name="a")],
                           input_dim=2), "two layers named 'a'"),
    (lambda: gc.Sequential(["dense"], input_dim=2), "takes graphc layers"),
    (lambda: gc.Sequential([gc.layers.Dense(2)]).compile(), "needs input_dim"),
    (lambda: gc.Sequential([], input_dim=2).compile(), "no layers"),
])
def test_bad_layers_raise_graph_error(make, match):
    with pytest.raises(gc.GraphError, match=match):
        make()


def test_auto_names_skip_user_names_and_fit_config_defaults():
    model = gc.Sequential([gc.layers.Dense(3), gc.layers.Dense(3, name="dense_1"),
                           gc.layers.Dense(2)], input_dim=2)
    assert [layer.name for layer in model.layers] == ["dense_2", "dense_1", "dense_3"]
    model.compile(loss="mse", **REF)
    model.fit_config = {"epochs": 3, "batch_size": 4}
    x, _ = _toy(10, 2)
    hist = model.fit(x, np.zeros((10, 2)), progress=False)
    assert hist.epochs == [0, 1, 2]
    assert model.program.step_count == 9  # ceil(10 / 4) steps per epoch
    assert len(model.fit(x, np.zeros((10, 2)), epochs=1, progress=False).epochs) == 1


# --- the compiled backend: digits, summary, save/load ---------------------------------

@pytest.fixture(scope="module")
def digits():
    ds = gc.data.load("digits")
    train, test = ds.split(validation=0.2, seed=0)
    train, stats = train.standardize()
    test, _ = test.standardize(stats)
    return train, test


@pytest.fixture(scope="module")
def digits_model():
    model = gc.Sequential([
        gc.layers.Dense(128, activation="relu", name="fc1"),
        gc.layers.Dense(64, name="fc2"),
        gc.layers.Activation("relu"),
        gc.layers.Dense(10, activation="softmax", name="out"),
    ], input_dim=64, name="digits-mlp")
    return model.compile(loss="cross_entropy", optimizer="adam", lr=1e-3, dtype="float32", seed=0)


def test_digits_reaches_95_percent(digits, digits_model):
    train, test = digits
    t0 = time.perf_counter()
    hist = digits_model.fit(train, epochs=25, batch_size=32, validation_data=test, progress=False)
    elapsed = time.perf_counter() - t0
    res = digits_model.evaluate(test.x, test.y)
    assert res["accuracy"] >= 0.95, res
    assert hist.val_accuracy[-1] == pytest.approx(res["accuracy"])
    assert hist.loss[-1] < hist.loss[0]
    assert elapsed < 45, f"25 epochs of digits took {elapsed:.1f} s (Numba compile included)"
    pred = digits_model.predict(test)
    assert pred.shape == (len(test), 10)
    assert (pred.argmax(axis=1) == test.y).mean() == pytest.approx(res["accuracy"])


def test_summary_shows_each_layer_and_its_fused_kernel(digits_model, capsys):
    text = digits_model.summary()
    assert capsys.readouterr().out.strip() == text.strip()
    rows = {line.split()[0]: line for line in text.splitlines()}
    assert "Dense" in rows["fc1"] and "(N, 128)" in rows["fc1"] and "8,320" in rows["fc1"]
    # The first layer needs no dx; fc2's separate Activation layer is fused into its kernel.
    assert "dense[relu] → dense_bwd[relu](dW, db)" in rows["fc1"]
    assert "dense[relu] → dense_bwd[relu](dx, dW, db)" in rows["fc2"]
    assert "fused into fc2" in rows["activation_1"]
    assert "dense[linear] → dense_bwd[linear](dx, dW, db)" in rows["out"]
    assert "softmax is folded into the loss" in text
    assert "sce_fused" in text
    assert "total params: 17,226" in text


def test_summary_shows_what_was_not_fused():
    # Compiling builds the optimised graphs; Numba compiles nothing until the first call.
    model = gc.Sequential([gc.layers.Dense(16, activation="softplus", name="h"),
                           gc.layers.Activation("tanh", name="t"),
                           gc.layers.Dense(4, activation="softmax", name="o")], input_dim=8)
    text = model.compile(loss="mse").summary()
    rows = {line.split()[0]: line for line in text.splitlines()}
    assert "dense[softplus] → dense_bwd[softplus](dW, db)" in rows["h"]
    assert "separate tanh op" in rows["t"]
    assert "dense[linear] + separate softmax op → dense_bwd[linear](dx, dW, db)" in rows["o"]
    assert "o: not fused: softmax" in text


def test_reference_summary_says_not_fused():
    model = gc.Sequential([gc.layers.Dense(4, activation="relu"), gc.layers.Dense(2)],
                          input_dim=3)
    assert "(not compiled)" in model.summary()
    text = model.compile(**REF).summary()
    assert text.count("reference interpreter (not fused)") == 2


def test_save_and_load(digits, digits_model, tmp_path):
    _, test = digits
    path = tmp_path / "digits.gcm"
    digits_model.save(path)
    loaded = gc.load(path)
    np.testing.assert_array_equal(loaded.predict(test.x, output="output"),
                                  digits_model.predict(test.x))
    assert loaded.evaluate({"x": test.x, "y": test.y}) == digits_model.evaluate(test)
