"""Loss fusion: a loss and its gradient share one pass over the logits.

``softmax_cross_entropy(z, y)`` and ``sce_grad(z, y, g)`` both compute
softmax(z).  They become ``sce_fused(z, y)`` -- a tuple (loss, p) -- and
``sce_bwd(p, y, g)``, which reuses the saved probabilities p.  Likewise
``binary_cross_entropy(z, t)`` and ``loss_grad(z, t, g, kind=bce, wrt=pred)``
become ``bce_fused(z, t)`` -- (loss, sigmoid z) -- and ``bce_bwd(s, t, g)``.

A loss with no matching gradient node (a forward-only graph) is left as it
is: fusing would only add the cost of storing p.  Several gradient nodes (one
per cotangent) may share one fused forward.
"""

from __future__ import annotations

from graphc.ir.graph import Graph
from graphc.passes.report import FusionRecord, note, record_fusion

# loss op -> (fused forward op, backward op, gradient op, required gradient attrs)
_RULES = {
    "softmax_cross_entropy": ("sce_fused", "sce_bwd", "sce_grad", {}),
    "binary_cross_entropy": ("bce_fused", "bce_bwd", "loss_grad",
                             {"kind": "binary_cross_entropy", "wrt": "pred"}),
}
_SHORT = {"softmax_cross_entropy": "sce", "binary_cross_entropy": "bce"}


def fuse_loss(g: Graph) -> Graph:
    g = g.copy()
    fused = 0
    for n in g.toposort():
        node = g.node(n)
        if node.op not in _RULES:
            continue
        fwd_op, bwd_op, grad_op, want = _RULES[node.op]
        z, t = g.inputs(n)
        name = node.name or _loss_label(g, n)
        grads = [u for u in g.users(z)
                 if g.node(u).op == grad_op and g.inputs(u)[:2] == [z, t]
                 and all(g.node(u).get(k) == v for k, v in want.items())]
        pattern = f"{node.op}+{grad_op}"
        result = f"{fwd_op}+{bwd_op}"
        if not grads:
            record_fusion(g, FusionRecord(
                "fuse_loss", name, pattern, result, (n,), None,
                f"no {grad_op} of the same logits and targets in this graph (forward only), "
                "so there is no backward to share the saved probabilities with"))
            continue
        f = g.make(fwd_op, [z, t], loc=node.loc)
        loss = g.make("getitem", [f], index=0, loc=node.loc)
        saved = g.make("getitem", [f], index=1, loc=node.loc)
        g.replace_all_uses_with(n, loss)
        for u in grads:
            gout = g.inputs(u)[2]
            g.replace_all_uses_with(u, g.make(bwd_op, [saved, t, gout], loc=node.loc))
        fused += 1
        kind = "probabilities" if fwd_op == "sce_fused" else "sigmoid"
        record_fusion(g, FusionRecord("fuse_loss", name, pattern, result, (n, *grads), f,
                                      f"backward reuses the saved {kind}"))
    g.prune()
    if fused:
        note(g, f"fused {fused} loss{'es' * (fused != 1)} with {'their' if fused > 1 else 'its'}"
                " gradient")
    return g


def _loss_label(g: Graph, n: int) -> str:
    for name, out in g.outputs.items():
        if out == n:
            return name
    return _SHORT[g.node(n).op]
