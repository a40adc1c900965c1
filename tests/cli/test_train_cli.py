"""``graphc train`` (a Python model, a saved .gcm that resumes, a JSON spec), ``graphc cache``
and ``graphc demo``, called in-process through ``graphc.cli.main``."""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import cli, demo
from graphc.codegen import cache

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "examples" / "mlp.py")  # mlp(): x (None, 64), y int64, 10 classes: digits-sized
# Plain SGD (folded into the backward GEMMs); every run of mlp() below shares one module.
TRAIN = ["--data", "digits", "--lr", "0.2", "--batch-size", "32", "--no-progress"]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(code, out, err, pattern):
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("graphc: error: "), err
    assert re.search(pattern, lines[0]), lines[0]
    assert "Traceback" not in err


def test_accuracy(out: str) -> float:
    m = re.search(r"^test loss (\S+)\s+accuracy (\S+)$", out, re.M)
    assert m, out
    return float(m.group(2))


test_accuracy.__test__ = False  # a helper, not a test


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """examples/mlp.py:mlp trained 2 epochs on digits and saved (shared by the tests below)."""
    path = tmp_path_factory.mktemp("cli") / "mlp.gcm"
    code = cli.main(["train", f"{MLP}:mlp", *TRAIN, "--epochs", "2", "--save", str(path)])
    assert code == 0
    return path


def test_train_a_python_model_on_digits(capsys, tmp_path):
    code, out, err = run(capsys, "train", f"{MLP}:mlp", *TRAIN, "--epochs", "3",
                         "--save", tmp_path / "m.gcm")
    assert code == 0, err
    epochs = re.findall(r"^epoch +(\d+)  loss (\S+)  val_loss \S+  val_acc (\S+)", out, re.M)
    assert [int(e[0]) for e in epochs] == [0, 1, 2]
    assert float(epochs[-1][1]) < float(epochs[0][1])
    assert test_accuracy(out) > 0.9
    assert f"saved {tmp_path / 'm.gcm'}" in out
    net = gc.load(tmp_path / "m.gcm")
    assert (net.epoch, net.dtype, type(net.optimizer).__name__) == (3, np.float32, "SGD")
    assert net.optimizer.lr == 0.2


@pytest.mark.parametrize("argv, lr", [([], 0.01), (["--optimizer", "sgd"], 1e-3),
                                      (["--optimizer", "SGD", "--lr", "0.5"], 0.5)],
                         ids=["cli_default", "sgd_default", "explicit"])
def test_train_optimizer_defaults(capsys, tmp_path, argv, lr):
    """No --optimizer: SGD at 0.01 (gc.compile's default); --optimizer without --lr: the
    optimizer's own default, PyTorch's.  --validation takes a row count too."""
    code, out, err = run(capsys, "train", f"{MLP}:mlp", "--data", "digits", "--epochs", "0",
                         "--validation", "100", "--no-progress", *argv,
                         "--save", tmp_path / "d.gcm")
    assert code == 0, err
    test_accuracy(out)
    opt = gc.load(tmp_path / "d.gcm", backend="reference").optimizer
    assert isinstance(opt, gc.optim.SGD) and opt.lr == lr and opt.momentum == 0


def test_train_resumes_a_saved_model(capsys, trained, tmp_path):
    """2 epochs, save, then 1 more from the file == 3 epochs straight (same split and seed),
    bit for bit."""
    code, out, err = run(capsys, "train", trained, "--data", "digits", "--epochs", "1",
                         "--no-progress", "--save", tmp_path / "resumed.gcm")
    assert code == 0, err
    assert re.findall(r"^epoch +(\d+)", out, re.M) == ["2"]  # epochs count on
    test_accuracy(out)
    code, _, err = run(capsys, "train", f"{MLP}:mlp", *TRAIN, "--epochs", "3",
                       "--save", tmp_path / "straight.gcm")
    assert code == 0, err
    resumed, straight = gc.load(tmp_path / "resumed.gcm"), gc.load(tmp_path / "straight.gcm")
    assert (resumed.epoch, resumed.step_count) == (straight.epoch, straight.step_count)
    assert resumed.arena.data.tobytes() == straight.arena.data.tobytes()


def test_train_a_json_spec(capsys, tmp_path):
    spec = {"name": "digits-spec", "input_dim": 64,
            "layers": [{"units": 24, "activation": "relu"}, {"units": 10}],
            "loss": "cross_entropy", "optimizer": {"name": "adam", "lr": 0.01},
            "dtype": "float32", "seed": 1}
    path = tmp_path / "model.json"
    path.write_text(json.dumps(spec))
    code, out, err = run(capsys, "train", path, "--data", "digits", "--epochs", "2",
                         "--no-progress", "--save", tmp_path / "spec.gcm")
    assert code == 0, err
    assert len(re.findall(r"^epoch ", out, re.M)) == 2
    assert test_accuracy(out) > 0.85
    assert gc.load(tmp_path / "spec.gcm").epoch == 2


def _digits_like_npz(path: Path) -> Path:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((60, 64)).astype(np.float32)
    np.savez(path, x=x, y=(x[:, 0] > 0).astype(np.int64))
    return path


