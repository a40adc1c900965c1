"""Every kernel of ``graphc.kernels``: the Numba dispatchers each of its modules defines
(not the ones it imports), for tests that check a property of all of them."""

from __future__ import annotations

import importlib
import pkgutil

import graphc.kernels
from numba.core.registry import CPUDispatcher


def kernel_dispatchers() -> dict[str, CPUDispatcher]:
    """``{"graphc.kernels.<module>.<name>": dispatcher}``."""
    found = {}
    for info in pkgutil.iter_modules(graphc.kernels.__path__):
        mod = importlib.import_module(f"graphc.kernels.{info.name}")
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__:
                found[f"{mod.__name__}.{name}"] = obj
    return found
