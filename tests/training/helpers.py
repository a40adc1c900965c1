"""Shared pieces of the training tests: one MLP with two hidden layers, its PyTorch twin,
and the optimizer configurations.

Every compiled program built from :func:`build` with the same optimizer hyperparameters
(lr and schedules are runtime values) reuses one generated module in the session, so the
configurations below are chosen to share modules between test files.
"""

from __future__ import annotations

import numpy as np

import graphc as gc

try:
    import torch
except ImportError:  # the PyTorch comparisons are skipped, nothing else
    torch = None
else:
    # Tiny float64 MLPs: one thread is ~20x faster than several on a busy 2-core machine.
    torch.set_num_threads(1)

BACKENDS = ["reference", "compiled"]
N_IN, N_CLASSES = 5, 3


def build():
    """x (5) -> fc1 8 relu -> fc2 6 tanh -> fc3 3 logits -> softmax cross-entropy."""
    x = gc.input("x", (None, N_IN))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 8, activation="relu", name="fc1")
    h = gc.dense(h, 6, activation="tanh", name="fc2")
    logits = gc.dense(h, N_CLASSES, name="fc3")
    return logits, gc.softmax_cross_entropy(logits, y)


def make_net(optimizer, backend="compiled", weight_decay=0.0, clip_norm=None, seed=0):
    logits, loss = build()
    return gc.compile(loss=loss, outputs={"logits": logits}, optimizer=optimizer,
                      weight_decay=weight_decay, clip_norm=clip_norm, dtype="float64",
                      backend=backend, seed=seed)


# The compiled module the fit, save/load and schedule tests share with the optimizer
# comparison "adam_betas_wd_clip": Adam with L2 decay and clipping.
SHARED_WD, SHARED_CLIP = 0.05, 0.5


def shared_adam(lr=0.02):
    return gc.optim.Adam(lr=lr, betas=(0.8, 0.95), eps=1e-6)


def shared_net(backend="compiled", lr=0.02, seed=0):
    return make_net(shared_adam(lr), backend, weight_decay=SHARED_WD, clip_norm=SHARED_CLIP,
                    seed=seed)


def make_data(n, seed=0):
    """Learnable labels: the class is the argmax of three fixed projections of x."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_IN))
    proj = np.random.default_rng(1234).standard_normal((N_IN, N_CLASSES))
    return {"x": x, "y": (x @ proj).argmax(axis=1).astype(np.int64)}


def torch_weight(name: str, value: np.ndarray) -> np.ndarray:
    """graphc stores W as (in, out); torch.nn.Linear stores (out, in)."""
    return value.T.copy() if name.endswith("/W") else value.copy()


class TorchMLP:
    """:func:`build` in PyTorch, float64, initialised from graphc's parameters."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        self.p = {n: torch.nn.Parameter(torch.from_numpy(torch_weight(n, v)))
                  for n, v in sorted(params.items())}

    def __call__(self, X):
        F, p = torch.nn.functional, self.p
        h = torch.relu(F.linear(X, p["fc1/W"], p["fc1/b"]))
        h = torch.tanh(F.linear(h, p["fc2/W"], p["fc2/b"]))
        return F.linear(h, p["fc3/W"], p["fc3/b"])

    def loss(self, xb, yb):
        return torch.nn.functional.cross_entropy(self(torch.from_numpy(xb)), torch.from_numpy(yb))

    def groups(self, wd: float) -> list[dict]:
        """graphc decays weight matrices only: decay on the W group, none on the biases."""
        return [{"params": [v for n, v in self.p.items() if n.endswith("/W")], "weight_decay": wd},
                {"params": [v for n, v in self.p.items() if not n.endswith("/W")],
                 "weight_decay": 0.0}]

    def params(self) -> dict[str, np.ndarray]:
        return {n: torch_weight(n, v.detach().numpy()) for n, v in self.p.items()}


def assert_params_close(got: dict, want: dict, what: str, rtol=1e-6, atol=1e-12) -> None:
    assert set(got) == set(want)
    for n in sorted(want):
        np.testing.assert_allclose(got[n], want[n], rtol=rtol, atol=atol, err_msg=f"{n} {what}")