@pytest.mark.parametrize("argv, pattern", [
    (["nope.py:mlp", "--data", "digits"], r"nope\.py: no such file"),
    ([f"{MLP}:nofunc", "--data", "digits"], r"has no function 'nofunc'"),
    ([f"{MLP}:regressor", "--data", "digits"], r"inputs named 'x' and 'y'; the model has t, x"),
    ([f"{MLP}:residual", "--data", "digits"], r"feed 'x': expected shape \(N, 16\)"),
    ([f"{ROOT / 'examples' / 'bad_shape.py'}:model", "--data", "digits"],
     r"inner dimensions differ.*bad_shape\.py:\d+"),
    ([f"{MLP}:mlp", "--data", "nosuch"], r"unknown data set 'nosuch'"),
    ([f"{MLP}:mlp", "--data", "missing.npz"], r"missing\.npz: no such file"),
    ([f"{MLP}:mlp", "--data", "digits", "--optimizer", "adagrad"], r"unknown optimizer 'adagrad'"),
    ([f"{MLP}:mlp", "--data", "digits", "--lr", "-1"], r"lr must be a positive number"),
    ([f"{MLP}:mlp", "--data", "digits", "--epochs", "-1"], r"epochs must be"),
    ([f"{MLP}:mlp", "--data", "digits", "--batch-size", "0"], r"batch_size must be"),
    ([f"{MLP}:mlp", "--data", "digits", "--validation", "0", "--patience", "2"],
     r"patience.*needs validation"),
], ids=["no_file", "no_function", "no_x_y", "input_width", "shape_error", "unknown_data",
        "missing_npz", "unknown_optimizer", "negative_lr", "negative_epochs", "zero_batch",
        "patience_without_validation"])
def test_train_errors_are_one_line_and_exit_2(capsys, argv, pattern):
    one_error_line(*run(capsys, "train", *argv, "--no-progress"), pattern)


def test_train_errors_with_saved_models_and_specs(capsys, trained, tmp_path):
    one_error_line(*run(capsys, "train", trained, "--data", "digits", "--optimizer", "sgd"),
                   r"cannot change a saved model's optimizer")
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps({"input_dim": 64, "layers": [{"units": 10}],
                                "loss": "cross_entropy"}))
    one_error_line(*run(capsys, "train", spec, "--data", "digits", "--lr", "0.1"),
                   r"set the optimizer in the spec file")
    spec.write_text('{"input_dim": 64, "layers": [')
    one_error_line(*run(capsys, "train", spec, "--data", "digits"), r"s\.json")
    broken = tmp_path / "broken.gcm"
    broken.write_bytes(trained.read_bytes()[:500])
    one_error_line(*run(capsys, "train", broken, "--data", "digits"), r"broken\.gcm")
    # A saved model trained on data of another width.
    npz = _digits_like_npz(tmp_path / "d.npz")
    np.savez(npz, x=np.zeros((20, 8), np.float32), y=np.zeros(20, np.int64))
    one_error_line(*run(capsys, "train", trained, "--data", npz), r"feed 'x'.*\(N, 64\)")


def test_train_on_an_npz_file(capsys, trained, tmp_path):
    npz = _digits_like_npz(tmp_path / "d.npz")
    code, out, err = run(capsys, "train", trained, "--data", npz, "--epochs", "1",
                         "--no-progress", "--validation", "0")
    assert code == 0, err
    assert "val_loss" not in out and test_accuracy(out) >= 0.0


# --- graphc cache ---------------------------------------------------------------------------

def test_cache_ls_info_clear(capsys, tmp_path, monkeypatch, graphc_cache_dir):
    assert Path(graphc_cache_dir).exists()  # the session's private cache (tests/conftest.py)
    d = tmp_path / "cache"
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(d))
    code, out, _ = run(capsys, "cache", "ls")
    assert code == 0 and out == ""
    # Compiling writes the generated module (Numba compiles nothing until the first call).
    x = gc.input("x", (None, 13))
    gc.compile(outputs={"z": gc.dense(x, 11, activation="elu", name="cache_test")})
    code, out, _ = run(capsys, "cache", "ls")
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("g_") and " B " in lines[0]
    code, out, _ = run(capsys, "cache", "info")
    assert code == 0 and f"cache directory: {d}" in out and "modules: 1," in out
    assert "not trusted" not in out
    code, out, _ = run(capsys, "cache", "clear")
    assert code == 0 and out.startswith("removed 1 cached modules")
    assert not list(d.glob("g_*.py"))
    assert run(capsys, "cache", "ls")[1] == ""
    assert "modules: 0," in run(capsys, "cache", "info")[1]
    with pytest.raises(SystemExit) as info:  # argparse: not a cache action
        cli.main(["cache", "purge"])
    assert info.value.code == 2
    assert cache.cache_dir() == d


# --- graphc demo ----------------------------------------------------------------------------

def test_demo_runs_and_prints_test_accuracy(capsys, monkeypatch):
    # The step-time comparison runs 300 steps of each framework; a few show that it works.
    monkeypatch.setattr(demo, "torch_step_time", functools.partial(demo.torch_step_time, steps=3))
    monkeypatch.setattr(demo, "graphc_step_time",
                        functools.partial(demo.graphc_step_time, steps=3))
    code, out, err = run(capsys, "demo", "--epochs", "3", "--no-progress")
    assert code == 0, err
    for section in ("[1]", "[2]", "[3] fit: 3 epochs", "[4] test accuracy"):
        assert section in out
    m = re.search(r"test accuracy (\S+)", out)
    assert float(m.group(1)) >= 0.9
    assert "worst relative error" in out and "dense_bwd" in out
    assert re.search(r"step time.*graphc [\d.]+ us", out)
