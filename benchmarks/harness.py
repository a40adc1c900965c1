"""Measurement machinery: thread pinning, machine description, timing, compile time, memory.

Timing method (BENCHMARKS.md): warm up first, then time many calls within a budget and keep
per-sample times; a *sample* is ``inner`` back-to-back calls divided by ``inner``, with
``inner`` chosen so a sample lasts at least ~200 µs (a sub-microsecond step cannot be timed
one call at a time: perf_counter's resolution and the loop would dominate). Frameworks are
timed in interleaved rounds, rotating the order each round, so that a noisy neighbour on the
shared machine slows every framework alike instead of whichever happened to run then; the
reported value is the smallest of the per-round medians, the spread is the pooled IQR.
"""

from __future__ import annotations

import datetime as _dt
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._env import THREAD_ENV, set_thread_env

DEFAULT_THREADS = 2  # the machines this project benchmarks on have 2 cores
MIN_SAMPLE_S = 2e-4

_limiter: Any = None  # keeps threadpoolctl's limits alive for the life of the process


def pin_threads(n: int = DEFAULT_THREADS) -> dict[str, Any]:
    """Pin every framework to `n` threads, at run time; safe to call again after more imports.

    - BLAS/OpenMP pools of every library loaded so far (NumPy's OpenBLAS, torch's MKL/OpenMP,
      ...): threadpoolctl. Libraries loaded later need another call, so the suite calls this
      after building each config's peers.
    - torch: torch.set_num_threads(n) (intra-op) if torch is imported.
    - numba: numba.set_num_threads(n) if numba is imported (parallel=True kernels).
    - XLA (jax): sizes its intra-op pool from the process's CPU affinity, so when more than `n`
      CPUs are allowed the affinity is narrowed to the first `n` (Linux only). Must happen
      before jax creates its CPU client to affect XLA; harmless otherwise.
    Returns what was set, for the report.
    """
    global _limiter
    info: dict[str, Any] = {"threads": n}
    set_thread_env(n)
    if hasattr(os, "sched_getaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) > n:
            os.sched_setaffinity(0, cpus[:n])
            cpus = cpus[:n]
        info["affinity"] = cpus
    try:
        from threadpoolctl import threadpool_limits

        _limiter = threadpool_limits(limits=n)
        info["threadpoolctl"] = True
    except ImportError:
        info["threadpoolctl"] = False  # env vars above are then the only BLAS pinning
    if "torch" in sys.modules:
        torch = sys.modules["torch"]
        torch.set_num_threads(n)
        info["torch_threads"] = torch.get_num_threads()
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    return info


# ---------------------------------------------------------------------------------------------
# machine description


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info() -> list[dict[str, Any]]:
    """Thread pools currently loaded (BLAS and OpenMP), as threadpoolctl sees them."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    keys = ("user_api", "internal_api", "version", "architecture", "num_threads", "prefix")
    return [{k: p.get(k) for k in keys} for p in threadpool_info()]


def versions() -> dict[str, str | None]:
    """Versions of the relevant packages, read from metadata (imports nothing heavy)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in (
        "numpy",
        "scipy",
        "numba",
        "llvmlite",
        "torch",
        "jax",
        "jaxlib",
        "autograd",
        "scikit-learn",
        "threadpoolctl",
        "matplotlib",
        "graphc",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def _graphc_blas() -> str | None:
    """The BLAS graphc's generated code calls (MKL when installed, else OpenBLAS)."""
    try:
        from graphc.kernels.blas import BLAS
    except Exception:  # noqa: BLE001 -- the report must not fail over this line
        return None
    return BLAS


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, BLAS in use, OS, date (UTC) and the relevant env variables."""
    env = {
        k: os.environ[k]
        for k in (*THREAD_ENV, "XLA_FLAGS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "GRAPHC_BLAS",
                  "MKL_THREADING_LAYER", "MKL_CBWR")
        if k in os.environ
    }
    numpy_blas = [
        f"{p['internal_api']} {p['version']} ({p['architecture']}, {p['num_threads']} threads)"
        for p in blas_info()
        if p["user_api"] == "blas"
    ]
    return {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "blas": numpy_blas,
        "graphc_blas": _graphc_blas(),
        "threadpools": blas_info(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "env": env,
    }


# ---------------------------------------------------------------------------------------------
# timing


@dataclass
class Timing:
    """Per-call times (seconds) of one timed run: each sample is `inner` calls averaged."""

    samples: list[float] = field(repr=False)
    inner: int

    @property
    def n(self) -> int:
        return len(self.samples)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def q1(self) -> float:
        return float(np.percentile(self.samples, 25))

    @property
    def q3(self) -> float:
        return float(np.percentile(self.samples, 75))

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def summary(self) -> dict[str, float | int]:
        return {
            "median": self.median,
            "min": self.min,
            "q1": self.q1,
            "q3": self.q3,
            "iqr": self.iqr,
            "samples": self.n,
            "inner": self.inner,
        }


def calibrate(fn: Callable[[], Any], min_sample_s: float = MIN_SAMPLE_S) -> int:
    """How many back-to-back calls make one sample last at least `min_sample_s`."""
    inner = 1
    # one call is often enough (slow steps, fits): then this costs a single call
    while True:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        dt = time.perf_counter() - t0
        if dt >= min_sample_s or inner >= 1 << 20:
            return inner
        # aim a bit past the target, at most 10x more per try
        inner = min(inner * 10, max(inner + 1, int(inner * 1.5 * min_sample_s / max(dt, 1e-9))))


def time_fn(
    fn: Callable[[], Any],
    budget_s: float = 1.0,
    warmup: int = 3,
    inner: int | None = None,
    min_samples: int = 5,
    max_samples: int = 100_000,
) -> Timing:
    """Warm up (`warmup` calls), then sample until `budget_s` is spent (>= `min_samples`).

    Garbage collection is disabled while timing (as timeit does): a collection triggered by
    one framework's garbage must not be charged to whichever framework runs next.
    """
    for _ in range(warmup):
        fn()
    if inner is None:
        inner = calibrate(fn)
    samples: list[float] = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter() + budget_s
        while len(samples) < max_samples:
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            t1 = time.perf_counter()
            samples.append((t1 - t0) / inner)
            if t1 >= deadline and len(samples) >= min_samples:
                break
    finally:
        if gc_was:
            gc.enable()
    return Timing(samples, inner)


@dataclass
class Interleaved:
    """Rounds of one framework's timings within an interleaved run."""

    rounds: list[Timing]

    @property
    def best_median(self) -> float:
        """The reported figure: the least-disturbed round's median."""
        return min(t.median for t in self.rounds)

    def summary(self) -> dict[str, Any]:
        pooled = Timing([s for t in self.rounds for s in t.samples], self.rounds[0].inner)
        return {
            "best_median": self.best_median,
            "round_medians": [t.median for t in self.rounds],
            "min": pooled.min,
            "q1": pooled.q1,
            "q3": pooled.q3,
            "iqr": pooled.iqr,
            "samples": pooled.n,
            "inner": pooled.inner,
        }


def interleave(
    fns: Mapping[str, Callable[[], Any]],
    rounds: int = 5,
    budget_s: float = 1.0,
    warmup: int = 3,
    on_error: Callable[[str, BaseException], None] | None = None,
    min_samples: int = 5,
) -> dict[str, Interleaved]:
    """Time every callable in `rounds` rounds of ``budget_s / rounds`` each, rotating order.

    Each callable is warmed up and calibrated once, before the first round. A callable that
    raises is dropped from later rounds and reported through `on_error` (else re-raised).
    """
    names = list(fns)
    inner: dict[str, int] = {}
    for name in list(names):
        try:
            for _ in range(warmup):
                fns[name]()
            inner[name] = calibrate(fns[name])
        except Exception as err:
            if on_error is None:
                raise
            on_error(name, err)
            names.remove(name)
    out: dict[str, list[Timing]] = {n: [] for n in names}
    per_round = budget_s / max(rounds, 1)
    for r in range(rounds):
        order = names[r % len(names) :] + names[: r % len(names)] if names else []
        for name in order:
            if name not in out:
                continue
            try:
                out[name].append(time_fn(fns[name], per_round, 0, inner[name], min_samples=min_samples))
            except Exception as err:
                if on_error is None:
                    raise
                on_error(name, err)
                del out[name]
    return {n: Interleaved(t) for n, t in out.items() if t}


# ---------------------------------------------------------------------------------------------
# compile time


def compile_time(fn: Callable[[], Any]) -> float:
    """Wall time of one call of `fn` (e.g. build + first step), after a garbage collection."""
    gc.collect()
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _repo_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


def compile_cold_warm(
    framework: str,
    config: str,
    dtype: str = "float32",
    cache_env: Callable[[str], dict[str, str]] | None = None,
    threads: int = DEFAULT_THREADS,
    timeout_s: float = 600.0,
) -> dict[str, float]:
    """Build + first step in two fresh processes sharing one new on-disk cache directory.

    cold: the first process, empty cache; warm: the second, which finds the first one's cache.
    `cache_env(dir)` gives the environment that points the framework's caches at `dir` (the
    peer module's ``cache_env`` hook). Also returns the import time of each process, which is
    not compile time but is what a user waits for too.
    """
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=f"bench-cache-{framework}-") as cache:
        env = dict(os.environ)
        env.update(cache_env(cache) if cache_env else {})
        env["PYTHONPATH"] = _repo_root() + os.pathsep + env.get("PYTHONPATH", "")
        cmd = [sys.executable, "-m", "benchmarks.harness", "--probe", framework, config, dtype, str(threads)]
        for label in ("cold", "warm"):
            res = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=timeout_s, cwd=_repo_root()
            )
            if res.returncode != 0:
                raise RuntimeError(f"compile probe {framework}/{config} failed:\n{res.stderr}")
            probe = json.loads(res.stdout.strip().splitlines()[-1])
            out[f"{label}_s"] = probe["first_step_s"]
            out[f"{label}_import_s"] = probe["import_s"]
    return out


