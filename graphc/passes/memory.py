"""Memory planning: a schedule, liveness over it, and buffer slots shared by lifetime.

This is an analysis, not a rewrite: :func:`plan_memory` returns a
:class:`MemoryPlan` that :func:`graphc.passes.optimize` stores as
``graph.meta["memory_plan"]``.  The code generator carves every slot out of
one workspace array per batch size, so a steady-state step allocates
nothing.

Algorithm.

1. *Schedule*: Kahn's topological sort with extra edges from every reader
   of a parameter to that parameter's ``update`` node: updates write the
   parameter in place, so they must run after its last read (e.g. the
   ``dense_bwd`` that still needs W for dx).  Among ready nodes, updates
   (each frees its gradient buffer) and getitems (free, and what updates
   wait for) go first, then the smallest node id (so the order is
   deterministic and close to program order).
2. *Buffers*: every node except input/parameter (fed or in the parameter
   arena), constant (literals in the generated code), update (no output) and
   tuple-valued fused nodes (their ``getitem`` nodes are the buffers).  A
   ``getitem`` is written when its tuple's producer runs, so its lifetime
   starts at the producer's step.  Scratch buffers are planned too: the dz
   of a ``dense_bwd`` with an activation (key ``(node, "dz")``), and any
   tuple element without a ``getitem`` reader (key ``(node, "item<k>")``);
   they live for their node's step only.
3. *Liveness*: a value lives from the step that writes it to the last step
   that reads it, both included (a node's inputs and outputs are live at
   the same time: no kernel computes in place); graph outputs live past the
   last step.
4. *Sizes*: a shape has at most one batch dimension (None), so a buffer's
   element count is ``a*N + b``; a slot's size is the max over its values.
5. *Slots*: greedy by size (as TFLite's arena planner): buffers in order of
   decreasing size, each into the first slot none of whose occupants it
   overlaps in time, else a new slot.  Batch-sized and fixed-size buffers
   get separate slots (a slot must fit its largest occupant at every batch
   size).  Two values whose lifetimes overlap never share a slot.
"""

from __future__ import annotations

import bisect
import heapq
from dataclasses import dataclass, field

from graphc.ir.graph import Graph
from graphc.ir.node import TUPLE, shape_str

NO_BUFFER = {"input", "parameter", "constant", "update"}
REF_BATCH = 256  # batch size the summary line reports
Size = tuple[int, int]  # elements = a * N + b


def elems(shape: tuple) -> Size:
    """(a, b) with element count a*N + b for batch size N."""
    if sum(d is None for d in shape) > 1:
        raise ValueError(f"shape {shape_str(shape)} has more than one batch dimension")
    prod = 1
    for d in shape:
        prod *= 1 if d is None else d
    return (prod, 0) if None in shape else (0, prod)


