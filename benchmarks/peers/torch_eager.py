"""PyTorch eager: torch.nn.Sequential + torch.optim.SGD, the way most users train."""

from __future__ import annotations

import numpy as np

from benchmarks.configs import Problem
from benchmarks.peers import _torch_common as tc
from benchmarks.peers.base import module_available


def available() -> tuple[bool, str]:
    return module_available("torch", tc.INSTALL_HINT)


class TorchEager:
    note = "nn.Sequential + optim.SGD, zero_grad(set_to_none=True)"

    def __init__(self, problem: Problem) -> None:
        import torch

        self.torch = torch
        self.model, self.linears = tc.build_model(problem)
        self.loss_fn = tc.loss_module(problem)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=problem.lr)
        self.x, self.y, self.batches = tc.tensors(problem)

    def _train(self, x: object, y: object) -> float:
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(self.model(x), y)
        loss.backward()
        self.opt.step()
        return loss.item()

    def step(self) -> float:
        return self._train(self.x, self.y)

    def fit(self, epochs: int) -> float:
        loss = float("nan")
        for _ in range(epochs):
            for xb, yb in self.batches:
                loss = self._train(xb, yb)
        return loss

    def infer(self, x: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.model(self.torch.from_numpy(x)).numpy()

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return tc.weights_of(self.linears)


def build(problem: Problem) -> TorchEager:
    return TorchEager(problem)
