"""graphc's benchmark suite (protocol: shared/BENCHMARKS.md).

Importable with the repo root on ``sys.path`` (``graphc bench`` does ``import benchmarks``);
deliberately not installed by setup.cfg. Everything is imported lazily: importing this
package loads nothing (so ``python -m benchmarks`` can set thread variables before NumPy
loads), and torch/jax load only when a peer that needs them is built.

    import benchmarks
    records = benchmarks.run(["xor", "small"], quick=True, out_md="bench.md")
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CONFIGS": "benchmarks.configs",
    "Config": "benchmarks.configs",
    "Problem": "benchmarks.configs",
    "get_config": "benchmarks.configs",
    "make_problem": "benchmarks.configs",
    "PEERS": "benchmarks.peers",
    "PeerSpec": "benchmarks.peers",
    "register": "benchmarks.peers",
    "resolve": "benchmarks.peers",
    "AgreementError": "benchmarks.agreement",
    "run": "benchmarks.suite",
    "main": "benchmarks.suite",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # PEP 562 lazy attributes: the first access imports the defining module.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'benchmarks' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
