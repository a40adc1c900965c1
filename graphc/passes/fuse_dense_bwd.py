"""Dense fusion (backward): a layer's gradient products -> one ``dense_bwd`` node.

Algorithm.  Autodiff of ``y = act(x @ W + b)`` emits, for the cotangent gy
of y::

    dz = act_grad(saved, gy[, slope])   # absent for linear: dz = gy
    db = sum_to(dz, ndim=1)             # if there is a bias
    dW = matmul(x, dz, ta=True)
    dx = matmul(dz, W, tb=True)         # absent when x needs no gradient
    da = prelu_da(z, gy)                # prelu only

This pass runs after :mod:`fuse_dense`, so each layer is one ``dense`` node
and is the anchor: ``saved`` is its output y (or, with ``save_z``, its
``getitem`` 1, z) as ``saves_output`` says, and x, W come from its inputs.

* With an activation, dz is the unique ``act_grad`` of the same act/alpha
  that reads ``saved``; gy is its second input.  dz must have no readers
  besides db/dW/dx (it disappears into the fused node).
* Linear layers have no act_grad, so dz = gy must be found from the
  products: the unique ``matmul(g, W, tb=True)`` reading this W (weights
  are not shared), else the unique ``matmul(x, g, ta=True)`` of the right
  shape -- preferring the one the W update consumes.  Ambiguity is refused.

Every product found is computed from exactly (x, W, dz), so the fused node
is equal to what it replaces even if a product was emitted for another
path; the search only decides which layer to attach it to.  The result is
``dense_bwd(x, W, saved, gy[, slope])`` with attrs act, alpha, from_y and
``outs`` = the products present, in the order ("dx", "dW", "db", "da"),
each read through a ``getitem``.  For linear layers ``saved`` is y and
``from_y`` is true (the derivative is 1; the kernel ignores saved).
"""

from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.ops.activation import saves_output
from graphc.passes.report import FusionRecord, describe, note, record_fusion

OUT_ORDER = ("dx", "dW", "db", "da")


def _getitem(g: Graph, t: int, index: int) -> int | None:
    for u in g.users(t):
        if g.node(u).op == "getitem" and g.node(u).get("index") == index:
            return u
    return None


def _is_mm(g: Graph, u: int, ta: bool, tb: bool) -> bool:
    node = g.node(u)
    return node.op == "matmul" and bool(node.get("ta")) == ta and bool(node.get("tb")) == tb


def _linear_cotangent(g: Graph, x: int, W: int, yshape: tuple) -> tuple[int | None, str]:
    """(gy, "") for a linear layer, or (None, reason) -- reason "" if there is no backward."""
    layers = [u for u in g.users(W) if g.node(u).op == "dense" and g.inputs(u)[1] == W]
    if len(layers) > 1:
        return None, (f"the weight is shared by {len(layers)} layers, so which products "
                      "belong to this one is ambiguous for a linear layer")
    by_w = list(dict.fromkeys(
        g.inputs(u)[0] for u in g.users(W)
        if _is_mm(g, u, False, True) and g.inputs(u)[1] == W and g.inputs(u)[0] != W
        and g.node(g.inputs(u)[0]).shape == yshape))
    if len(by_w) == 1:
        return by_w[0], ""
    if len(by_w) > 1:
        return None, (f"the weight is shared: {len(by_w)} products dz @ Wᵀ read it, so the "
                      "layer's own output gradient is ambiguous")
    by_x = {g.inputs(u)[1]: u for u in g.users(x)
            if _is_mm(g, u, True, False) and g.inputs(u)[0] == x
            and g.node(g.inputs(u)[1]).shape == yshape}
    wnode = g.node(W)
    upd = g.updates.get(wnode.get("name")) if wnode.op == "parameter" else None
    if upd is not None and len(by_x) > 1:
        grad = g.inputs(upd)[1]
        by_x = {k: v for k, v in by_x.items() if v == grad}
    if len(by_x) == 1:
        return next(iter(by_x)), ""
    if len(by_x) > 1:
        return None, (f"{len(by_x)} products xᵀ @ dz of this input have the layer's shape, so "
                      "the layer's own output gradient is ambiguous")
    return None, ""


