"""``gc.compile`` and ``gc.function``: from symbolic tensors to runnable programs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from graphc.frontends.symbolic import as_tensor, check_names

from graphc.errors import GraphError
from graphc.ir.graph import Graph
from graphc.ir.value import Value
from graphc.optim import SGD, Optimizer, get_optimizer
from graphc.runtime.program import Function, Program


def compile(loss: Value | None = None, outputs: Mapping[str, Value] | None = None,  # noqa: A001
            optimizer: Optimizer | str | None = None, weight_decay: float = 0.0,
            clip_norm: float | None = None, dtype: str = "float32", seed: int = 0,
            backend: str = "compiled", check_passes: bool = False, verify: bool = False,
            check_numerics: bool | None = None) -> Program:
    """Build a training program (when ``loss`` is given) and/or an inference program.

    The optimizer defaults to ``SGD(lr=0.01)``.  ``weight_decay`` is L2 on weight
    matrices only (the gradient gains ``weight_decay * W``), never on biases.
    ``check_numerics`` (default: the environment variable ``GRAPHC_CHECK_NUMERICS=1``)
    generates a module that checks every kernel's outputs and raises ``NumericsError``
    at the first non-finite value, naming the op, the layer and the step.
    """
    outs: dict[str, Value] = {}
    for name, t in (outputs or {}).items():
        if name == "loss":
            raise GraphError("'loss' is reserved for the loss; name the output otherwise")
        outs[name] = as_tensor(t)
    if loss is not None:
        outs["loss"] = as_tensor(loss)
        if outs["loss"].shape != ():
            raise GraphError(f"the loss must be a scalar, got shape {outs['loss'].shape}; "
                             "reduce it with gc.mean or gc.sum")
    if not outs:
        raise GraphError("gc.compile needs a loss or at least one output")
    graph, _ = Graph.from_values(outs)
    check_names(graph)
    if loss is not None:
        optimizer = get_optimizer(optimizer) if optimizer is not None else SGD(lr=0.01)
    return Program(graph, loss="loss" if loss is not None else None, optimizer=optimizer,
                   weight_decay=weight_decay, clip_norm=clip_norm, dtype=dtype, seed=seed,
                   backend=backend, check_passes=check_passes, verify=verify,
                   check_numerics=check_numerics)


def function(inputs: Sequence[Value], outputs: Sequence[Value] | Value, dtype: str = "float32",
             seed: int = 0, backend: str = "compiled", check_passes: bool = False,
             check_numerics: bool | None = None) -> Function:
    """A compiled callable ``f(*arrays) -> [outputs]`` (Theano's ``function``)."""
    single = isinstance(outputs, Value)
    outs = [outputs] if single else list(outputs)
    names = []
    for t in inputs:
        if not isinstance(t, Value) or t.node.op != "input":
            raise GraphError(f"gc.function inputs must be gc.input tensors, got {t!r}")
        names.append(t.node.get("name"))
    graph, _ = Graph.from_values({f"out{i}": as_tensor(o) for i, o in enumerate(outs)})
    check_names(graph)
    return Function(graph, names, [f"out{i}" for i in range(len(outs))], dtype=dtype, seed=seed,
                    backend=backend, check_passes=check_passes, check_numerics=check_numerics)
