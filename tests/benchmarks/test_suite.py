"""The benchmark suite runs end to end and refuses frameworks that compute something else.

No timing assertions (BENCHMARKS.md): timings on a shared 2-core machine are noise here.
Budgets are tiny so the whole file stays well under a minute; torch.compile is left out of
the end-to-end run (its compile alone takes ~10 s per config) and checked on its own.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

# `benchmarks` is imported from the repo root, not installed (graphc bench does the same).
ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import agreement, report, roofline, suite  # noqa: E402
from benchmarks.configs import CONFIGS, make_problem  # noqa: E402
from benchmarks.peers import PeerSpec, numpy_hand, resolve  # noqa: E402

FAST = ["graphc", "graphc_reference", "torch_eager", "jax_jit", "autograd", "numpy_hand", "sklearn"]
# An adapter whose module does not exist: it must be reported as skipped, never dropped.
MISSING = {"not_written": "benchmarks.peers._adapter_not_written"}


def _installed(name: str) -> bool:
    return resolve(name).available()[0]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], Path]:
    out = tmp_path_factory.mktemp("bench")
    records = suite.run(
        ["xor", "small"],
        FAST,
        quick=True,
        budget_s=0.03,
        rounds=1,
        out_json=str(out / "r.json"),
        out_md=str(out / "r.md"),
        out_png=str(out / "r.png"),
        extra_peers=MISSING,
        log=None,
    )
    return records, out


def test_quick_suite_writes_valid_json_and_markdown(quick_run):
    records, out = quick_run
    loaded = json.loads((out / "r.json").read_text())
    assert loaded == json.loads(json.dumps(loaded))  # strict JSON round trip
    assert len(loaded) == len(records)
    for r in loaded:
        assert {"framework", "config", "metric", "value", "unit", "machine", "versions"} <= set(r)
        assert r["machine"]["cpu"] and "numpy" in r["versions"]
    md = (out / "r.md").read_text()
    assert "## Train step" in md and "| xor |" in md and "| small |" in md
    assert "GEMM floor" in md


def test_every_installed_framework_timed_or_reported(quick_run):
    records, _ = quick_run
    step = {(r["framework"], r["config"]): r for r in records if r["metric"] == "step_time"}
    for fw in FAST:
        for cfg in ("xor", "small"):
            if fw == "sklearn":  # fit-only peer: no step timing, but a fit throughput
                fit = [
                    r
                    for r in records
                    if (r["framework"], r["config"], r["metric"]) == (fw, cfg, "fit_throughput")
                ]
                assert not _installed(fw) or fit and fit[0]["value"] > 0
                continue
            r = step[(fw, cfg)]
            if _installed(fw):
                assert r["status"] == "ok" and r["value"] > 0, r
            else:
                assert r["status"] == "skipped" and "install" in r["reason"]
    # never dropped silently: the missing adapter is a skipped record with its reason
    g = step[("not_written", "xor")]
    assert g["status"] == "skipped" and "_adapter_not_written.py not written yet" in g["reason"]


def test_all_frameworks_agree_on_first_loss(quick_run):
    records, _ = quick_run
    for cfg in ("xor", "small"):
        ref = agreement.reference(make_problem(cfg)).loss1
        losses = [r for r in records if r["metric"] == "loss_first_step" and r["config"] == cfg]
        assert len(losses) >= 2  # numpy_hand + at least one other
        for r in losses:
            if "first_step_loss_rel_err" in r["agreement"]:
                assert abs(r["value"] - ref) <= 1e-4 * abs(ref)


def test_roofline_records_and_flop_formula(quick_run):
    records, _ = quick_run
    floors = [r for r in records if r["framework"] == report.ROOFLINE and r["metric"] == "gemm_floor"]
    assert {r["config"] for r in floors} == {"xor", "small"}
    # small: 2*B*(3*sum(n*m) - n0*m0) with B=32, layers 64-64, 64-64, 64-10
    s = 64 * 64 + 64 * 64 + 64 * 10
    assert roofline.step_flops("small") == 2 * 32 * (3 * s - 64 * 64)
    assert len(roofline.step_gemms("deep")) == 3 * 9 - 1


def test_buggy_variant_fails_agreement_loudly():
    problem = make_problem("small")
    buggy = PeerSpec("numpy_hand_buggy", numpy_hand.available, numpy_hand.build_buggy, numpy_hand)
    with pytest.raises(agreement.AgreementError) as exc:
        suite.run(["small"], ["numpy_hand"], quick=True, extra_peers=[buggy], measure=(), log=None)
    err = exc.value
    assert err.framework == "numpy_hand_buggy" and err.config == "small"
    assert "numpy_hand_buggy" in str(err) and "reference" in str(err)
    # the correct variant passes the same check
    agreement.check_peer("numpy_hand", numpy_hand.build(problem), problem)


def test_wrong_first_loss_is_named():
    problem = make_problem("xor")

    class Off:
        def step(self) -> float:
            return 0.5

        def infer(self, x):
            return x

    with pytest.raises(agreement.AgreementError, match="off_by_some.*first-step loss"):
        agreement.check_peer("off_by_some", Off(), problem)


def test_problems_are_deterministic_and_float64_exact():
    for name in CONFIGS:
        a, b = make_problem(name), make_problem(name)
        for (Wa, ba), (Wb, bb) in zip(a.weights, b.weights):
            np.testing.assert_array_equal(Wa, Wb)
            np.testing.assert_array_equal(ba, bb)
        assert a.x.dtype == np.float32 and a.n_batches == 20
        np.testing.assert_array_equal(a.astype("float64").weights[0][0], a.weights[0][0])
        if a.config.loss == "sce":
            assert a.y.dtype == np.int64
        else:
            assert a.y.shape == (a.config.batch, 1)


def test_markdown_ratios_against_chosen_baseline(quick_run):
    records, _ = quick_run
    md = report.markdown(records, baseline="numpy_hand")
    assert "baseline **numpy_hand**" in md and "×)" in md


def test_torch_compile_agrees():
    pytest.importorskip("torch")
    ok, why = resolve("torch_compile").available()
    if not ok:
        pytest.skip(why)
    problem = make_problem("xor")
    agreement.check_peer("torch_compile", resolve("torch_compile").build(problem), problem)


def test_cli_list(capsys):
    assert suite.main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "mnist_wide" in out and "numpy_hand" in out and "graphc" in out


def test_fit_run_smoke(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The MNIST-1D-sized whole-run benchmark runs (a few steps) and writes its JSON."""
    from benchmarks import fit_run

    out = tmp_path / "fit_run.json"
    assert fit_run.main(["--steps", "80", "--repeat", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["steps"] == 80 and res["repeat"] == 1
    assert res["seconds"]["graphc_fit"] > 0 and res["seconds"]["graphc_step_loop"] > 0
    assert "graphc_fit" in capsys.readouterr().out


def test_torch_gemm_floor_is_recorded_and_reported(quick_run) -> None:
    """With PyTorch installed, each config also gets the floor of its GEMMs through torch.mm,
    and the Markdown roofline table shows it against NumPy's."""
    if not _installed("torch_eager"):
        pytest.skip("torch not installed")
    records, out = quick_run
    floors = {(r["framework"], r["config"]): r["value"] for r in records
              if r["metric"] == "gemm_floor"}
    for cfg in ("xor", "small"):
        assert floors[(report.ROOFLINE_TORCH, cfg)] > 0 and floors[(report.ROOFLINE, cfg)] > 0
    md = report.markdown(records)
    assert "PyTorch's GEMMs ÷ NumPy's" in md