def fuse_dense_bwd(g: Graph) -> Graph:
    g = g.copy()
    made = 0
    for d in g.toposort():
        if d not in g or g.node(d).op != "dense":
            continue
        node = g.node(d)
        act, alpha = node.get("act"), node.get("alpha")
        ins = g.inputs(d)
        x, W = ins[0], ins[1]
        slope = ins[-1] if act == "prelu" else None
        layer = node.name or f"%{d}"
        units = g.node(W).shape[1]
        y = _getitem(g, d, 0) if node.get("save_z") else d
        z = _getitem(g, d, 1) if node.get("save_z") else None
        from_y = True if act == "linear" else saves_output(act, alpha)
        saved = y if from_y else z
        result = f"dense_bwd[{act}]"

        def refuse(pattern: str, reason: str, nodes: tuple = (), layer: str = layer,
                   result: str = result, d: int = d) -> None:
            record_fusion(g, FusionRecord("fuse_dense_bwd", layer, pattern, result,
                                          (d, *nodes), None, reason))

        if saved is None:
            continue  # the saved value is unused: nothing differentiates through this layer
        if act == "linear":
            gy, why = _linear_cotangent(g, x, W, g.node(d).shape)
            if gy is None:
                if why:
                    refuse("matmul(dW)+matmul(dx)+sum_to(db)", why)
                continue
            dz, pattern = gy, []
        else:
            grads = [u for u in g.users(saved)
                     if g.node(u).op == "act_grad" and g.inputs(u)[0] == saved
                     and g.node(u).get("act") == act and g.node(u).get("alpha") == alpha
                     and bool(g.node(u).get("from_y")) == from_y
                     and (slope is None or g.inputs(u)[2:] == [slope])]
            if not grads:
                continue  # forward-only graph, or no gradient flows through this layer
            if len(grads) > 1:
                refuse("act_grad", f"{len(grads)} act_grad nodes read the saved value", tuple(grads))
                continue
            dz = grads[0]
            gy = g.inputs(dz)[1]
            pattern = ["act_grad"]

        found: dict[str, list[int]] = {o: [] for o in OUT_ORDER}
        for u in g.users(dz):
            un, uins = g.node(u), g.inputs(u)
            if un.op == "sum_to" and un.get("ndim") == 1 and un.shape == (units,):
                found["db"].append(u)
            elif _is_mm(g, u, True, False) and uins == [x, dz]:
                found["dW"].append(u)
            elif _is_mm(g, u, False, True) and uins == [dz, W]:
                found["dx"].append(u)
        if slope is not None and z is not None:
            found["da"] = [u for u in g.users(z)
                           if g.node(u).op == "prelu_da" and g.inputs(u) == [z, gy]]
        outs = tuple(o for o in OUT_ORDER if found[o])
        matched = [u for o in outs for u in found[o]]
        pattern = "+".join(pattern + [f"{g.node(found[o][0]).op}({o})" for o in outs]) or "-"
        if act != "linear":
            others = [u for u in g.users(dz) if u not in matched]
            is_out = dz in g.outputs.values() or dz in g.updates.values()
            if others or is_out:
                who = [describe(g, u) for u in others] + (["a graph output"] if is_out else [])
                refuse(pattern, f"dz = act_grad is also read by {', '.join(who)}", (dz, *matched))
                continue
        if not outs:
            continue
        inputs = [x, W, saved, gy] + ([slope] if slope is not None else [])
        upstream = g.ancestors_and_self(inputs)
        if any(u in upstream for u in matched):
            # E.g. a plain matmul(g, W) in a backward pass looks like a linear layer, and
            # the forward x @ Wᵀ then looks like its dx: fusing would make a cycle.
            refuse(pattern, "a product it would absorb is computed before the layer's "
                   "inputs (fusing would make a cycle)", tuple(matched))
            continue
        b = g.make("dense_bwd", inputs, name=layer, loc=node.loc, act=act, alpha=alpha,
                   from_y=from_y, outs=outs)
        for k, o in enumerate(outs):
            item = g.make("getitem", [b], index=k, loc=node.loc)
            for u in found[o]:
                g.replace_all_uses_with(u, item)
        made += 1
        record_fusion(g, FusionRecord("fuse_dense_bwd", layer, pattern,
                                      f"{result}({', '.join(outs)})", (dz, *matched), b))
    g.prune()
    if made:
        note(g, f"{made} fused dense backward{'s' * (made != 1)}")
    return g
