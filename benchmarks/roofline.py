"""The roofline of a train step: its FLOPs, sgemm throughput at its shapes, its GEMM floor.

FLOPs of one SGD step on a dense net with batch B and layers (n_i -> m_i), counting a
multiply-add as 2 FLOPs and only the GEMMs (bias, activation, loss and update are O(B·m) or
O(n·m), negligible next to them):

    forward   Z_i  = H_i @ W_i          2·B·n_i·m_i   every layer
    backward  dW_i = H_iᵀ @ dZ_i        2·B·n_i·m_i   every layer
              dH_i = dZ_i @ W_iᵀ        2·B·n_i·m_i   all layers but the first (dX of the
                                                      input is never needed)
    step FLOPs = 2·B·(3·Σ_i n_i·m_i − n_0·m_0)

The GEMM floor is the time of exactly those GEMMs, run back to back through ``np.dot(a, b,
out=c)`` on float32 C-contiguous buffers with the same transposed views a step uses
(NumPy's BLAS, threads pinned): a step that fuses everything else into them can at best
reach it, so step time ÷ GEMM floor says how much a framework spends beyond the arithmetic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.configs import Config, get_config
from benchmarks.harness import Interleaved, interleave, time_fn

FLOP_FORMULA = "2*B*(3*sum_i(n_i*m_i) - n_0*m_0)  [fwd + dW every layer + dX all but first]"


@dataclass(frozen=True)
class Gemm:
    """One GEMM of a step: C (M, N) = A (M, K) @ B (K, N), with A/B possibly transposed views."""

    layer: int
    kind: str  # "fwd", "dW", "dX"
    m: int
    k: int
    n: int

    @property
    def flops(self) -> int:
        return 2 * self.m * self.k * self.n

    @property
    def label(self) -> str:
        return f"L{self.layer} {self.kind} ({self.m}x{self.k})@({self.k}x{self.n})"


def step_gemms(config: str | Config) -> list[Gemm]:
    """The GEMMs of one training step, in execution order."""
    cfg = get_config(config)
    b = cfg.batch
    shapes = cfg.layer_shapes
    out = [Gemm(i, "fwd", b, n, m) for i, (n, m) in enumerate(shapes)]
    for i in range(len(shapes) - 1, -1, -1):
        n, m = shapes[i]
        out.append(Gemm(i, "dW", n, b, m))  # H_i.T (n, B) @ dZ (B, m)
        if i > 0:
            out.append(Gemm(i, "dX", b, m, n))  # dZ (B, m) @ W_i.T (m, n)
    return out


def step_flops(config: str | Config) -> int:
    """FLOPs of one step (see module docstring for the formula)."""
    cfg = get_config(config)
    b = cfg.batch
    s = sum(n * m for n, m in cfg.layer_shapes)
    n0, m0 = cfg.layer_shapes[0]
    total = 2 * b * (3 * s - n0 * m0)
    assert total == sum(g.flops for g in step_gemms(cfg))
    return total


def _operands(config: Config, dtype: str, seed: int = 0) -> list[tuple[Any, Any, Any]]:
    """(A, B, C) per GEMM with the same memory layout a fused step has (transposed views)."""
    rng = np.random.default_rng(seed)
    f = np.dtype(dtype)
    b = config.batch

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(f)

    acts = [rand(b, config.sizes[0])] + [rand(b, m) for _, m in config.layer_shapes]
    grads = [rand(b, m) for _, m in config.layer_shapes]
    weights = [rand(n, m) for n, m in config.layer_shapes]
    dws = [np.empty((n, m), f) for n, m in config.layer_shapes]
    dhs = [np.empty((b, n), f) for n, _ in config.layer_shapes]
    ops = []
    for g in step_gemms(config):
        i = g.layer
        if g.kind == "fwd":
            ops.append((acts[i], weights[i], acts[i + 1]))
        elif g.kind == "dW":
            ops.append((acts[i].T, grads[i], dws[i]))
        else:
            ops.append((grads[i], weights[i].T, dhs[i]))
    return ops


def gemm_floor_fn(config: str | Config, dtype: str = "float32") -> Callable[[], None]:
    """A callable running the step's GEMMs back to back; the suite times it interleaved with
    the frameworks' steps, so that the floor and the steps see the same machine load."""
    ops = _operands(get_config(config), dtype)
    dot = np.dot

    def all_gemms() -> None:
        for a, b, c in ops:
            dot(a, b, out=c)

    return all_gemms


