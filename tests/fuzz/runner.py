"""Draw fuzz cases with hypothesis and run them, in parallel worker processes.

Why not a plain ``@given`` test: every case compiles three native entry points
(the gradient function, the training step, the forward pass), which costs
seconds of Numba/LLVM time each, and Numba never frees JIT-compiled code, so
one process running hundreds of cases grows by ~40 MB per case.  So cases are
drawn first (by hypothesis: derandomized in CI, or from ``GRAPHC_FUZZ_SEED``),
then run by a pool of worker processes that are replaced every
:data:`TASKS_PER_WORKER` cases.  A worker that dies (a segfault in native
code) or a case that runs longer than :data:`CASE_TIMEOUT` is reported as a
failure of that case, with its reproduction.

``GRAPHC_FUZZ_JOBS=1`` runs the same strategy as an ordinary ``@given`` test
in this process instead, so hypothesis shrinks a failure to a minimal case.
"""

from __future__ import annotations

import collections
import hashlib
import multiprocessing
import os
import queue
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

from .strategies import Case, cases

TASKS_PER_WORKER = 32
CASE_TIMEOUT = 900.0  # seconds; a case normally takes 1-30 s


def jobs() -> int:
    env = os.environ.get("GRAPHC_FUZZ_JOBS")
    if env:
        return max(1, int(env))
    return max(1, min(2, os.cpu_count() or 1))


def fuzz_settings(n: int, seed: int | None, **kw) -> settings:
    """CI: derandomized (the same cases every run); with a seed: that seed's cases."""
    return settings(max_examples=n, deadline=None, derandomize=seed is None, database=None,
                    suppress_health_check=list(HealthCheck), **kw)


def network_key(case: Case) -> str:
    """What makes two cases the same network: its source and dtype, hashed to 64 bits
    (a collision among 10^5 networks has odds of ~3e-10)."""
    return hashlib.sha256(f"{case.dtype}\n{case.model_src}".encode()).hexdigest()[:16]


def draw_cases(n: int, seed: int | None = None, distinct_networks: bool = False,
               exclude: Collection[str] = ()) -> list[Case]:
    """``n`` distinct cases from the strategy, deterministic for a seed (or derandomized).

    Hypothesis repeats itself (it mutates earlier examples), so more examples are
    drawn than needed and duplicates dropped; with ``distinct_networks`` no two
    cases share a network (and dtype), so every case compiles its own graphs, and
    none is a network whose :func:`network_key` is in ``exclude`` (tested before).
    """
    budget = n + n // 2 + 10
    while True:
        out: list[Case] = []
        seen: set = set()

        @fuzz_settings(budget, seed, phases=[Phase.explicit, Phase.generate])
        @given(cases())
        def collect(case: Case) -> None:
            key = (network_key(case) if distinct_networks else
                   (case.source, case.dtype, case.seed, case.batches, case.optimizer,
                    tuple(sorted(case.train.items())), case.grad_inputs))
            if key not in seen and key not in exclude and len(out) < n:
                seen.add(key)
                out.append(case)

        if seed is not None:
            collect = hypothesis_seed(seed)(collect)
        collect()
        if len(out) >= n or budget > 20 * n:
            return out
        budget *= 2


def _run(case: Case) -> tuple[str | None, float, float, dict]:
    """Worker: (failure report or None, wall seconds, CPU seconds, tolerance used)."""
    from .harness import check_case

    t0, c0 = time.perf_counter(), time.process_time()
    failure, stats = None, {}
    try:
        stats = check_case(case)
    except AssertionError as e:
        failure = str(e)
    return failure, time.perf_counter() - t0, time.process_time() - c0, stats


@dataclass
class Result:
    cases: int = 0
    graphs: int = 0                       # distinct (model, dtype) pairs
    training_graphs: int = 0              # distinct (model, dtype, optimizer, decay, clipping)
    seconds: float = 0.0
    case_seconds: list[float] = field(default_factory=list)
    case_cpu: list[float] = field(default_factory=list)
    cpu_by_depth: dict = field(default_factory=lambda: collections.defaultdict(list))
    # per dtype: the largest fraction of the tolerance used before / after an update,
    # and how many cases needed the spread / float64-truth allowances
    used: dict = field(default_factory=lambda: collections.defaultdict(collections.Counter))
    failures: list[str] = field(default_factory=list)
    tags: collections.Counter = field(default_factory=collections.Counter)

    def summary(self) -> str:
        slow = sorted(self.case_seconds)[-1] if self.case_seconds else 0.0
        lines = [f"{self.cases} cases ({self.graphs} distinct networks, {self.training_graphs} "
                 f"distinct training graphs) in {self.seconds:.0f} s "
                 f"with {jobs()} worker(s), {sum(self.case_cpu):.0f} CPU s in the workers; "
                 f"slowest case {slow:.1f} s; {len(self.failures)} failure(s)"]
        groups = collections.defaultdict(list)
        for tag, k in sorted(self.tags.items()):
            groups[tag.split(":")[0] if ":" in tag else "dtype/batch"].append(f"{tag} {k}")
        lines += [f"  {g}: " + ", ".join(v) for g, v in sorted(groups.items())]
        for dt, u in sorted(self.used.items()):
            lines.append(f"  {dt}: largest fraction of the tolerance used: before an update "
                         f"{u['before']:.3g}, after {u['after']:.3g}; cases needing the update "
                         f"spread {u['n_spread']:g}, the feed jitter {u['n_jitter']:g}, "
                         f"the float64 truth {u['n_truth']:g}")
        lines.append("  CPU s per case by depth: " + ", ".join(
            f"{d}: {sum(v) / len(v):.1f}" for d, v in sorted(self.cpu_by_depth.items())))
        return "\n".join(lines)


