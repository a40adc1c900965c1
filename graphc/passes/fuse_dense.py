"""Dense fusion (forward): matmul + bias add + activation -> one ``dense`` node.

Algorithm.  For each ``matmul(x, W)`` without transpose flags (in topological
order), grow the group upward one consumer at a time, stopping at the first
consumer that cannot join:

1. the bias: the matmul's only reader is ``add(mm, b)`` or ``add(b, mm)``
   with ``b`` of shape ``(units,)``.  If the matmul output is read anywhere
   else (a second reader, a graph output), or the add's other operand is not
   a bias (a residual/skip connection, a scalar), the add is left alone;
2. the activation: the pre-activation z (the add, or the matmul if there is
   no bias) is read by exactly one activation node (any of
   ``ACTIVATIONS`` or ``prelu`` whose slope has shape ``(units,)``) and,
   when the activation's derivative needs z (``saves_output`` is false:
   softplus, prelu, leaky_relu with alpha <= 0, elu with alpha < 0), by that
   activation's own ``act_grad`` / ``prelu_da`` nodes.  Any other reader of
   z (a skip connection taking the pre-activation, an output) keeps the
   activation separate.  softmax/log_softmax are row reductions, not
   elementwise, so they are never fused into dense.

The group becomes ``dense(x, W[, b][, slope])`` with attrs act, alpha,
has_bias and save_z.  When the backward needs z, ``save_z`` makes the node a
tuple (y, z); ``getitem`` 0 replaces the activation's output and ``getitem``
1 replaces z for the backward nodes.  Every matmul candidate ends up in a
dense node (at worst ``dense[linear]`` without bias); each refusal to grow
is recorded with its reason.
"""

from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.ops.activation import ACTIVATIONS, saves_output
from graphc.passes.report import FusionRecord, describe, layer_name, note, record_fusion

ELEMENTWISE_ACTS = {a for a in ACTIVATIONS if a != "linear"} | {"prelu"}
ROW_ACTS = {"softmax", "log_softmax"}


def _readers(g: Graph, n: int) -> list[int]:
    """Every reader of ``n``, one entry per input slot (x*x reads twice)."""
    return [u for u in g.users(n) for i in g.inputs(u) if i == n]


def _is_output(g: Graph, n: int) -> bool:
    return n in g.outputs.values() or n in g.updates.values()


def _refuse(g: Graph, layer: str, pattern: str, result: str, nodes: tuple, reason: str) -> None:
    record_fusion(g, FusionRecord("fuse_dense", layer, pattern, result, nodes, None, reason))


def _act_backward_readers(g: Graph, z: int, act_node: int, act: str, alpha, slope) -> set[int]:
    """The backward nodes of this activation that read its input z."""
    out = set()
    for u in g.users(z):
        un, ins = g.node(u), g.inputs(u)
        if (un.op == "act_grad" and ins[0] == z and un.get("act") == act
                and un.get("alpha") == alpha and not un.get("from_y")
                and (act != "prelu" or (len(ins) == 3 and ins[2] == slope))):
            out.add(u)
        elif act == "prelu" and un.op == "prelu_da" and ins[0] == z:
            out.add(u)
    return out