def torch_gemm_floor_fn(config: str | Config, dtype: str = "float32") -> Callable[[], None] | None:
    """The same GEMMs through ``torch.mm(out=)`` (PyTorch's BLAS: MKL/oneDNN on x86), or None
    without torch.  NumPy/SciPy ship OpenBLAS; where PyTorch's GEMMs are faster at a config's
    shapes, a framework built on OpenBLAS cannot beat PyTorch by more than
    ``PyTorch step ÷ OpenBLAS floor``: the report shows both floors so that limit is visible."""
    try:
        import torch
    except ImportError:
        return None
    # torch.from_numpy keeps a transposed view's strides: torch sees the same layouts.
    ops = [tuple(torch.from_numpy(t) for t in abc) for abc in _operands(get_config(config), dtype)]
    mm = torch.mm

    def all_gemms() -> None:
        for a, b, c in ops:
            mm(a, b, out=c)

    return all_gemms


def per_gemm_times(
    config: str | Config, dtype: str = "float32", budget_s: float = 1.0
) -> list[dict[str, Any]]:
    """Each GEMM of the step timed on its own: label, flops, time_s (median), gflops."""
    cfg = get_config(config)
    ops = _operands(cfg, dtype)
    out = []
    each_budget = max(budget_s / max(len(ops), 1), 0.02)
    for g, (a, b, c) in zip(step_gemms(cfg), ops, strict=True):
        t = time_fn(lambda a=a, b=b, c=c: np.dot(a, b, out=c), budget_s=each_budget).median
        out.append({"label": g.label, "flops": g.flops, "time_s": t, "gflops": g.flops / t / 1e9})
    return out


def summarize(config: str | Config, floor: Interleaved, per_gemm: list[dict[str, Any]]) -> dict[str, Any]:
    """The roofline figures of a config from a timed floor (see `gemm_floor`)."""
    cfg = get_config(config)
    flops = step_flops(cfg)
    floor_s = floor.best_median
    return {
        "config": cfg.name,
        "floor_s": floor_s,
        "floor_stats": floor.summary(),
        "flops": flops,
        "gflops": flops / floor_s / 1e9,
        "formula": FLOP_FORMULA,
        "per_gemm": per_gemm,
    }


def gemm_floor(
    config: str | Config, dtype: str = "float32", budget_s: float = 1.0, rounds: int = 3
) -> dict[str, Any]:
    """Time the step's GEMMs alone (standalone, not interleaved), and each GEMM on its own.

    Returns floor_s (best-round median of all GEMMs back to back), flops, gflops (FLOPs ÷
    floor), formula, and per_gemm: label, flops, time_s, gflops for each GEMM.
    """
    fn = gemm_floor_fn(config, dtype)
    floor = interleave({"floor": fn}, rounds=rounds, budget_s=budget_s)["floor"]
    return summarize(config, floor, per_gemm_times(config, dtype, budget_s))


def sgemm_peak(n: int = 1024, budget_s: float = 0.5) -> float:
    """sgemm GFLOP/s at n³ (square, float32): the machine's BLAS ceiling for the report."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(np.float32)
    b = rng.standard_normal((n, n)).astype(np.float32)
    c = np.empty((n, n), np.float32)
    t = time_fn(lambda: np.dot(a, b, out=c), budget_s=budget_s, warmup=2).median
    return 2 * n**3 / t / 1e9
