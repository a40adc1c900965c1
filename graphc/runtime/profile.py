"""``Program.profile``: time every fused kernel of the compiled step on its own.

The step's nodes are compiled one function each (``codegen.module.profile_source``)
and called in schedule order on a copy of the parameters, so profiling never
changes the model.  For each kernel: median time, FLOPs, GFLOP/s, and -- for
GEMM-bearing kernels -- the share of the rate NumPy's own GEMM reaches at the
same shapes on this machine.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from graphc.codegen import cache
from graphc.codegen.module import HEADER, profile_source, source_key
from graphc.errors import GraphError


@dataclass
class KernelTime:
    node: int
    label: str
    seconds: float
    flops: int
    gemm_shapes: list[tuple[int, int, int]]
    numpy_gflops: float | None

    @property
    def gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds > 0 else 0.0


@dataclass
class Profile:
    entry: str
    batch: int
    kernels: list[KernelTime]
    step_seconds: float

    def table(self) -> str:
        total = sum(k.seconds for k in self.kernels) or 1.0
        rows = [f"profile of {self.entry} at batch {self.batch}: whole step "
                f"{self.step_seconds * 1e6:.1f} us, sum of kernels {total * 1e6:.1f} us",
                f"{'kernel':<34} {'time us':>9} {'share':>6} {'MFLOP':>9} {'GFLOP/s':>8} "
                f"{'% numpy gemm':>12}"]
        for k in self.kernels:
            pct = (f"{100 * k.gflops / k.numpy_gflops:.0f}%" if k.numpy_gflops else "-")
            rows.append(f"{k.label[:34]:<34} {k.seconds * 1e6:9.2f} {100 * k.seconds / total:5.1f}% "
                        f"{k.flops / 1e6:9.3f} {k.gflops:8.2f} {pct:>12}")
        return "\n".join(rows)


def _flops(g, n: int, batch: int) -> tuple[int, list[tuple[int, int, int]]]:
    node = g.node(n)
    ins = g.inputs(n)

    def dims(i):
        return tuple(batch if d is None else d for d in g.node(i).shape)

    if node.op == "dense":
        (b, k), (_, m) = dims(ins[0]), dims(ins[1])
        return 2 * b * k * m + 2 * b * m, [(b, k, m)]
    if node.op == "dense_bwd":
        (b, k), (_, m) = dims(ins[0]), dims(ins[1])
        gemms = [(k, b, m)] + ([(b, m, k)] if "dx" in node.get("outs") else [])
        return sum(2 * x * y * z for x, y, z in gemms) + 3 * b * m, gemms
    if node.op == "matmul":
        a, bshape = dims(ins[0]), dims(ins[1])
        m, k = a[::-1] if node.get("ta") else a
        nn = bshape[0] if node.get("tb") else bshape[1]
        return 2 * m * k * nn, [(m, k, nn)]
    if node.dtype == "tuple":
        return sum(int(np.prod([batch if d is None else d for d in s])) for s in node.shape), []
    return int(np.prod([batch if d is None else d for d in node.shape] or [1])), []


def _numpy_gemm_rate(shapes: list[tuple[int, int, int]], dtype, reps: int = 20) -> float | None:
    if not shapes:
        return None
    flops, secs = 0, 0.0
    for m, k, n in shapes:
        a, b, c = np.ones((m, k), dtype), np.ones((k, n), dtype), np.empty((m, n), dtype)
        np.dot(a, b, out=c)
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            np.dot(a, b, out=c)
            ts.append(time.perf_counter() - t0)
        flops += 2 * m * k * n
        secs += float(np.median(ts))
    return flops / secs / 1e9 if secs > 0 else None


def profile(program, feeds, repeat: int = 50) -> Profile:
    impl = program._impl
    if impl is None:
        raise GraphError("profile needs the compiled backend")
    training = "train_step" in impl.entries and program.loss_name is not None
    name = "train_step" if training else "forward"
    needed = None if training else program._forward_inputs
    checked, batch = program.feed_spec.validate(feeds, program.dtype, needed)
    e = impl.entries[name]
    src, ids = profile_source(e.emitter, e.layout, len(e.feeds))
    head = HEADER.format(version="profile", summary=f"per-kernel profile of {name}",
                         fastmath=repr({"reassoc", "contract", "arcp", "nsz", "afn"}))
    source = head + "\n\n" + src
    mod, _, _ = cache.load(source, source_key(source, impl.key))
    fns = [getattr(mod, f"node_{n}") for n in ids]
    arena = program.arena.data.copy()
    ws = np.zeros(max(e.layout.offsets(batch)[-1], 1), dtype=program.dtype)
    args = [checked[f] for f in e.feeds]
    lr = program.lr()
    times = np.zeros((repeat, len(fns)))
    for r in range(repeat + 1):
        if r == 1:
            arena[...] = program.arena.data  # the warm-up compiled everything; restart clean
        for j, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn(arena, ws, batch, lr, 1, *args)
            if r:
                times[r - 1, j] = time.perf_counter() - t0
    whole = []
    for _ in range(repeat):
        arena[...] = program.arena.data
        t0 = time.perf_counter()
        e.fn(arena, ws, batch, lr, 1, *args)
        whole.append(time.perf_counter() - t0)
    kernels = []
    for j, n in enumerate(ids):
        node = e.graph.node(n)
        flops, gemms = _flops(e.graph, n, batch)
        label = f"%{n} {node.op}"
        extra = node.get("act") or node.get("opt") or node.get("param") or ""
        if extra:
            label += f"[{extra}]"
        if n in e.emitter.folded:
            label += "+sgd"
        kernels.append(KernelTime(n, label, float(np.median(times[:, j])), flops, gemms,
                                  _numpy_gemm_rate(gemms, program.dtype)))
    return Profile(name, batch, kernels, float(np.median(whole)))
