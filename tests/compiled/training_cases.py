"""The training networks of the compiled tests: every fused pattern as a small MLP.

Shared by ``test_training_compiled`` (compiled against the reference) and
``test_gradients_compiled`` (the compiled step against finite differences), so both
check the same networks; see the first's docstring for what the cases cover.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import graphc as gc

N_IN = 5
WIDTHS = (7, 13)
UNITS = {"sce_int": 4, "sce_onehot": 4, "bce": 1, "bce3": 3, "mse": 3, "mse1": 1, "mae": 1,
         "quantile": 3}

OPTIMIZERS = {
    "sgd": lambda: gc.optim.SGD(lr=0.1),
    "momentum": lambda: gc.optim.SGD(lr=0.05, momentum=0.9, dampening=0.1),
    "nesterov": lambda: gc.optim.SGD(lr=0.05, momentum=0.9, nesterov=True),
    "adam": lambda: gc.optim.Adam(lr=0.01),
    "adamw": lambda: gc.optim.AdamW(lr=0.01, weight_decay=0.1),
    "rmsprop": lambda: gc.optim.RMSprop(lr=0.01),
    "rmsprop_cm": lambda: gc.optim.RMSprop(lr=0.01, alpha=0.9, momentum=0.5, centered=True),
}


@dataclasses.dataclass(frozen=True)
class Case:
    acts: tuple  # hidden layers: (activation, alpha) each
    loss: str
    opt: str
    head: tuple = (None, None)  # output layer activation
    wd: float = 0.0
    clip: float | None = None

    @property
    def id(self) -> str:
        acts = "+".join(a if al is None else f"{a}({al})" for a, al in self.acts)
        head = "" if self.head[0] is None else f"-head_{self.head[0]}"
        extra = (f"-wd{self.wd}" if self.wd else "") + (f"-clip{self.clip}" if self.clip else "")
        return f"{acts}{head}-{self.loss}-{self.opt}{extra}"


CASES = [
    Case((("relu", None), ("sigmoid", None)), "sce_int", "sgd"),
    Case((("tanh", None), ("prelu", None)), "sce_onehot", "sgd", wd=0.01),  # folds dalpha too
    Case((("leaky_relu", -0.2), ("elu", None)), "bce", "momentum", clip=0.5),
    Case((("elu", -0.5), ("softplus", None)), "mse", "nesterov", head=("tanh", None), wd=1e-3),
    Case((("prelu", None), ("leaky_relu", 0.0)), "mae", "adam", head=("sigmoid", None)),
    Case((("softplus", None), ("prelu", None)), "quantile", "adamw"),
    Case((("sigmoid", None), ("tanh", None)), "mse1", "rmsprop", head=("prelu", None), clip=1.0),
    Case((("relu", None), ("elu", None)), "sce_int", "rmsprop_cm", wd=0.01),
    Case((("leaky_relu", None), ("relu", None)), "bce3", "adam", wd=0.01, clip=0.3),
    Case((("leaky_relu", None), ("tanh", None)), "mse", "sgd", clip=0.2),
]


def targets(loss: str):
    """(the target input, loss function) for ``loss``."""
    if loss == "sce_int":
        return gc.input("y", (None,), dtype="int64"), gc.softmax_cross_entropy
    y = gc.input("y", (None, UNITS[loss]))
    fn = {"sce_onehot": gc.softmax_cross_entropy, "bce": gc.binary_cross_entropy,
          "bce3": gc.binary_cross_entropy, "mse": gc.mse, "mse1": gc.mse, "mae": gc.mae,
          "quantile": lambda p, t: gc.quantile(p, t, q=0.8)}[loss]
    return y, fn


def build(case: Case, dtype: str, backend: str):
    x = gc.input("x", (None, N_IN))
    h = x
    for i, (act, alpha) in enumerate(case.acts):
        h = gc.dense(h, WIDTHS[i], activation=act, alpha=alpha, name=f"h{i}")
    act, alpha = case.head
    out = gc.dense(h, UNITS[case.loss], activation=act, alpha=alpha, name="out")
    y, fn = targets(case.loss)
    return gc.compile(loss=fn(out, y), outputs={"out": out}, optimizer=OPTIMIZERS[case.opt](),
                      weight_decay=case.wd, clip_norm=case.clip, dtype=dtype, seed=3,
                      backend=backend)


def sample(loss: str, n: int, dtype: str, seed: int) -> dict:
    rng = np.random.default_rng([seed, n])
    x = rng.standard_normal((n, N_IN)).astype(dtype)
    units = UNITS[loss]
    if loss == "sce_int":
        y = rng.integers(0, units, n)
    elif loss == "sce_onehot":
        y = np.eye(units, dtype=dtype)[rng.integers(0, units, n)]
    elif loss.startswith("bce"):
        y = rng.uniform(0, 1, (n, units)).astype(dtype)
    else:
        y = rng.standard_normal((n, units)).astype(dtype)
    return {"x": x, "y": y}
