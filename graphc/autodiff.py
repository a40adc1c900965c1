"""Reverse-mode automatic differentiation, graph to graph.

Algorithm: walk the nodes between the target and the requested variables in
reverse topological order; each node's incoming cotangents (one per path) are
summed, then the op's VJP adds the nodes that push the cotangent on to its
inputs.  The result is ordinary graph nodes, so the backward pass goes through
the same passes (CSE, fusion, memory planning) as the forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real

from graphc.errors import GradError, GraphError
from graphc.ir.graph import Graph
from graphc.ir.node import FLOAT, shape_str
from graphc.ops import get_op


def gradients(g: Graph, target: int, wrt: Sequence[int], seed: int | None = None) -> list[int]:
    """Add d target / d x for each x in ``wrt`` to ``g``; returns their node ids.

    ``target`` must be a scalar unless a ``seed`` cotangent node is given.  A
    variable the target does not depend on gets a ``zeros_like`` node.
    """
    tnode = g.node(target)
    if seed is None:
        if tnode.shape != ():
            raise GradError(f"gradients need a scalar target; {tnode.op} has shape "
                            f"{shape_str(tnode.shape)} (reduce it with gc.sum or gc.mean)")
        seed = g.make("constant", value=1.0, shape=())
    if tnode.dtype != FLOAT:
        raise GradError(f"cannot differentiate the integer tensor {tnode.op}")
    for x in wrt:
        xnode = g.node(x)
        if xnode.dtype != FLOAT:
            label = f" {xnode.name!r}" if xnode.name else ""
            raise GradError(f"no gradient w.r.t. the {xnode.dtype} tensor {xnode.op}{label} "
                            f"{shape_str(xnode.shape)}: only float tensors have gradients")

    # Only nodes on a path from some variable to the target carry cotangents.
    upstream = g.ancestors_and_self([target])
    relevant = {n for n in upstream if n in set(wrt)}
    for n in g.toposort():
        if n in upstream and any(i in relevant for i in g.inputs(n)):
            relevant.add(n)

    cotangents: dict[int, list[int]] = {target: [seed]}
    for n in reversed(g.toposort()):
        if n not in cotangents:
            continue
        ins = g.inputs(n)
        wants = [i in relevant and g.node(i).dtype == FLOAT for i in ins]
        if not any(wants):
            continue
        gsum = _sum(g, cotangents[n])
        cotangents[n] = [gsum]
        node = g.node(n)
        try:
            in_grads = get_op(node.op).vjp(g, n, ins, gsum, wants)
        except GradError as e:
            raise GradError(f"{e} (node {node.op}{' at ' + node.loc if node.loc else ''})") from None
        for i, gi, want in zip(ins, in_grads, wants, strict=True):
            if want and gi is not None:
                cotangents.setdefault(i, []).append(gi)

    out = []
    for x in wrt:
        if x in cotangents:
            out.append(_sum(g, cotangents[x]))
        else:
            out.append(g.make("zeros_like", [x]))
    return out


def _sum(g: Graph, terms: list[int]) -> int:
    acc = terms[0]
    for t in terms[1:]:
        acc = g.make("add", [acc, t])
    return acc


def build_training(g: Graph, loss: int, optimizer, weight_decay: float = 0.0,
                   clip_norm: float | None = None) -> Graph:
    """A copy of ``g`` with gradients of ``loss`` and one ``update`` node per parameter.

    Weight decay (``weight_decay`` L2, or the optimizer's decoupled decay) applies
    to weight matrices only -- parameters of two or more dimensions -- never to
    biases or PReLU slopes.  Gradients are clipped by their global norm first when
    ``clip_norm`` is set, as torch.nn.utils.clip_grad_norm_ does before a step.
    """
    if not (isinstance(weight_decay, Real) and weight_decay >= 0 and math.isfinite(weight_decay)):
        raise GraphError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if clip_norm is not None and not (isinstance(clip_norm, Real) and clip_norm > 0
                                      and math.isfinite(clip_norm)):
        # 0 would silently turn clipping off and a negative norm reverse every gradient.
        raise GraphError(f"clip_norm must be a positive finite number or None, got {clip_norm!r}")
    t = g.copy()
    params = t.by_name("parameter")
    names = sorted(params)
    grads = gradients(t, loss, [params[n] for n in names])
    scale = t.make("clip_scale", grads, max_norm=float(clip_norm)) if clip_norm else None
    base = optimizer.update_attrs()
    decoupled = bool(base.get("decoupled"))
    for name, gid in zip(names, grads, strict=True):
        pid = params[name]
        is_weight = t.node(pid).ndim >= 2
        clip = scale
        if decoupled and weight_decay and is_weight:
            # AdamW's update holds its own (decoupled) decay, so the L2 term of
            # gc.compile(weight_decay=...) joins the gradient here, after clipping,
            # where the other optimizers add it inside their update.
            if clip is not None:
                gid, clip = t.make("mul", [gid, clip]), None
            gid = t.make("add", [gid, t.make("scale", [pid], factor=float(weight_decay))])
        if decoupled:
            wd = optimizer.decoupled_decay() if is_weight else 0.0
        else:
            wd = weight_decay if is_weight else 0.0
        ins = [pid, gid] + ([clip] if clip is not None else [])
        t.updates[name] = t.make("update", ins, param=name, wd=float(wd), **base)
    t.outputs.setdefault("loss", loss)
    return t
