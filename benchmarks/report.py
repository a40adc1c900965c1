"""Results: JSON records, a Markdown table against a baseline framework, a PNG chart.

A record is one measured quantity of one framework on one config::

    {"framework": "torch_eager", "config": "small", "metric": "step_time", "value": 1.2e-4,
     "unit": "s", "status": "ok", "stats": {...}, "note": "...", "machine": {...},
     "versions": {...}}

status is "ok", "skipped" (framework unavailable, or cannot run that config; "reason" says
why, with the install hint) or "error" (it raised; "reason" holds the error). Metrics:
step_time, first_step_time (build + first step: includes JIT compile), infer_time_b<N>,
fit_throughput (samples/s), alloc_peak_per_step (bytes, tracemalloc), compile_cold/warm (s),
loss_first_step; the roofline rows use framework "numpy_sgemm": gemm_floor (s),
sgemm_gflops (GFLOP/s at the step's shapes), step_flops.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

Record = dict[str, Any]

ROOFLINE = "numpy_sgemm"
ROOFLINE_TORCH = "torch_sgemm"  # the same GEMMs through torch.mm (PyTorch's BLAS)
ALLOC_TITLE = (
    "Bytes allocated per steady step (tracemalloc: peak above the level before the step; "
    "counts Python objects and NumPy data, not torch/XLA C++ buffers)"
)


def record(
    framework: str,
    config: str,
    metric: str,
    value: float | None,
    unit: str,
    machine: dict[str, Any],
    versions: dict[str, Any],
    status: str = "ok",
    **extra: Any,
) -> Record:
    """One JSON-ready result row; `extra` (stats, note, reason, ...) is kept as given."""
    rec: Record = {
        "framework": framework,
        "config": config,
        "metric": metric,
        "value": value,
        "unit": unit,
        "status": status,
    }
    rec.update({k: v for k, v in extra.items() if v is not None})
    rec["machine"] = machine
    rec["versions"] = versions
    return rec


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None  # JSON has no NaN/inf
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # NumPy scalars
        return _jsonable(obj.item())
    return obj


def write_json(records: Sequence[Record], path: str | Path) -> Path:
    """Write the records as a JSON list (strict JSON: NaN/inf become null)."""
    path = Path(path)
    path.write_text(json.dumps(_jsonable(list(records)), indent=1, allow_nan=False) + "\n")
    return path


def load_json(path: str | Path) -> list[Record]:
    return json.loads(Path(path).read_text())


# ---------------------------------------------------------------------------------------------
# Markdown


def fmt_time(s: float | None) -> str:
    """Seconds with a unit chosen for readability (ns/µs/ms/s, three significant digits)."""
    if s is None or not math.isfinite(s):
        return "—"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_bytes(b: float | None) -> str:
    if b is None:
        return "—"
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if abs(b) >= scale:
            return f"{b / scale:.3g} {unit}"
    return f"{b:.0f} B"


def _index(records: Iterable[Record]) -> dict[tuple[str, str, str], Record]:
    return {(r["framework"], r["config"], r["metric"]): r for r in records}


def _ordered(values: Iterable[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def choose_baseline(records: Sequence[Record], preferred: str | None = None) -> str | None:
    """`preferred` if it has step times, else graphc if it has, else the first that has."""
    timed = _ordered(r["framework"] for r in records if r["metric"] == "step_time" and r["status"] == "ok")
    for cand in (preferred, "graphc"):
        if cand and cand in timed:
            return cand
    return timed[0] if timed else None


def _fit_epochs(records: Sequence[Record]) -> dict[str, int]:
    return {r["config"]: r["epochs"] for r in records
            if r["metric"] == "fit_throughput" and r.get("epochs")}


def _table(
    records: Sequence[Record],
    metric: str,
    frameworks: list[str],
    configs: list[str],
    baseline: str | None,
    fmt: Any,
    higher_is_better: bool = False,
) -> list[str]:
    idx = _index(records)
    cols = [f for f in frameworks if any((f, c, metric) in idx for c in configs)]
    if not cols:
        return []
    lines = ["| config | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for c in configs:
        base = idx.get((baseline, c, metric)) if baseline else None
        bval = base["value"] if base and base["status"] == "ok" else None
        cells = []
        for f in cols:
            r = idx.get((f, c, metric))
            if r is None:
                cells.append("")
            elif r["status"] != "ok" or r["value"] is None:
                cells.append(r["status"])
            else:
                cell = fmt(r["value"])
                if bval and f != baseline:
                    # ratio > 1 always means "slower than the baseline"
                    ratio = bval / r["value"] if higher_is_better else r["value"] / bval
                    cell += f" ({ratio:.3g}×)"
                cells.append(cell)
        lines.append(f"| {c} | " + " | ".join(cells) + " |")
    return lines


def _load_line(records: Sequence[Record], machine: dict[str, Any]) -> str:
    loads = [r["value"] for r in records if r["metric"] == "load_average"]
    if not loads:
        return "- load average: not recorded"
    cpus = machine.get("cpu_count") or 0
    line = f"- load average (1 min) while timing: {min(loads):.2f}–{max(loads):.2f} on {cpus} CPUs"
    if cpus and max(loads) > cpus:
        line += " — **the machine was shared: absolute times are noisy; ratios within a round hold better**"
    return line


def markdown(records: Sequence[Record], baseline: str | None = None) -> str:
    """Tables of step time (with ratios vs the baseline and vs the GEMM floor) and the rest."""
    if not records:
        return "No results.\n"
    baseline = choose_baseline(records, baseline)
    configs = _ordered(r["config"] for r in records)
    frameworks = [f for f in _ordered(r["framework"] for r in records)
                  if f not in (ROOFLINE, ROOFLINE_TORCH, "machine")]
    machine = records[0]["machine"]
    vers = records[0]["versions"]
    idx = _index(records)
    out = [
        "# graphc benchmark results",
        "",
        f"- CPU: **{machine.get('cpu')}** ({machine.get('affinity')} CPUs used), "
        f"threads pinned to {machine.get('threads', '?')}",
        f"- BLAS (NumPy): {', '.join(machine.get('blas') or ['unknown'])}",
        f"- BLAS (graphc): {machine.get('graphc_blas') or 'unknown'}",
        f"- date: {machine.get('date')}; " + ", ".join(f"{k} {v}" for k, v in vers.items() if v is not None),
        _load_line(records, machine),
        f"- ratios: framework ÷ baseline **{baseline}** (> 1 = slower than it); "
        "compare figures from one run only.",
        "",
        "## Train step (forward + backward + SGD), per step",
        "",
    ]
    out += _table(records, "step_time", frameworks, configs, baseline, fmt_time)
    # Roofline: GEMM floor and how far each framework's step is above it.
    roof = [c for c in configs if (ROOFLINE, c, "gemm_floor") in idx]
    if roof:
        out += [
            "",
            "## Roofline: step time ÷ GEMM floor (the step's GEMMs alone through np.dot)",
            "",
        ]
        cols = [f for f in frameworks if any((f, c, "step_time") in idx for c in roof)]
        torch_floor = any((ROOFLINE_TORCH, c, "gemm_floor") in idx for c in roof)
        extra = " PyTorch's GEMMs ÷ NumPy's |" if torch_floor else ""
        out.append("| config | step GFLOP | GEMM floor | sgemm GFLOP/s |" + extra + " "
                   + " | ".join(cols) + " |")
        out.append("|---" * (len(cols) + 4 + torch_floor) + "|")
        for c in roof:
            floor = idx[(ROOFLINE, c, "gemm_floor")]["value"]
            flops = idx.get((ROOFLINE, c, "step_flops"), {}).get("value")
            gf = idx.get((ROOFLINE, c, "sgemm_gflops"), {}).get("value")
            cells = []
            for f in cols:
                r = idx.get((f, c, "step_time"))
                ok = r and r["status"] == "ok" and r["value"]
                cells.append(f"{r['value'] / floor:.3g}" if ok and floor else "")
            flop_s = f"{flops / 1e9:.3g}" if flops else "—"
            gf_s = f"{gf:.3g}" if gf else "—"
            tf = idx.get((ROOFLINE_TORCH, c, "gemm_floor"), {}).get("value")
            tf_s = (f" {tf / floor:.3g} |" if tf and floor else " — |") if torch_floor else ""
            out.append(f"| {c} | {flop_s} | {fmt_time(floor)} | {gf_s} |{tf_s} "
                       + " | ".join(cells) + " |")
        formula = idx.get((ROOFLINE, roof[0], "step_flops"), {}).get("formula")
        if formula:
            out += ["", f"Step FLOPs = {formula}."]
        if torch_floor:
            out += ["", "PyTorch's GEMMs ÷ NumPy's: the same GEMMs through torch.mm (MKL) over "
                    "np.dot (OpenBLAS), timed in the same rounds. Below 1, PyTorch's BLAS is "
                    "faster at these shapes, and no step built on OpenBLAS beats PyTorch eager "
                    "by more than (PyTorch step ÷ NumPy floor)."]
    sections = [
        ("first_step_time", "Build + first step (includes JIT compile)", fmt_time, False),
    ]
    infer_metrics = sorted(
        {r["metric"] for r in records if r["metric"].startswith("infer_time_b")},
        key=lambda m: int(m.rsplit("b", 1)[1]),
    )
    for m in infer_metrics:
        sections.append((m, f"Inference latency, batch {m.rsplit('b', 1)[1]}", fmt_time, False))
    sections += [
        ("fit_throughput", "Whole-fit throughput (samples/s)", lambda v: f"{v:,.0f}", True),
        ("alloc_peak_per_step", ALLOC_TITLE, fmt_bytes, False),
        ("compile_cold", "Compile time, cold (fresh process, empty cache)", fmt_time, False),
        ("compile_warm", "Compile time, warm (fresh process, on-disk cache)", fmt_time, False),
    ]
    for metric, title, fmt, hib in sections:
        table = _table(records, metric, frameworks, configs, baseline, fmt, hib)
        if table:
            out += ["", f"## {title}", ""] + table
            if metric == "fit_throughput":
                out += ["", "Each timed fit call ran " + ", ".join(
                    f"{c} {e} epoch(s)" for c, e in _fit_epochs(records).items()) + "."]
    # Agreement and skips: never silent.
    agree = [r for r in records if r["metric"] == "loss_first_step" and r["status"] == "ok"]
    if agree:
        out += ["", "## Agreement (first-step loss vs NumPy float64 reference)", ""]
        out += ["| config | framework | loss | rel. error |", "|---|---|---|---|"]
        for r in agree:
            err = r.get("agreement", {}).get("first_step_loss_rel_err")
            err_s = f"{err:.2g}" if err is not None else "not compared"
            out.append(f"| {r['config']} | {r['framework']} | {r['value']:.7g} | {err_s} |")
    skipped = [r for r in records if r["status"] in ("skipped", "error")]
    if skipped:
        out += ["", "## Skipped or failed", ""]
        grouped: dict[tuple[str, str, str, str], list[str]] = {}
        for r in skipped:
            key = (r["framework"], r["metric"], r["status"], r.get("reason", ""))
            grouped.setdefault(key, []).append(r["config"])
        for (fw, metric, status, reason), cfgs in grouped.items():
            out.append(f"- {fw} ({metric}; {', '.join(cfgs)}): {status}: {reason}")
    notes = _ordered(f"{r['framework']}: {r['note']}" for r in records if r.get("note"))
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    return "\n".join(out) + "\n"


def write_markdown(records: Sequence[Record], path: str | Path, baseline: str | None = None) -> Path:
    path = Path(path)
    path.write_text(markdown(records, baseline))
    return path


def write_png(records: Sequence[Record], path: str | Path) -> Path | None:
    """Step time per config and framework, log scale; None (with a message) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on benchmark machines
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: PNG chart skipped (pip install matplotlib)")
        return None
    rows = [r for r in records if r["metric"] == "step_time" and r["status"] == "ok"]
    floors = {r["config"]: r["value"] for r in records
              if r["metric"] == "gemm_floor" and r["framework"] == ROOFLINE}
    if not rows:
        print("no step times to plot: PNG chart skipped")
        return None
    configs = _ordered(r["config"] for r in rows)
    frameworks = _ordered(r["framework"] for r in rows)
    idx = _index(rows)
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(configs) * max(1, len(frameworks)) / 3), 4.5))
    width = 0.8 / len(frameworks)
    for j, f in enumerate(frameworks):
        xs, ys = [], []
        for i, c in enumerate(configs):
            r = idx.get((f, c, "step_time"))
            if r:
                xs.append(i - 0.4 + width * (j + 0.5))
                ys.append(r["value"] * 1e6)
        ax.bar(xs, ys, width, label=f)
    for i, c in enumerate(configs):
        if c in floors:
            ax.hlines(floors[c] * 1e6, i - 0.45, i + 0.45, colors="k", linestyles="dashed")
    ax.set_yscale("log")
    ax.set_xticks(range(len(configs)), configs)
    ax.set_ylabel("step time (µs, log scale)")
    machine = records[0]["machine"]
    ax.set_title(f"Train step time — {machine.get('cpu')} (dashed: GEMM floor)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