def _worker(tasks, results, limit: int) -> None:
    """Worker process: run up to ``limit`` cases from ``tasks``, then exit (frees JIT memory)."""
    for _ in range(limit):
        i, case = tasks.get()
        results.put(("start", i, os.getpid()))
        results.put(("done", i, _run(case)))


def run_cases(todo: list[Case], n_jobs: int | None = None, progress=None,
              stop_after: int | None = None) -> Result:
    """Run every case on both backends; collect failure reports (never raises for them).

    Each worker process takes cases from a queue and announces which one it
    starts, so a worker that dies (a segfault) or a case that hangs is pinned
    on the right case; the worker is replaced and the rest go on.
    """
    from .harness import report

    n_jobs = n_jobs or jobs()
    res = Result(cases=len(todo), graphs=len({(c.model_src, c.dtype) for c in todo}),
                 training_graphs=len({(c.model_src, c.dtype, c.optimizer, repr(c.train))
                                      for c in todo}))
    for c in todo:
        res.tags.update(set(c.tags))
    t0 = time.perf_counter()
    ctx = multiprocessing.get_context("spawn")
    tasks, results = ctx.Queue(), ctx.Queue()
    for item in enumerate(todo):
        tasks.put(item)
    workers: dict[int, list] = {}  # pid -> [process, running case index or None, start time]
    finished: set[int] = set()

    def spawn() -> None:
        p = ctx.Process(target=_worker, args=(tasks, results, TASKS_PER_WORKER), daemon=True)
        p.start()
        workers[p.pid] = [p, None, 0.0]

    def fail(i: int, why: str) -> None:
        finished.add(i)
        _record(res, i, report(todo[i], [f"case {i}: {why}"]), 0.0, 0.0, len(todo), progress)

    try:
        for _ in range(min(n_jobs, len(todo))):
            spawn()
        while len(finished) < len(todo):
            if stop_after is not None and len(res.failures) >= stop_after:
                break
            try:
                kind, i, payload = results.get(timeout=2.0)
            except queue.Empty:
                kind = None
            if kind == "start":
                workers[payload][1:] = [i, time.perf_counter()]
            elif kind == "done":
                finished.add(i)
                res.cpu_by_depth[todo[i].depth].append(payload[2])
                u, stats = res.used[todo[i].dtype], payload[3]
                for k in ("before", "after"):
                    u[k] = max(u[k], stats.get(k, 0.0))
                u["n_spread"] += stats.get("spread", 0.0)
                u["n_truth"] += stats.get("truth", 0.0)
                u["n_jitter"] += stats.get("jitter", 0.0)
                payload = payload[:3]
                for w in workers.values():
                    if w[1] == i:
                        w[1] = None
                _record(res, i, *payload, len(todo), progress)
                continue
            now = time.perf_counter()
            for pid, (p, running, since) in list(workers.items()):
                if running is not None and now - since > CASE_TIMEOUT:
                    p.kill()
                    p.join()
                    fail(running, f"no result after {CASE_TIMEOUT:.0f} s (a hang?)")
                elif p.is_alive():
                    continue
                elif running is not None:
                    fail(running, f"the worker process died with exit code {p.exitcode} "
                                  "(a crash in native code?)")
                del workers[pid]
                if len(finished) + len(workers) < len(todo):
                    spawn()
            if not workers and len(finished) < len(todo):
                for i in sorted(set(range(len(todo))) - finished):
                    fail(i, "lost: no worker ran it")
    finally:
        for p, _, _ in workers.values():
            p.kill()
            p.join()
    res.seconds = time.perf_counter() - t0
    return res


def _record(res: Result, i: int, failure: str | None, secs: float, cpu: float, total: int,
            progress) -> None:
    res.case_seconds.append(secs)
    res.case_cpu.append(cpu)
    if failure:
        res.failures.append(f"case {i}:\n{failure}")
    if progress:
        progress(len(res.case_seconds), total, res)
