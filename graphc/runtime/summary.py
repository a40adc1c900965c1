"""``Program.summary``: parameters per layer and the fused kernels the step became."""

from __future__ import annotations

import numpy as np


def layer_of(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else name


def kernel_lines(graph, folded: dict | None = None) -> list[str]:
    """One line per kernel of an optimised graph, in schedule order."""
    plan = graph.meta.get("memory_plan")
    order = plan.schedule if plan is not None else graph.toposort()
    lines = []
    for n in order:
        node = graph.node(n)
        if node.op in ("input", "parameter", "constant", "getitem"):
            continue
        params = [graph.node(i).get("name") for i in graph.inputs(n)
                  if graph.node(i).op == "parameter"]
        layer = layer_of(params[0]) if params else node.get("param") or ""
        what = node.op
        if node.op in ("dense", "dense_bwd"):
            what += f"[{node.get('act')}]"
            if node.op == "dense_bwd":
                what += " -> " + ",".join(node.get("outs"))
                if folded and n in folded:
                    what += " + SGD update folded into the dW GEMM"
        elif node.op == "update":
            what += f"[{node.get('opt')}]"
        lines.append(f"  {layer:<16} {what}")
    return lines


def summary(program) -> str:
    params = program.params
    by_layer: dict[str, list[str]] = {}
    for name in params:
        by_layer.setdefault(layer_of(name), []).append(name)
    rows = [f"graphc program: dtype {program.dtype.name}, backend {program.backend}, "
            f"optimizer {program.optimizer!r}" if program.optimizer else
            f"graphc program: dtype {program.dtype.name}, backend {program.backend}"]
    rows.append(f"{'layer':<16} {'parameters':<40} {'count':>10}")
    total = 0
    for layer, names in by_layer.items():
        count = sum(int(np.prod(params[n].shape)) for n in names)
        total += count
        shapes = ", ".join(f"{n.split('/')[-1]}{list(params[n].shape)}" for n in names)
        rows.append(f"{layer:<16} {shapes:<40} {count:>10,}")
    rows.append(f"{'total':<16} {'':<40} {total:>10,}")
    impl = program._impl
    if impl is not None:
        for name, e in impl.entries.items():
            rows.append(f"{name}: {len(e.graph)} nodes after optimisation, workspace "
                        f"{e.plan.peak_bytes(1, program.dtype.itemsize)} B at batch 1")
            rows += kernel_lines(e.graph, e.emitter.folded if e.emitter else None)
    else:
        rows.append("backend: reference interpreter (op by op, not fused)")
    return "\n".join(rows)
