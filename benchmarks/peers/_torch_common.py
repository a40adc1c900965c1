"""Shared PyTorch model construction for torch_eager and torch_compile."""

from __future__ import annotations

from typing import Any

from benchmarks.configs import Problem
from benchmarks.peers.base import check_problem_loss

INSTALL_HINT = "pip install torch --index-url https://download.pytorch.org/whl/cpu"


def build_model(problem: Problem) -> tuple[Any, list[Any]]:
    """nn.Sequential(Linear, ReLU, ..., Linear[, Sigmoid]) holding the problem's weights."""
    import torch

    check_problem_loss(problem.config.loss)
    dtype = getattr(torch, problem.dtype)
    layers: list[Any] = []
    linears = []
    n = len(problem.weights)
    for i, (W, b) in enumerate(problem.weights):
        lin = torch.nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():
            # torch keeps W as (out, in); ours is (in, out)
            lin.weight.copy_(torch.from_numpy(W.T.copy()))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        linears.append(lin)
        if i < n - 1:
            layers.append(torch.nn.ReLU())
    if problem.config.loss == "sigmoid_mse":
        layers.append(torch.nn.Sigmoid())
    return torch.nn.Sequential(*layers), linears


def loss_module(problem: Problem) -> Any:
    import torch

    if problem.config.loss == "sce":
        return torch.nn.CrossEntropyLoss()
    return torch.nn.MSELoss()


def tensors(problem: Problem) -> tuple[Any, Any, list[tuple[Any, Any]]]:
    """The fixed batch and the fit batches as tensors sharing memory with the NumPy arrays."""
    import torch

    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    batches = [(torch.from_numpy(xb), torch.from_numpy(yb)) for xb, yb in problem.batches()]
    return x, y, batches


def weights_of(linears: list[Any]) -> list[tuple[Any, Any]]:
    return [(lin.weight.detach().numpy().T.copy(), lin.bias.detach().numpy().copy()) for lin in linears]
