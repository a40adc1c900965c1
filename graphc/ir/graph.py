"""The Graph: a networkx multigraph of frozen nodes with ordered inputs.

Passes and the autodiff talk to this class only (``add``, ``make``,
``replace_all_uses_with``, ``erase``, ``toposort``); none of them reaches into
networkx.  Edges run producer -> consumer and carry the consumer's input slot as
the edge key, so ``x * x`` (two edges between the same pair) is representable.

Besides its nodes a graph has named ``outputs`` (name -> node id) and
``updates`` (parameter or state name -> node id of an in-place update) that
together say what must survive optimisation.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

import networkx as nx

from graphc.ir.node import Node
from graphc.ir.value import Value


class Graph:
    def __init__(self) -> None:
        self._g = nx.MultiDiGraph()
        self._ids = itertools.count()
        self.outputs: dict[str, int] = {}
        self.updates: dict[str, int] = {}
        self.meta: dict = {}

    # --- construction -------------------------------------------------------------
    def add(self, node: Node, inputs: Sequence[int] = ()) -> int:
        nid = next(self._ids)
        self._g.add_node(nid, node=node)
        for slot, src in enumerate(inputs):
            if src not in self._g:
                raise KeyError(f"input {src} of new {node.op} node is not in the graph")
            self._g.add_edge(src, nid, key=slot)
        return nid

    def make(self, op: str, inputs: Sequence[int] = (), name: str | None = None,
             loc: str | None = None, **attrs) -> int:
        """Add an op node, inferring its shape and dtype from the op's rule."""
        from graphc.ops import build_node

        node = build_node(op, [self.node(i) for i in inputs], attrs, name=name, loc=loc)
        return self.add(node, inputs)

    @classmethod
    def from_values(cls, outputs: Mapping[str, Value]) -> tuple[Graph, dict[int, int]]:
        """Trace everything reachable from ``outputs``.

        Returns the graph and a map from ``id(value)`` to node id, so callers
        can find the nodes of values they hold.
        """
        g = cls()
        memo: dict[int, int] = {}
        for out in outputs.values():
            # Iterative post-order: deep nets must not hit Python's recursion limit.
            stack: list[tuple[Value, bool]] = [(out, False)]
            while stack:
                v, ready = stack.pop()
                if id(v) in memo:
                    continue
                if ready:
                    memo[id(v)] = g.add(v.node, [memo[id(i)] for i in v.inputs])
                else:
                    stack.append((v, True))
                    stack.extend((i, False) for i in reversed(v.inputs) if id(i) not in memo)
        for name, out in outputs.items():
            g.outputs[name] = memo[id(out)]
        return g, memo

    def to_values(self, ids: Sequence[int], known: Mapping[int, Value] | None = None,
                  cls: type[Value] = Value) -> list[Value]:
        """Rebuild values for ``ids``, reusing ``known`` values (node id -> Value)."""
        made: dict[int, Value] = dict(known or {})
        needed = self.ancestors_and_self(ids)
        for n in self.toposort():
            if n in needed and n not in made:
                made[n] = cls(self.node(n), tuple(made[i] for i in self.inputs(n)))
        return [made[i] for i in ids]

    def copy(self) -> Graph:
        g = Graph.__new__(Graph)
        g._g = self._g.copy()
        # Both graphs must keep handing out fresh ids that never collide: the copy
        # shares the original's counter (two counters would both restart at max + 1).
        g._ids = self._ids
        g.outputs = dict(self.outputs)
        g.updates = dict(self.updates)
        g.meta = dict(self.meta)
        return g

    # --- queries --------------------------------------------------------------------
    def node(self, nid: int) -> Node:
        return self._g.nodes[nid]["node"]

    def __contains__(self, nid: int) -> bool:
        return nid in self._g

    def __len__(self) -> int:
        return self._g.number_of_nodes()

    @property
    def nodes(self) -> list[int]:
        return list(self._g.nodes)

    def inputs(self, nid: int) -> list[int]:
        edges = sorted(self._g.in_edges(nid, keys=True), key=lambda e: e[2])
        return [src for src, _, _ in edges]

    def users(self, nid: int) -> list[int]:
        """Distinct consumers of ``nid`` in deterministic order."""
        return sorted(set(self._g.successors(nid)))

    def uses(self, nid: int) -> int:
        """Number of input slots plus graph outputs/updates that read ``nid``."""
        n = self._g.out_degree(nid)
        n += sum(1 for v in self.outputs.values() if v == nid)
        n += sum(1 for v in self.updates.values() if v == nid)
        return n

    def roots(self) -> list[int]:
        return list(dict.fromkeys([*self.outputs.values(), *self.updates.values()]))

    def toposort(self) -> list[int]:
        # Lexicographic order keeps printing and codegen deterministic.
        return list(nx.lexicographical_topological_sort(self._g))

    def ancestors_and_self(self, ids: Iterable[int]) -> set[int]:
        # One backward walk from all ids at once: a walk per id (nx.ancestors) costs
        # O(roots x nodes) on a training graph, where every update is a root.
        out: set[int] = set(ids)
        stack = list(out)
        pred = self._g.pred
        while stack:
            for p in pred[stack.pop()]:
                if p not in out:
                    out.add(p)
                    stack.append(p)
        return out

    def find(self, op: str) -> list[int]:
        return [n for n in self.toposort() if self.node(n).op == op]

    def by_name(self, op: str) -> dict[str, int]:
        """Map the ``name`` attribute of every ``op`` node (inputs, parameters) to its id."""
        return {self.node(n).get("name"): n for n in self.toposort() if self.node(n).op == op}

    def is_acyclic(self) -> bool:
        return nx.is_directed_acyclic_graph(self._g)

    # --- mutation -------------------------------------------------------------------
    def set_node(self, nid: int, node: Node) -> None:
        self._g.nodes[nid]["node"] = node

    def set_inputs(self, nid: int, inputs: Sequence[int]) -> None:
        self._g.remove_edges_from(list(self._g.in_edges(nid, keys=True)))
        for slot, src in enumerate(inputs):
            self._g.add_edge(src, nid, key=slot)

    def replace_all_uses_with(self, old: int, new: int) -> None:
        if old == new:
            return
        for _, dst, slot in list(self._g.out_edges(old, keys=True)):
            self._g.remove_edge(old, dst, key=slot)
            self._g.add_edge(new, dst, key=slot)
        for table in (self.outputs, self.updates):
            for k, v in table.items():
                if v == old:
                    table[k] = new

    def erase(self, nid: int) -> None:
        if self._g.out_degree(nid):
            raise ValueError(f"cannot erase node {nid} ({self.node(nid).op}): it still has users")
        if nid in self.outputs.values() or nid in self.updates.values():
            raise ValueError(f"cannot erase node {nid}: it is a graph output")
        self._g.remove_node(nid)

    def prune(self) -> int:
        """Remove every node not needed by an output or update; returns how many."""
        live = self.ancestors_and_self(self.roots())
        dead = [n for n in self._g.nodes if n not in live]
        self._g.remove_nodes_from(dead)
        return len(dead)

    def networkx(self) -> nx.MultiDiGraph:
        """A copy of the underlying networkx graph (for printers and algorithms)."""
        return self._g.copy()
