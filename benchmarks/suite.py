"""The benchmark suite: every framework on every config, in one process, interleaved.

Per config: build the problem and the float64 reference; measure the roofline (GEMM floor);
build every peer (build + first step timed: that includes JIT compilation) and check it
against the reference — an `AgreementError` stops the run, since timings of a wrong
computation mean nothing; then time steps, inference and fit in interleaved rounds, and
bytes allocated per step. Peers are freed before the next config.

Frameworks come from the registry in `benchmarks.peers` (``PEERS``); the graphc adapters
are registered there already. ``extra_peers`` adds others for one run (tests use it for the
deliberately wrong numpy_hand variant).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from types import ModuleType
from typing import Any

import numpy as np

from benchmarks import agreement, harness, report, roofline
from benchmarks.configs import CONFIGS, get_config, make_problem
from benchmarks.peers import PEERS, PeerSpec, Unsupported, default_frameworks, resolve

QUICK_CONFIGS = ("xor", "small")
# A timed whole-fit call covers at least this many samples (xor: 25 epochs of 80).
FIT_MIN_SAMPLES = 2000


def _settings(quick: bool, budget_s: float | None, rounds: int | None) -> dict[str, Any]:
    """Time budgets; `budget_s` is per framework, per metric, per config (split in rounds)."""
    if quick:
        s = {"budget_s": 0.1, "rounds": 2, "alloc_steps": 3, "roof_budget_s": 0.05}
    else:
        s = {"budget_s": 2.0, "rounds": 5, "alloc_steps": 10, "roof_budget_s": 1.0}
    if budget_s is not None:
        s["budget_s"] = budget_s
        s["roof_budget_s"] = min(s["roof_budget_s"], budget_s)
    if rounds is not None:
        s["rounds"] = rounds
    return s


def _log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _specs(
    frameworks: Sequence[str] | None,
    extra_peers: Mapping[str, PeerSpec | ModuleType | str] | Sequence[PeerSpec] | None,
) -> dict[str, PeerSpec]:
    names = list(frameworks) if frameworks is not None else default_frameworks()
    specs = {n: resolve(n) for n in names}
    if extra_peers:
        items = (
            extra_peers.items() if isinstance(extra_peers, Mapping) else ((s.name, s) for s in extra_peers)
        )
        for name, spec in items:
            specs[name] = resolve(spec, name=name)
    return specs


def run(
    configs: Sequence[str] | None = None,
    frameworks: Sequence[str] | None = None,
    quick: bool = False,
    budget_s: float | None = None,
    out_json: str | None = None,
    out_md: str | None = None,
    out_png: str | None = None,
    extra_peers: Mapping[str, PeerSpec | ModuleType | str] | Sequence[PeerSpec] | None = None,
    *,
    baseline: str | None = None,
    rounds: int | None = None,
    dtype: str = "float32",
    threads: int = harness.DEFAULT_THREADS,
    infer_batches: Sequence[int] = (1, 64),
    fit_epochs: int | None = None,
    measure: Sequence[str] = ("step", "infer", "fit", "alloc"),
    compile_times: bool = False,
    check: bool = True,
    log: Callable[[str], None] | None = _log_stderr,
) -> list[report.Record]:
    """Run the suite and return its records (see `benchmarks.report` for their fields).

    configs: names from CONFIGS (default: all six; quick: xor and small).
    frameworks: registry names (default: every registered one; unavailable ones are recorded
        as skipped with their install hint).
    quick: small budgets for a smoke run (xor + small in well under a minute).
    budget_s: timing budget per framework, per metric, per config, split over `rounds`.
    measure: any of "step", "infer", "fit", "alloc".
    fit_epochs: epochs per timed whole-fit call (default: enough for FIT_MIN_SAMPLES
        samples, so a fit of a tiny data set is timed over a realistic run, not one epoch).
    compile_times: also measure cold/warm compile time in fresh processes, for frameworks
        whose adapter sets ``COMPILES = True`` (slow: two processes per framework and config).
    check: run the agreement check (raises `agreement.AgreementError` on a disagreement).
    """
    say = log or (lambda _msg: None)
    cfg_names = list(configs) if configs else list(QUICK_CONFIGS if quick else CONFIGS)
    for c in cfg_names:
        get_config(c)  # fail fast on a typo, before minutes of timing
    s = _settings(quick, budget_s, rounds)
    pinned = harness.pin_threads(threads)
    specs = _specs(frameworks, extra_peers)
    machine: dict[str, Any] = {}  # filled at the end, once every library is loaded
    vers: dict[str, Any] = {}
    records: list[report.Record] = []

    def add(fw: str, cfg: str, metric: str, value: Any, unit: str, **extra: Any) -> None:
        records.append(report.record(fw, cfg, metric, value, unit, machine, vers, **extra))

    t_start = time.perf_counter()
    for cname in cfg_names:
        cfg = get_config(cname)
        problem = make_problem(cfg, dtype)
        ref = agreement.reference(problem)
        say(f"[{cname}] {cfg.describe()}: roofline")
        floor_fn = roofline.gemm_floor_fn(cfg, dtype)
        per_gemm = roofline.per_gemm_times(cfg, dtype, budget_s=s["roof_budget_s"])
        load_before = harness.load_average()

        peers: dict[str, Any] = {}
        for name, spec in specs.items():
            ok, why = spec.available()
            if not ok:
                add(name, cname, "step_time", None, "s", status="skipped", reason=why)
                continue
            say(f"[{cname}] {name}: build + first step")
            try:
                t0 = time.perf_counter()
                peer = spec.build(problem)
                loss1 = peer.step()
                first = time.perf_counter() - t0
                got = agreement.probe(peer, first_loss=loss1)
            except Unsupported as err:
                add(name, cname, "step_time", None, "s", status="skipped", reason=str(err))
                continue
            except Exception as err:
                add(
                    name,
                    cname,
                    "step_time",
                    None,
                    "s",
                    status="error",
                    reason=f"{type(err).__name__}: {err}",
                    traceback=traceback.format_exc(),
                )
                say(f"[{cname}] {name}: ERROR {type(err).__name__}: {err}")
                continue
            note = getattr(peer, "note", None)
            comparable = getattr(peer, "comparable", True)
            agree = None
            if check and comparable:
                agree = agreement.check(name, problem, ref, got)  # raises on disagreement
            add(name, cname, "first_step_time", first, "s", note=note)
            add(
                name,
                cname,
                "loss_first_step",
                got.loss1,
                "",
                reference=ref.loss1,
                agreement=agree if comparable else {"not compared": note},
            )
            peers[name] = peer
        harness.pin_threads(threads)  # pools of libraries the peers just loaded

        def on_error(metric: str, name: str, err: BaseException, cname: str = cname) -> None:
            add(name, cname, metric, None, "s", status="error", reason=f"{type(err).__name__}: {err}")
            say(f"[{cname}] {name} {metric}: ERROR {err}")

        def timed(metric: str, peers: dict[str, Any] = peers) -> dict[str, Any]:
            return {
                n: p
                for n, p in peers.items()
                if metric not in getattr(p, "skip_metrics", ()) and hasattr(p, metric)
            }

        # The GEMM floor is timed in the same interleaved rounds as the steps, so that the
        # ratio step / floor compares figures measured under the same machine load.
        fns = {n: p.step for n, p in timed("step").items()} if "step" in measure else {}
        fns[report.ROOFLINE] = floor_fn
        torch_floor_fn = roofline.torch_gemm_floor_fn(cfg, dtype) if "torch_eager" in specs else None
        if torch_floor_fn is not None:
            fns[report.ROOFLINE_TORCH] = torch_floor_fn
        say(f"[{cname}] timing steps: {', '.join(fns)}")
        res = harness.interleave(fns, s["rounds"], s["budget_s"], on_error=partial(on_error, "step_time"))
        roof = roofline.summarize(cfg, res.pop(report.ROOFLINE), per_gemm)
        if report.ROOFLINE_TORCH in res:
            add(report.ROOFLINE_TORCH, cname, "gemm_floor", res.pop(report.ROOFLINE_TORCH).best_median, "s")
        add(report.ROOFLINE, cname, "step_flops", roof["flops"], "FLOP", formula=roof["formula"])
        add(report.ROOFLINE, cname, "gemm_floor", roof["floor_s"], "s", stats=roof["floor_stats"])
        add(report.ROOFLINE, cname, "sgemm_gflops", roof["gflops"], "GFLOP/s", per_gemm=per_gemm)
        for n, t in res.items():
            add(n, cname, "step_time", t.best_median, "s", stats=t.summary())
        if "infer" in measure:
            for bs in infer_batches:
                x = np.ascontiguousarray(np.resize(problem.X, (bs, problem.X.shape[1])))
                fns = {n: partial(p.infer, x) for n, p in timed("infer").items()}
                if not fns:
                    break
                say(f"[{cname}] timing inference, batch {bs}")
                res = harness.interleave(
                    fns, s["rounds"], s["budget_s"], on_error=partial(on_error, f"infer_time_b{bs}")
                )
                for n, t in res.items():
                    add(n, cname, f"infer_time_b{bs}", t.best_median, "s", stats=t.summary())
        epochs = fit_epochs or max(1, -(-FIT_MIN_SAMPLES // problem.n_samples))
        if "fit" in measure and (fns := {n: partial(p.fit, epochs) for n, p in timed("fit").items()}):
            say(f"[{cname}] timing fit ({epochs} epoch(s) of {problem.n_samples} samples)")
            res = harness.interleave(
                fns,
                min(s["rounds"], 3),
                s["budget_s"],
                warmup=1,
                min_samples=1,
                on_error=partial(on_error, "fit_throughput"),
            )
            for n, t in res.items():
                thr = epochs * problem.n_samples / t.best_median
                add(
                    n,
                    cname,
                    "fit_throughput",
                    thr,
                    "samples/s",
                    stats=t.summary(),
                    epochs=epochs,
                    samples=problem.n_samples,
                )
        if "alloc" in measure:
            for n, p in timed("step").items():
                try:
                    a = harness.alloc_per_step(p.step, steps=s["alloc_steps"])
                except Exception as err:
                    on_error("alloc_peak_per_step", n, err)
                    continue
                # tracemalloc sees Python objects and NumPy data, not torch/XLA C++ buffers
                add(
                    n,
                    cname,
                    "alloc_peak_per_step",
                    a["peak_bytes"],
                    "B",
                    net_bytes_per_step=a["net_bytes"],
                    scope="tracemalloc",
                )
        if compile_times:
            for n in peers:
                spec = specs[n]
                if not spec.attr("COMPILES", False) or n not in PEERS:
                    continue
                say(f"[{cname}] {n}: compile time, cold and warm (fresh processes)")
                try:
                    ct = harness.compile_cold_warm(n, cname, dtype, spec.attr("cache_env"), threads)
                except Exception as err:
                    on_error("compile_cold", n, err)
                    continue
                add(n, cname, "compile_cold", ct["cold_s"], "s", import_s=ct["cold_import_s"])
                add(n, cname, "compile_warm", ct["warm_s"], "s", import_s=ct["warm_import_s"])
        # Other processes' load (1-min average) around this config: > CPU count means the
        # machine was shared while timing, and absolute figures are unreliable.
        load_after = harness.load_average()
        add(
            "machine",
            cname,
            "load_average",
            max(load_before, load_after),
            "",
            before=load_before,
            after=load_after,
        )
        peers.clear()
        gc.collect()

    machine.update(harness.machine_info())
    machine["threads"] = threads
    machine["pinning"] = pinned
    machine["peak_rss_bytes"] = harness.peak_rss_bytes()
    vers.update(harness.versions())
    say(f"suite done in {time.perf_counter() - t_start:.1f} s")
    if out_json:
        report.write_json(records, out_json)
    if out_md:
        report.write_markdown(records, out_md, baseline)
    if out_png:
        report.write_png(records, out_png)
    return records


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks`` / ``graphc bench``."""
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--configs",
        default=None,
        help=f"comma list of {', '.join(CONFIGS)} or 'all' (default: all; --quick: xor,small)",
    )
    ap.add_argument(
        "--frameworks", default=None, help=f"comma list (default: all registered: {', '.join(PEERS)})"
    )
    ap.add_argument("--quick", action="store_true", help="smoke run: small budgets")
    ap.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds per framework, metric and config (default 2, quick 0.1)",
    )
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5)")
    ap.add_argument("--baseline", default=None, help="ratio baseline (default graphc if present)")
    ap.add_argument("--threads", type=int, default=harness.DEFAULT_THREADS)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--fit-epochs", type=int, default=None,
                    help=f"epochs per timed fit (default: enough for {FIT_MIN_SAMPLES} samples)")
    ap.add_argument("--measure", default="step,infer,fit,alloc", help="comma list of step, infer, fit, alloc")
    ap.add_argument(
        "--compile-times", action="store_true", help="cold/warm compile time in fresh processes (slow)"
    )
    ap.add_argument("--json", dest="out_json", default=None, help="write JSON records here")
    ap.add_argument("--markdown", dest="out_md", default=None, help="write a Markdown report")
    ap.add_argument("--plot", dest="out_png", default=None, help="write a PNG chart (matplotlib)")
    ap.add_argument("--list", action="store_true", help="list configs and frameworks, then exit")
    args = ap.parse_args(argv)

    if args.list:
        for c in CONFIGS.values():
            print(f"config    {c.name:11s} {c.describe()}")
        for name in PEERS:
            ok, why = resolve(name).available()
            print(f"framework {name:17s} {'available' if ok else 'skipped: ' + why}")
        return 0

    def split(v: str | None) -> list[str] | None:
        return None if v in (None, "", "all") else [x.strip() for x in v.split(",") if x.strip()]

    records = run(
        split(args.configs),
        split(args.frameworks),
        quick=args.quick,
        budget_s=args.budget,
        out_json=args.out_json,
        out_md=args.out_md,
        out_png=args.out_png,
        baseline=args.baseline,
        rounds=args.rounds,
        dtype=args.dtype,
        threads=args.threads,
        measure=split(args.measure) or (),
        compile_times=args.compile_times,
        fit_epochs=args.fit_epochs,
    )
    if not args.out_md:
        print(report.markdown(records, args.baseline))
    return 0
