"""The protocol every peer implements, plus small helpers shared by the adapters."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


class Unsupported(Exception):
    """Raised by ``build`` when a framework cannot run a config; the suite records it as skipped."""


@runtime_checkable
class Peer(Protocol):
    """One framework's training step on one `Problem`.

    step():    forward + backward + SGD update on the problem's fixed batch (x, y); returns the
               loss of that step as a Python float, computed *before* the update. The first
               call after ``build`` returns the loss at the problem's initial weights.
    infer(x):  forward pass only on `x` (any batch size), returns the network output as NumPy
               (logits for "sce", sigmoid output for "sigmoid_mse"); must not train.

    Optional members, looked up with getattr by the suite:
    fit(epochs) -> float:   `epochs` passes over problem.X/Y batch by batch, in order;
                            returns the last loss.
    weights() -> list[(W, b)]: current parameters as NumPy (W (in, out)), for the agreement check.
    comparable: bool        False when the peer runs a different model (sklearn on xor), so
                            its loss is left out of the agreement check (default True).
    note: str               shown in reports (e.g. how a peer deviates from the protocol).
    """

    def step(self) -> float: ...

    def infer(self, x: np.ndarray) -> np.ndarray: ...


def check_problem_loss(loss: str) -> None:
    if loss not in ("sce", "sigmoid_mse"):
        raise Unsupported(f"loss {loss!r} not implemented by this adapter")


def module_available(module: str, hint: str) -> tuple[bool, str]:
    """(True, "") when `module` imports, else (False, "<error>; <install hint>")."""
    import importlib

    try:
        importlib.import_module(module)
    except Exception as err:  # a broken install is as unusable as a missing one
        return False, f"{type(err).__name__}: {err}; install with: {hint}"
    return True, ""