def fuse_dense(g: Graph) -> Graph:
    g = g.copy()
    made = 0
    for mm in g.toposort():
        if mm not in g or g.node(mm).op != "matmul":
            continue
        mnode = g.node(mm)
        if mnode.get("ta") or mnode.get("tb"):
            continue  # backward products: fuse_dense_bwd's business
        x, W = g.inputs(mm)
        layer = layer_name(g, mm)
        wshape = g.node(W).shape
        if None in wshape:
            _refuse(g, layer, "matmul", "dense", (mm,),
                    f"weight shape {wshape} is not static (dense needs a fixed (in, units))")
            continue
        units = wshape[1]
        group, pattern = [mm], ["matmul"]
        inputs = [x, W]
        top = mm  # the node holding z = x @ W (+ b)
        has_bias = False

        # 1. bias
        readers = _readers(g, mm)
        adds = [u for u in readers if g.node(u).op == "add"]
        if len(readers) == 1 and adds and not _is_output(g, mm):
            a = adds[0]
            other = [i for i in g.inputs(a) if i != mm]
            bshape = g.node(other[0]).shape if other else None
            if other and bshape == (units,) and g.node(a).shape == mnode.shape:
                inputs.append(other[0])
                group.append(a)
                pattern.append("add")
                top, has_bias = a, True
            else:
                why = ("it adds the matmul output to itself" if not other else
                       f"the other operand has shape {bshape}, not the bias shape ({units},)"
                       + (" (a residual/skip connection)" if bshape == mnode.shape else ""))
                _refuse(g, layer, "matmul+add", "dense", (mm, a), why)
        elif adds:
            others = [describe(g, u) for u in readers if u != adds[0]]
            if _is_output(g, mm):
                others.append("a graph output")
            _refuse(g, layer, "matmul+add", "dense", (mm, adds[0]),
                    f"the matmul output is also read by {', '.join(others)}")

        # 2. activation
        act, alpha, slope, act_node = "linear", None, None, None
        save_z = False
        zr = _readers(g, top)
        acts = [u for u in zr if g.node(u).op in ELEMENTWISE_ACTS and g.inputs(u)[0] == top]
        rows = [u for u in zr if g.node(u).op in ROW_ACTS]
        for r in rows:
            _refuse(g, layer, f"{'+'.join(pattern)}+{g.node(r).op}", "dense", (*group, r),
                    f"{g.node(r).op} normalises over a whole row (a reduction), and dense fuses "
                    "only elementwise activations; it stays a separate op")
        if len(acts) == 1:
            cand = acts[0]
            cnode = g.node(cand)
            c_act, c_alpha = cnode.op, cnode.get("alpha")
            c_slope = g.inputs(cand)[1] if c_act == "prelu" else None
            allowed = {cand}
            if not saves_output(c_act, c_alpha):
                allowed |= _act_backward_readers(g, top, cand, c_act, c_alpha, c_slope)
            # z is kept only for a backward that reads it (not in a forward-only graph).
            needs_z = len(allowed) > 1
            others = [u for u in zr if u not in allowed]
            trial = f"{'+'.join(pattern)}+{c_act}"
            if c_slope is not None and (c_slope == top or g.node(c_slope).shape != (units,)):
                _refuse(g, layer, trial, f"dense[{c_act}]", (*group, cand),
                        f"the prelu slope has shape {g.node(c_slope).shape}, not ({units},)")
            elif others or _is_output(g, top):
                who = [describe(g, u) for u in dict.fromkeys(others)]
                if _is_output(g, top):
                    who.append("a graph output")
                _refuse(g, layer, trial, f"dense[{c_act}]", (*group, cand),
                        f"the pre-activation is also read by {', '.join(who)}, so {c_act} "
                        "stays a separate op")
            else:
                act, alpha, slope, act_node, save_z = c_act, c_alpha, c_slope, cand, needs_z
                group.append(cand)
                pattern.append(c_act)
                if slope is not None:
                    inputs.append(slope)
        elif len(acts) > 1:
            _refuse(g, layer, f"{'+'.join(pattern)}+activation", "dense", (*group, *acts),
                    f"the pre-activation feeds {len(acts)} activations; only one can be fused")
        else:
            # act(z + skip): the activation sees a sum, not the layer's own pre-activation.
            for r in dict.fromkeys(zr):
                if g.node(r).op in ("add", "sub", "mul") and r != mm:
                    later = [u for u in g.users(r) if g.node(u).op in ELEMENTWISE_ACTS]
                    if later:
                        a_op = g.node(later[0]).op
                        _refuse(g, layer, f"{'+'.join(pattern)}+{g.node(r).op}+{a_op}",
                                f"dense[{a_op}]", (*group, r, later[0]),
                                f"{a_op} is applied to {describe(g, r)} (the layer's output "
                                "combined with another value, e.g. a skip connection), not "
                                "to the layer's pre-activation")

        loc = mnode.loc
        d = g.make("dense", inputs, loc=loc, name=layer, act=act, alpha=alpha,
                   has_bias=has_bias, save_z=save_z)
        if save_z:
            y = g.make("getitem", [d], index=0, loc=loc)
            z = g.make("getitem", [d], index=1, loc=loc)
            g.replace_all_uses_with(act_node, y)
            g.replace_all_uses_with(top, z)
        else:
            g.replace_all_uses_with(act_node if act_node is not None else top, d)
        made += 1
        remark = "saves z for the backward" if save_z else ""
        record_fusion(g, FusionRecord("fuse_dense", layer, "+".join(pattern), f"dense[{act}]",
                                      tuple(group), d, remark))
    g.prune()
    if made:
        note(g, f"{made} dense layer{'s' * (made != 1)}")
    return g
