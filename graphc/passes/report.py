"""What the pass pipeline did: one record per pass, fusion decisions, text tables.

Passes are plain ``Graph -> Graph`` functions, so they hand their notes to the
pipeline through the returned graph's ``meta`` (:func:`note`,
:func:`record_fusion`); :func:`graphc.passes.optimize` collects and clears
them after each pass.  Both helpers build new lists instead of appending,
because :meth:`Graph.copy` copies ``meta`` shallowly and a pass must never
change the caller's graph.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from graphc.ir.graph import Graph

_NOTES = "_pass_notes"
_FUSIONS = "_pass_fusions"


@dataclass(frozen=True)
class FusionRecord:
    """One fusion decision: ``fused`` is the new node's id, or None when refused."""

    pass_name: str
    layer: str  # "fc1", "loss", or "%12" when nothing better names the candidate
    pattern: str  # what was (or would have been) fused, e.g. "matmul+add+relu"
    result: str  # e.g. "dense[relu]"
    nodes: tuple[int, ...] = ()  # ids of the nodes replaced (or examined)
    fused: int | None = None
    reason: str = ""  # why it was refused, or a remark on an accepted fusion

    @property
    def accepted(self) -> bool:
        return self.fused is not None

    def to_text(self) -> str:
        if self.accepted:
            extra = f" ({self.reason})" if self.reason else ""
            return f"{self.layer}: {self.pattern} → {self.result}{extra}"
        return f"{self.layer}: {self.pattern} not fused into {self.result}: {self.reason}"


@dataclass
class GuardResult:
    """Numerical comparison of a graph before and after one pass (float64)."""

    compared: int  # number of arrays compared (outputs + update gradients)
    max_abs: float
    max_rel: float  # max |after - before| / max(|before|) per array
    max_ulps: float  # max |after - before| / ulp(max(|before|, |after|)) per element
    worst: str = ""  # which output/gradient had the largest relative error


@dataclass
class PassRecord:
    name: str
    seconds: float
    nodes_before: int
    nodes_after: int
    changes: str
    fusions: list[FusionRecord] = field(default_factory=list)
    guard: GuardResult | None = None
    dump: str | None = None  # the graph as text after this pass, when print_after asked


@dataclass
class PassReport:
    passes: list[PassRecord] = field(default_factory=list)

    @property
    def fusions(self) -> list[FusionRecord]:
        return [f for p in self.passes for f in p.fusions]

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.passes)

    def record(self, name: str) -> PassRecord:
        for p in self.passes:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_text(self) -> str:
        """The pass table: one row per pass, as the CLI's ``--passes`` prints it."""
        rows = [("pass", "ms", "nodes", "guard", "changes")]
        for p in self.passes:
            nodes = (f"{p.nodes_before}" if p.nodes_before == p.nodes_after
                     else f"{p.nodes_before} → {p.nodes_after}")
            guard = "" if p.guard is None else f"{p.guard.max_rel:.1e}"
            rows.append((p.name, f"{p.seconds * 1e3:.1f}", nodes, guard, p.changes or "-"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = []
        for i, r in enumerate(rows):
            cells = [r[0].ljust(widths[0]), r[1].rjust(widths[1]), r[2].rjust(widths[2]),
                     r[3].rjust(widths[3]), r[4]]
            lines.append("  ".join(cells).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths) + "  " + "-" * 7)
        lines.append(f"total {self.seconds * 1e3:.1f} ms")
        return "\n".join(lines) + "\n"

    def fusion_text(self) -> str:
        """Every fusion decision, accepted ones first, as ``--fusion-report`` prints it."""
        done = [f for f in self.fusions if f.accepted]
        refused = [f for f in self.fusions if not f.accepted]
        out = [f"fused ({len(done)}):"]
        out += [f"  {f.to_text()}" for f in done] or ["  (nothing)"]
        out.append(f"not fused ({len(refused)}):")
        out += [f"  {f.to_text()}" for f in refused] or ["  (nothing)"]
        return "\n".join(out) + "\n"

    def __str__(self) -> str:
        return self.to_text()


# --- helpers passes use to talk to the pipeline -------------------------------------------

def note(g: Graph, text: str) -> None:
    """Add a short "what changed" remark for the pass that is running."""
    g.meta[_NOTES] = [*g.meta.get(_NOTES, []), text]


def record_fusion(g: Graph, rec: FusionRecord) -> None:
    g.meta[_FUSIONS] = [*g.meta.get(_FUSIONS, []), rec]


def take_notes(g: Graph) -> tuple[list[str], list[FusionRecord]]:
    """Remove and return what the last pass recorded (called by the pipeline)."""
    return g.meta.pop(_NOTES, []), g.meta.pop(_FUSIONS, [])


def layer_name(g: Graph, nid: int) -> str:
    """A human name for the layer around node ``nid``: its weight's prefix ("fc1")."""
    for i in g.inputs(nid):
        node = g.node(i)
        if node.op == "parameter":
            name = node.get("name") or ""
            return name.rsplit("/", 1)[0] if "/" in name else name
    return f"%{nid}"


def describe(g: Graph, nid: int) -> str:
    """A node as refusal messages name it: its op plus the user's line or its name.

    Internal ids mean nothing to a reader (the printers renumber), so the
    user's ``file:line`` is preferred.
    """
    node = g.node(nid)
    if node.op in ("parameter", "input"):
        return f"{node.op} {node.get('name')!r}"
    if node.loc:
        return f"{node.op} at {os.path.basename(node.loc)}"
    return f"{node.op} %{nid}"
