"""``graphc dump``: every stage x format on examples/mlp.py, the reports, saved models,
and one-line errors with exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import graphc as gc
from graphc import cli
from graphc.ir import printer
from graphc.ir.verify import verify

ROOT = Path(__file__).resolve().parents[2]
MLP = str(ROOT / "examples" / "mlp.py")
BAD = str(ROOT / "examples" / "bad_shape.py")
HAVE_DOT = shutil.which("dot") is not None
FORMATS = ["text", "dot", "json", pytest.param("svg", marks=pytest.mark.skipif(
    not HAVE_DOT, reason="Graphviz not installed (apt-get install graphviz)"))]


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def check_dot(text: str) -> None:
    assert text.startswith("digraph ") and text.rstrip().endswith("}")
    if HAVE_DOT:  # Graphviz itself is the parser that matters
        done = subprocess.run(["dot", "-Tsvg"], input=text, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert "<svg" in done.stdout


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("stage", ["input", "grad", "optimized"])
def test_stage_and_format(capsys, stage, fmt):
    code, out, err = run(capsys, "dump", f"{MLP}:mlp", "--stage", stage, "--format", fmt)
    assert code == 0 and err == ""
    if fmt == "text":
        assert out.startswith("graph {") and "output loss" in out
        assert ("update fc1/W" in out) is (stage != "input")
        assert ("dense(" in out) is (stage == "optimized")
    elif fmt == "dot":
        check_dot(out)
        assert f"mlp.py:mlp ({stage})" in out.splitlines()[0]
    elif fmt == "json":
        g = printer.from_json(json.loads(out))
        verify(g)
        assert ("dense_bwd" in {g.node(n).op for n in g.nodes}) is (stage == "optimized")
    else:
        assert out.lstrip().startswith("<?xml") and "<svg" in out


def test_output_file_and_format_from_suffix(capsys, tmp_path):
    for suffix, marker in [(".dot", "digraph"), (".json", '"nodes"'), (".txt", "graph {")]:
        path = tmp_path / f"g{suffix}"
        code, out, _ = run(capsys, "dump", f"{MLP}:mlp", "-o", path)
        assert code == 0 and out == ""
        assert marker in path.read_text()
    if HAVE_DOT:
        path = tmp_path / "g.svg"
        assert run(capsys, "dump", f"{MLP}:mlp", "-o", path)[0] == 0
        assert "<svg" in path.read_text()


def test_passes_and_fusion_report(capsys):
    code, out, _ = run(capsys, "dump", f"{MLP}:mlp", "--passes", "--fusion-report", "--guard",
                       "-o", "/dev/null")
    assert code == 0
    for name in ("dce", "cse", "fuse_dense", "fuse_dense_bwd", "fuse_loss", "memory_plan"):
        assert name in out
    assert "fc1: matmul+add+relu → dense[relu]" in out
    assert "fc2: act_grad+matmul(dx)+matmul(dW)+sum_to(db) → dense_bwd[tanh](dx, dW, db)" in out
    assert "not fused (0)" in out


def test_fusion_report_explains_refusals(capsys):
    code, out, _ = run(capsys, "dump", f"{MLP}:residual", "--fusion-report")
    assert code == 0
    assert "not fused (1)" in out and "skip connection" in out


def test_print_after(capsys):
    code, out, _ = run(capsys, "dump", f"{MLP}:mlp", "--print-after", "fuse_dense", "-o",
                       "/dev/null")
    assert code == 0 and out.count("// after") == 1 and "// after fuse_dense" in out
    code, out, _ = run(capsys, "dump", f"{MLP}:mlp", "--print-after", "all", "-o", "/dev/null")
    assert out.count("// after") == 7


def test_dict_outputs_and_no_loss(capsys, tmp_path):
    code, out, _ = run(capsys, "dump", f"{MLP}:mlp_outputs")
    assert code == 0 and "output logits" in out and "output probs" in out
    f = tmp_path / "fwd.py"
    f.write_text("import graphc as gc\n\ndef net():\n    x = gc.input('x', (None, 3))\n"
                 "    return {'y': gc.dense(x, 2, activation='relu', name='fc')}\n")
    code, out, _ = run(capsys, "dump", f"{f}:net")  # optimized without a loss: forward only
    assert code == 0 and "dense(" in out and "update" not in out
    code, _, err = run(capsys, "dump", f"{f}:net", "--stage", "grad")
    assert code == 2 and "needs a loss" in err and len(err.splitlines()) == 1


def test_saved_model(capsys, tmp_path):
    x = gc.input("x", (None, 4))
    y = gc.input("y", (None,), dtype="int64")
    logits = gc.dense(gc.dense(x, 5, activation="elu", name="fc1"), 3, name="fc2")
    net = gc.compile(loss=gc.softmax_cross_entropy(logits, y), outputs={"logits": logits},
                     optimizer=gc.optim.Adam(0.01), weight_decay=1e-3, backend="reference")
    path = tmp_path / "m.gcm"
    net.save(path)
    for stage in ("input", "grad", "optimized"):
        code, out, err = run(capsys, "dump", path, "--stage", stage)
        assert code == 0, err
    assert "opt='adam'" in out and "dense_bwd" in out
    bad = tmp_path / "bad.gcm"
    bad.write_bytes(b"not a zip file")
    code, out, err = run(capsys, "dump", bad)
    assert code == 2 and err.startswith("graphc: error:") and len(err.splitlines()) == 1


# --- errors -----------------------------------------------------------------------------

def one_line_error(capsys, *argv) -> str:
    code, out, err = run(capsys, *argv)
    assert code == 2, err
    assert err.startswith("graphc: error: ") and len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    return err


def test_shape_error_names_the_users_line(capsys):
    err = one_line_error(capsys, "dump", f"{BAD}:model")
    assert "inner dimensions differ" in err and "bad_shape.py:15" in err


def test_missing_file_function_and_bad_target(capsys):
    assert "no such file" in one_line_error(capsys, "dump", "nowhere/model.py:f")
    err = one_line_error(capsys, "dump", f"{MLP}:nope")
    assert "no function 'nope'" in err and "mlp_outputs" in err
    assert "must be path/to/file.py:function" in one_line_error(capsys, "dump", MLP)
    assert "no such pass" in one_line_error(capsys, "dump", f"{MLP}:mlp", "--print-after", "x")
    assert "needs --stage optimized" in one_line_error(
        capsys, "dump", f"{MLP}:mlp", "--stage", "grad", "--print-after", "all")


@pytest.mark.parametrize("body,expect", [
    ("def f():\n    return undefined_name\n", "NameError: name 'undefined_name' is not defined"),
    ("def f():\n    return 3\n", "must return the loss tensor or a dict"),
    ("def f():\n    return {'a': 1}\n", "entry 'a' is not a graphc tensor (got int)"),
    ("def f(:\n    pass\n", "SyntaxError"),
    ("raise RuntimeError('at import')\ndef f():\n    pass\n", "RuntimeError: at import"),
    ("import graphc as gc\ndef f():\n    return gc.dense(gc.input('x', (None, 2)), 3,"
     " activation='swish')\n", "unknown activation 'swish'"),
    ("import graphc as gc\ndef f():\n    a = gc.parameter('W', (2, 2))\n"
     "    return gc.sum(a + gc.parameter('W', (3, 2)))\n", "do not broadcast"),
])
def test_errors_in_user_code(capsys, tmp_path, body, expect):
    f = tmp_path / "model.py"
    f.write_text(body)
    err = one_line_error(capsys, "dump", f"{f}:f")
    assert expect in err
    if "Error" in expect or "broadcast" in expect:
        assert "model.py:" in err  # the user's file:line


def test_debug_shows_traceback(capsys):
    code, _, err = run(capsys, "dump", f"{BAD}:model", "--debug")
    assert code == 2 and "Traceback" in err
    assert err.rstrip().splitlines()[-1].startswith("graphc: error: ")


def test_svg_without_graphviz(capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    err = one_line_error(capsys, "dump", f"{MLP}:mlp", "--format", "svg")
    assert "apt-get install graphviz" in err


def test_unwritable_output(capsys, tmp_path):
    err = one_line_error(capsys, "dump", f"{MLP}:mlp", "-o", tmp_path / "no" / "dir.txt")
    assert "No such file or directory" in err


def test_no_command_and_usage_errors(capsys):
    code, _, err = run(capsys)
    assert code == 2 and "dump" in err
    with pytest.raises(SystemExit) as e:
        cli.main(["dump", f"{MLP}:mlp", "--stage", "nope"])
    assert e.value.code == 2


def test_extra_dump_outputs_hook(capsys):
    seen = []

    def handler(ctx):
        seen.append(ctx.optimized[0])
        return f"nodes: {len(ctx.optimized[0])}"

    cli.register_dump_extra("count", "--count", help="count nodes", handler=handler)
    try:
        code, out, _ = run(capsys, "dump", f"{MLP}:mlp", "--count", "-o", "/dev/null")
    finally:
        del cli.DUMP_EXTRAS["count"]
    assert code == 0 and out == f"nodes: {len(seen[0])}\n"


def test_entry_point_subprocess():
    done = subprocess.run([sys.executable, "-m", "graphc.cli", "dump", f"{BAD}:model"],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 2
    assert done.stderr == ("graphc: error: matmul: inner dimensions differ: (N, 4) @ (5, 3) "
                           "(4 != 5) (at examples/bad_shape.py:15)\n")
    assert done.stdout == ""
