"""Graph printers: text (one line per node, like a jaxpr), Graphviz DOT, and JSON.

JSON is networkx's node-link format, so ``networkx.node_link_graph`` reads it
back; :func:`from_json` rebuilds a :class:`Graph` from it (model files use it).
Node ids are renumbered in topological order so output is stable.
"""

from __future__ import annotations

import json

import networkx as nx

from graphc.ir.graph import Graph
from graphc.ir.node import FLOAT, INT, NONE, TUPLE, Node
from graphc.ops import get_op

_DT = {FLOAT: "f", INT: "i64", NONE: "()", TUPLE: "tuple"}


def _type(node: Node) -> str:
    if node.dtype == TUPLE:
        return "(" + ", ".join(_shape(s, FLOAT) for s in node.shape) + ")"
    return _shape(node.shape, node.dtype)


def _shape(shape, dtype) -> str:
    if dtype == NONE:
        return "()"
    return f"{_DT.get(dtype, dtype)}[" + ",".join("N" if d is None else str(d) for d in shape) + "]"


def _fmt(v) -> str:
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, tuple) and len(v) > 6:
        return f"<{len(v)} values>"
    return repr(v) if isinstance(v, str) else str(v)


def numbering(g: Graph) -> dict[int, int]:
    return {n: i for i, n in enumerate(g.toposort())}


def to_text(g: Graph) -> str:
    num = numbering(g)
    lines = []
    for n in g.toposort():
        node = g.node(n)
        args = ", ".join(f"%{num[i]}" for i in g.inputs(n))
        defaults = get_op(node.op).defaults
        attrs = ", ".join(f"{k}={_fmt(v)}" for k, v in node.attrs
                          if k not in ("shape", "dtype") and v is not None
                          and not (k in defaults and defaults[k] == v))
        inner = ", ".join(s for s in (args, attrs) if s)
        lines.append(f"  %{num[n]}: {_type(node)} = {node.op}({inner})")
    for name, n in g.outputs.items():
        lines.append(f"  output {name} = %{num[n]}")
    for name, n in sorted(g.updates.items()):
        lines.append(f"  update {name} <- %{num[n]}")
    return "graph {\n" + "\n".join(lines) + "\n}\n"


def to_dot(g: Graph, title: str = "graphc") -> str:
    num = numbering(g)
    out = [f'digraph "{_esc(title)}" {{', "  rankdir=TB;", '  node [shape=box, fontname="monospace"];']
    colors = {"source": "lightgrey", "fused": "lightblue", "update": "lightyellow",
              "loss": "mistyrose"}
    for n in g.toposort():
        node = g.node(n)
        label = f"%{num[n]} {node.op}"
        if node.get("name"):
            label += f" {_esc(node.get('name'))}"
        elif node.get("act"):
            label += f" {node.get('act')}"
        label += f"\\n{_type(node)}"
        color = colors.get(get_op(node.op).fusion_kind, "white")
        out.append(f'  n{num[n]} [label="{label}", style=filled, fillcolor="{color}"];')
    for n in g.toposort():
        for slot, i in enumerate(g.inputs(n)):
            out.append(f'  n{num[i]} -> n{num[n]} [label="{slot}"];')
    for name, n in g.outputs.items():
        out.append(f'  out_{_ident(name)} [label="{_esc(name)}", shape=ellipse];')
        out.append(f"  n{num[n]} -> out_{_ident(name)};")
    out.append("}")
    return "\n".join(out) + "\n"


def _esc(s: str) -> str:
    """A user's name inside a quoted DOT label."""
    return str(s).replace("\\", "\\\\").replace('"', '\\"')


def _ident(s: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in s)


def to_json_data(g: Graph) -> dict:
    num = numbering(g)
    h = nx.MultiDiGraph()
    for n in g.toposort():
        node = g.node(n)
        shape = [list(s) for s in node.shape] if node.is_tuple else list(node.shape)
        h.add_node(num[n], op=node.op, attrs={k: _jsonable(v) for k, v in node.attrs},
                   shape=shape, dtype=node.dtype, name=node.name, loc=node.loc)
    for n in g.toposort():
        for slot, i in enumerate(g.inputs(n)):
            h.add_edge(num[i], num[n], key=slot)
    h.graph["outputs"] = {k: num[v] for k, v in g.outputs.items()}
    # JSON dumps sort keys, so the order of the outputs is kept separately.
    h.graph["output_order"] = list(g.outputs)
    h.graph["updates"] = {k: num[v] for k, v in sorted(g.updates.items())}
    return nx.node_link_data(h, edges="edges")


def to_json(g: Graph) -> str:
    return json.dumps(to_json_data(g), indent=1, sort_keys=True)


def _jsonable(v):
    if isinstance(v, tuple):
        return [_jsonable(x) for x in v]
    return v


def _tuplify(v):
    if isinstance(v, list):
        return tuple(_tuplify(x) for x in v)
    return v


def from_json(data: dict | str) -> Graph:
    if isinstance(data, str):
        data = json.loads(data)
    h = nx.node_link_graph(data, directed=True, multigraph=True, edges="edges")
    g = Graph()
    ids: dict[int, int] = {}
    for n in nx.lexicographical_topological_sort(h):
        a = h.nodes[n]
        shape = _tuplify(a["shape"])
        node = Node.make(a["op"], {k: _tuplify(v) for k, v in a["attrs"].items()}, shape,
                         a["dtype"], name=a.get("name"), loc=a.get("loc"))
        ins = [src for src, _, _ in sorted(h.in_edges(n, keys=True), key=lambda e: e[2])]
        ids[n] = g.add(node, [ids[i] for i in ins])
    outputs = h.graph.get("outputs", {})
    order = [k for k in h.graph.get("output_order", []) if k in outputs]
    g.outputs = {k: ids[outputs[k]] for k in [*order, *(k for k in outputs if k not in order)]}
    g.updates = {k: ids[v] for k, v in h.graph.get("updates", {}).items()}
    return g