def _probe(framework: str, config: str, dtype: str, threads: int) -> dict[str, float]:
    t0 = time.perf_counter()
    set_thread_env(threads)
    from benchmarks.configs import make_problem
    from benchmarks.peers import resolve

    spec = resolve(framework)
    ok, why = spec.available()
    if not ok:
        raise SystemExit(f"{framework} unavailable: {why}")
    # available() imported the framework itself, so its import is not counted as compiling.
    problem = make_problem(config, dtype)
    pin_threads(threads)
    t1 = time.perf_counter()

    def first() -> None:
        spec.build(problem).step()

    return {"import_s": t1 - t0, "first_step_s": compile_time(first)}


# ---------------------------------------------------------------------------------------------
# memory


def alloc_per_step(fn: Callable[[], Any], steps: int = 10, warmup: int = 3) -> dict[str, float]:
    """Bytes allocated during one steady step, as tracemalloc sees them.

    tracemalloc counts Python objects and NumPy array data (NumPy reports its allocations to
    it); memory that torch, XLA or a BLAS allocate in C++ is invisible to it. Reported: the
    median over `steps` of the peak of traced memory above its level before the step (the
    transient allocations of a step), and the net growth per step (should be ~0).
    """
    for _ in range(warmup):
        fn()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        for _ in range(2):  # first traced calls allocate tracemalloc's own bookkeeping
            fn()
        peaks = []
        start, _ = tracemalloc.get_traced_memory()
        for _ in range(steps):
            tracemalloc.reset_peak()
            before, _ = tracemalloc.get_traced_memory()
            fn()
            _, peak = tracemalloc.get_traced_memory()
            peaks.append(peak - before)
        end, _ = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return {"peak_bytes": float(statistics.median(peaks)), "net_bytes": (end - start) / steps}


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS does not report one)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


def peak_rss_bytes() -> int:
    """The process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss) * (1 if sys.platform == "darwin" else 1024)


if __name__ == "__main__":
    # Internal: one compile-time probe in a fresh process (see compile_cold_warm).
    if len(sys.argv) == 6 and sys.argv[1] == "--probe":
        _fw, _cfg, _dt_name, _thr = sys.argv[2:6]
        print(json.dumps(_probe(_fw, _cfg, _dt_name, int(_thr))))
    else:
        raise SystemExit("usage: python -m benchmarks.harness --probe FRAMEWORK CONFIG DTYPE N")