@dataclass
class MemoryPlan:
    schedule: list[int]  # every node id, in execution order
    slot_of: dict[int, int]  # value (node id) -> slot
    slot_sizes: list[list[Size]]  # per slot: the (a, b) sizes of the values it holds
    scratch_of: dict[tuple[int, str], int] = field(default_factory=dict)  # (node, what) -> slot
    live: dict = field(default_factory=dict)  # value or scratch key -> (first step, last step)
    size_of: dict = field(default_factory=dict)  # value or scratch key -> (a, b)

    @property
    def num_slots(self) -> int:
        return len(self.slot_sizes)

    def slot_elems(self, slot: int, n: int) -> int:
        """Elements slot ``slot`` needs at batch size ``n``."""
        return max((a * n + b for a, b in self.slot_sizes[slot]), default=0)

    def peak_bytes(self, n: int, itemsize: int) -> int:
        """Bytes of the workspace at batch size ``n``: the sum of every slot's size."""
        return sum(self.slot_elems(s, n) for s in range(self.num_slots)) * itemsize

    def total_bytes_unshared(self, n: int, itemsize: int) -> int:
        """Bytes if every buffer had its own memory (what sharing saves against)."""
        return sum(a * n + b for a, b in self.size_of.values()) * itemsize

    def live_bytes_max(self, n: int, itemsize: int) -> int:
        """Max over steps of the bytes live at once: a lower bound for any slot assignment."""
        events: dict[int, int] = {}
        for key, (lo, hi) in self.live.items():
            a, b = self.size_of[key]
            events[lo] = events.get(lo, 0) + a * n + b
            events[hi + 1] = events.get(hi + 1, 0) - (a * n + b)
        cur = best = 0
        for step in sorted(events):
            cur += events[step]
            best = max(best, cur)
        return best * itemsize

    def offsets(self, n: int, align: int = 16) -> tuple[list[int], int]:
        """Element offset of each slot in one workspace at batch ``n`` (aligned) and its length."""
        out, pos = [], 0
        for s in range(self.num_slots):
            out.append(pos)
            pos += -(-self.slot_elems(s, n) // align) * align
        return out, pos

    def to_text(self, n: int = REF_BATCH, itemsize: int = 4) -> str:
        def kib(b: int) -> str:
            return f"{b / 1024:.1f} KiB"

        return (f"{len(self.size_of)} buffers in {self.num_slots} slots; workspace at batch {n} "
                f"({itemsize}-byte floats): {kib(self.peak_bytes(n, itemsize))} (unshared "
                f"{kib(self.total_bytes_unshared(n, itemsize))}, live peak "
                f"{kib(self.live_bytes_max(n, itemsize))})")


def schedule(g: Graph) -> list[int]:
    """Topological order in which each update follows every other reader of its parameter."""
    preds: dict[int, set[int]] = {n: set(g.inputs(n)) for n in g.nodes}
    for uid in g.updates.values():
        param = g.inputs(uid)[0]
        preds[uid] |= {r for r in g.users(param) if r != uid}
    succs: dict[int, list[int]] = {n: [] for n in preds}
    for n, ps in preds.items():
        for p in ps:
            succs[p].append(n)
    # Updates run as soon as they may: each one ends its gradient's lifetime (otherwise
    # every weight gradient stays live until the end of the step).  getitem computes
    # nothing and may be what an update waits for, so it goes first too.
    def prio(n: int) -> tuple[int, int]:
        return (0 if g.node(n).op in ("update", "getitem") else 1, n)

    indeg = {n: len(ps) for n, ps in preds.items()}
    ready = [prio(n) for n, k in indeg.items() if k == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, n = heapq.heappop(ready)
        order.append(n)
        for s in succs[n]:
            indeg[s] -= 1
            if indeg[s] == 0:
                heapq.heappush(ready, prio(s))
    if len(order) != len(preds):
        raise ValueError("cannot schedule: the graph (with update ordering) has a cycle")
    return order


def _needs_buffer(g: Graph, n: int) -> bool:
    node = g.node(n)
    return node.op not in NO_BUFFER and node.dtype != TUPLE


def lifetimes(g: Graph, order: list[int]) -> tuple[dict, dict]:
    """(live, size_of) for every buffer and scratch buffer over the schedule ``order``."""
    pos = {n: i for i, n in enumerate(order)}
    end = len(order)
    outputs = set(g.outputs.values())
    live: dict = {}
    size: dict = {}
    for n in order:
        node = g.node(n)
        if _needs_buffer(g, n):
            start = pos[g.inputs(n)[0]] if node.op == "getitem" else pos[n]
            readers = [pos[u] for u in g.users(n)]
            last = max(readers, default=start)
            if n in outputs:
                last = end
            live[n] = (start, max(last, start))
            size[n] = elems(node.shape)
        if node.op == "dense_bwd" and node.get("act") != "linear":
            key = (n, "dz")
            live[key] = (pos[n], pos[n])
            size[key] = elems(g.node(g.inputs(n)[3]).shape)
        if node.dtype == TUPLE:
            have = {g.node(u).get("index") for u in g.users(n) if g.node(u).op == "getitem"}
            for k, shp in enumerate(node.shape):
                if k not in have:
                    key = (n, f"item{k}")
                    live[key] = (pos[n], pos[n])
                    size[key] = elems(shp)
    return live, size


def plan_memory(g: Graph) -> MemoryPlan:
    order = schedule(g)
    live, size = lifetimes(g, order)

    # Greedy by size: biggest buffers first, each into the first slot none of whose
    # occupants it overlaps in time, else a new slot.  Batch-sized buffers (a > 0) and
    # fixed-size ones (gradients of weights...) never share a slot: a slot's size is the
    # max over its occupants at every batch size, and mixing the two kinds wastes memory
    # at one end of the batch range or the other.
    slot_sizes: list[list[Size]] = []
    starts: list[list[int]] = []  # per slot: occupants' first steps, sorted
    spans: list[list[tuple[int, int]]] = []  # per slot: occupants' (first, last), same order
    kind: list[bool] = []  # per slot: holds batch-sized buffers
    assign: dict = {}

    def fits(s: int, lo: int, hi: int) -> int | None:
        """Insertion index if [lo, hi] overlaps no occupant of slot s (they are disjoint)."""
        i = bisect.bisect_left(starts[s], lo)
        if i > 0 and spans[s][i - 1][1] >= lo:
            return None
        if i < len(spans[s]) and spans[s][i][0] <= hi:
            return None
        return i

    keys = sorted(live, key=lambda k: (-size[k][0], -size[k][1], live[k][0], str(k)))
    for key in keys:
        lo, hi = live[key]
        batched = size[key][0] > 0
        for s in range(len(slot_sizes)):
            if kind[s] == batched and (at := fits(s, lo, hi)) is not None:
                break
        else:
            s, at = len(slot_sizes), 0
            slot_sizes.append([])
            starts.append([])
            spans.append([])
            kind.append(batched)
        starts[s].insert(at, lo)
        spans[s].insert(at, (lo, hi))
        if size[key] not in slot_sizes[s]:
            slot_sizes[s].append(size[key])
        assign[key] = s
    slot_of = {k: s for k, s in assign.items() if isinstance(k, int)}
    scratch = {k: s for k, s in assign.items() if not isinstance(k, int)}
    return MemoryPlan(order, slot_of, slot_sizes, scratch, live, size)
