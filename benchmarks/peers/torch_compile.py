"""torch.compile of the whole training step.

The step is written functionally (torch.func.grad_and_value over functional_call, then an
in-place SGD update) so that it compiles as one graph with ``fullgraph=True``: the usual
``loss.backward(); opt.step()`` inside a compiled function graph-breaks at ``backward`` and
ran 5x slower than eager on `small` here. Inference compiles the model separately.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.configs import Problem
from benchmarks.peers import _torch_common as tc
from benchmarks.peers.base import Unsupported, module_available

COMPILES = True  # the suite may measure cold/warm compile time in fresh processes


def available() -> tuple[bool, str]:
    ok, hint = module_available("torch", tc.INSTALL_HINT)
    if not ok:
        return ok, hint
    import shutil

    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return False, "torch.compile (inductor) needs a C compiler: apt-get install gcc"
    return True, ""


def cache_env(cache_dir: str) -> dict[str, str]:
    """Environment that points inductor's on-disk caches at `cache_dir` (cold/warm runs)."""
    return {"TORCHINDUCTOR_CACHE_DIR": cache_dir, "TRITON_CACHE_DIR": cache_dir + "/triton"}


class TorchCompile:
    note = "torch.compile(fullgraph=True) of func.grad_and_value + in-place SGD"

    def __init__(self, problem: Problem) -> None:
        import torch

        self.torch = torch
        self.model, self.linears = tc.build_model(problem)
        self.x, self.y, self.batches = tc.tensors(problem)
        model = self.model
        lr = problem.lr
        loss_mod = tc.loss_module(problem)
        # Detached views of the module's parameters: updating them in place updates the model.
        self.params = {k: v.detach() for k, v in model.named_parameters()}

        def loss_fn(params: dict[str, Any], x: Any, y: Any) -> Any:
            return loss_mod(torch.func.functional_call(model, params, (x,)), y)

        def train_step(params: dict[str, Any], x: Any, y: Any) -> Any:
            grads, loss = torch.func.grad_and_value(loss_fn)(params, x, y)
            for k, p in params.items():
                p.sub_(grads[k], alpha=lr)
            return loss

        self._step = torch.compile(train_step, fullgraph=True)
        self._infer = torch.compile(model)

    def _train(self, x: Any, y: Any) -> float:
        return self._step(self.params, x, y).item()

    def step(self) -> float:
        try:
            return self._train(self.x, self.y)
        except Exception as err:  # compile errors surface on the first call
            if type(err).__module__.startswith("torch._dynamo") or "inductor" in repr(err):
                raise Unsupported(f"torch.compile failed here: {type(err).__name__}: {err}") from err
            raise

    def fit(self, epochs: int) -> float:
        loss = float("nan")
        for _ in range(epochs):
            for xb, yb in self.batches:
                loss = self._train(xb, yb)
        return loss

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self._infer(self.torch.from_numpy(x)).numpy()

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return tc.weights_of(self.linears)


def build(problem: Problem) -> TorchCompile:
    return TorchCompile(problem)
