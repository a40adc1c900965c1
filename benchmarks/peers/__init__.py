"""Peer adapters and the registry that names them.

A peer module (one per framework) exposes::

    available() -> tuple[bool, str]   # (usable?, why not / pip install hint)
    build(problem: Problem) -> Peer

and a `Peer` (see `base.Peer`) has ``step() -> float``, ``infer(x) -> ndarray`` and
optionally ``fit(epochs)`` and ``weights()``.

Registry: `PEERS` maps a framework name to the dotted path of its module, imported only
when that framework is asked for (so a missing torch never breaks ``import benchmarks``).
The graphc adapters are listed already; until their modules exist they are reported as
skipped, and adding another framework is one line here or one `register()` call.

Writing an adapter (e.g. ``graphc_step.py``): copy ``numpy_hand.py``'s shape.
- ``available()``: try the import, return ``(False, "why; install hint")`` on failure.
- ``build(problem)``: build the model from ``problem.weights`` ((W (in, out), b) per layer,
  relu hidden layers, ``problem.config.loss`` "sce" or "sigmoid_mse"), plain SGD with
  ``problem.lr``; keep ``problem.x``/``problem.y`` ready so ``step()`` does no conversion;
  raise ``Unsupported(reason)`` for a config it cannot run (recorded as skipped).
- ``step()`` returns the loss *before* the update as a Python float; ``fit(epochs)`` walks
  ``problem.batches()`` in order; ``weights()`` lets the agreement check compare the update.
- ``skip_metrics = {"step"}`` on the peer object keeps a metric out of the timings (e.g. a
  fit-only adapter); ``note`` is printed in the report.
- Module-level ``COMPILES = True`` and ``cache_env(dir) -> {"GRAPHC_CACHE_DIR": dir}`` make
  ``--compile-times`` measure cold and warm compilation in fresh processes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from benchmarks.peers.base import Peer, Unsupported

__all__ = ["PEERS", "Peer", "PeerSpec", "Unsupported", "register", "resolve", "default_frameworks"]

PEERS: dict[str, str] = {
    # graphc itself (adapters written with the compiler; skipped while absent)
    "graphc": "benchmarks.peers.graphc_step",
    "graphc_fit": "benchmarks.peers.graphc_fit",
    "graphc_reference": "benchmarks.peers.graphc_reference",
    # peers, BENCHMARKS.md
    "torch_eager": "benchmarks.peers.torch_eager",
    "torch_compile": "benchmarks.peers.torch_compile",
    "jax_jit": "benchmarks.peers.jax_jit",
    "autograd": "benchmarks.peers.autograd_peer",
    "numpy_hand": "benchmarks.peers.numpy_hand",
    "sklearn": "benchmarks.peers.sklearn_peer",
}


@dataclass(frozen=True)
class PeerSpec:
    """A resolved framework: its name, availability probe and builder."""

    name: str
    available: Callable[[], tuple[bool, str]]
    build: Callable[..., Peer]
    module: ModuleType | None = None

    def attr(self, name: str, default: Any = None) -> Any:
        """An optional module-level hook (e.g. ``cache_env``), or `default`."""
        return getattr(self.module, name, default) if self.module is not None else default


def register(name: str, module_path: str) -> None:
    """Add (or replace) a framework: ``register("graphc", "benchmarks.peers.graphc_step")``."""
    PEERS[name] = module_path


def _missing(name: str, module_path: str, err: ImportError) -> PeerSpec:
    if isinstance(err, ModuleNotFoundError) and err.name == module_path:
        path = module_path.replace(".", "/") + ".py"
        reason = f"adapter {path} not written yet"
    else:
        reason = f"adapter {module_path} not importable: {type(err).__name__}: {err}"

    def available() -> tuple[bool, str]:
        return False, reason

    def build(problem: Any, **_: Any) -> Peer:
        raise RuntimeError(reason)

    return PeerSpec(name, available, build, None)


def resolve(spec: str | PeerSpec | ModuleType, name: str | None = None) -> PeerSpec:
    """Turn a registry name, a dotted module path, a module or a PeerSpec into a PeerSpec.

    A module that cannot be imported yields a spec whose ``available()`` is False with the
    import error as the reason: frameworks are reported skipped, never dropped silently.
    """
    if isinstance(spec, PeerSpec):
        return spec
    if isinstance(spec, ModuleType):
        return PeerSpec(name or spec.__name__.rsplit(".", 1)[-1], spec.available, spec.build, spec)
    module_path = PEERS.get(spec, spec)
    label = name or spec
    if module_path not in PEERS.values() and "." not in module_path:
        known = ", ".join(PEERS)
        raise KeyError(f"unknown framework {spec!r}; registered: {known}")
    try:
        module = importlib.import_module(module_path)
    except ImportError as err:
        # Only the adapter's own absence (or its framework's) is a skip; other errors raise.
        return _missing(label, module_path, err)
    return PeerSpec(label, module.available, module.build, module)


def default_frameworks() -> list[str]:
    """Every registered framework, graphc first (it is the baseline once it exists)."""
    return list(PEERS)
