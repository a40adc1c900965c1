"""The six standard configurations of BENCHMARKS.md and the deterministic problems built on them.

Every framework starts from the same `Problem`: identical float32 weights and identical data,
all NumPy. Weights are drawn in float64 and rounded once to the target dtype, so
``make_problem(c, "float32").astype("float64")`` holds exactly the float32 weights; the
float64 agreement reference is computed from those, not from fresh float64 draws.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import numpy as np

LR = 0.01  # plain SGD, no momentum, no weight decay: the one optimizer every peer has
N_BATCHES = 20  # the fit dataset is this many batches, walked in order (no shuffle)


@dataclass(frozen=True)
class Config:
    """One benchmark network: ``sizes`` are layer widths from input to output."""

    name: str
    sizes: tuple[int, ...]
    batch: int
    loss: str  # "sce" (softmax cross-entropy, int64 labels) or "sigmoid_mse" (xor)

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """(fan_in, fan_out) of each dense layer."""
        return list(zip(self.sizes[:-1], self.sizes[1:], strict=True))

    @property
    def n_params(self) -> int:
        return sum(i * o + o for i, o in self.layer_shapes)

    def describe(self) -> str:
        return f"{'-'.join(map(str, self.sizes))} b{self.batch} {self.loss}"


CONFIGS: dict[str, Config] = {
    c.name: c
    for c in (
        Config("xor", (2, 8, 1), 4, "sigmoid_mse"),
        Config("small", (64, 64, 64, 10), 32, "sce"),
        Config("mnist", (784, 128, 10), 64, "sce"),
        Config("mnist_wide", (784, 512, 512, 10), 128, "sce"),
        Config("deep", (256,) + (256,) * 8 + (10,), 64, "sce"),
        Config("large", (1024, 2048, 2048, 10), 256, "sce"),
    )
}


def get_config(config: str | Config) -> Config:
    """Look a config up by name (or pass a `Config` through)."""
    if isinstance(config, Config):
        return config
    try:
        return CONFIGS[config]
    except KeyError:
        raise KeyError(f"unknown benchmark config {config!r}; known: {', '.join(CONFIGS)}") from None


@dataclass(frozen=True)
class Problem:
    """Everything a peer needs to build its model, all NumPy and deterministic.

    weights: list of (W (fan_in, fan_out), b (fan_out,)) in layer order.
    x, y:    the fixed training batch used by ``step()`` (y: int64 labels (batch,) for "sce",
             float targets (batch, 1) for "sigmoid_mse").
    X, Y:    the fit dataset, ``n_batches * batch`` samples; batch i is rows
             ``[i*batch, (i+1)*batch)``, walked in order. Its first batch is (x, y).
    """

    config: Config
    dtype: str
    seed: int
    lr: float
    weights: list[tuple[np.ndarray, np.ndarray]] = field(repr=False)
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    X: np.ndarray = field(repr=False)
    Y: np.ndarray = field(repr=False)

    @property
    def n_batches(self) -> int:
        return self.X.shape[0] // self.config.batch

    @property
    def n_samples(self) -> int:
        return self.X.shape[0]

    def batches(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The fit dataset batch by batch, in order (views, not copies)."""
        b = self.config.batch
        for i in range(self.n_batches):
            yield self.X[i * b : (i + 1) * b], self.Y[i * b : (i + 1) * b]

    def copy_weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Fresh copies, so a peer that updates in place never touches the shared arrays."""
        return [(W.copy(), b.copy()) for W, b in self.weights]

    def astype(self, dtype: str) -> Problem:
        """Same problem in another float dtype (exact for float32 -> float64)."""
        f = np.dtype(dtype).type

        def y_cast(a: np.ndarray) -> np.ndarray:
            return a if self.config.loss == "sce" else a.astype(f)

        return replace(
            self,
            dtype=np.dtype(dtype).name,
            weights=[(W.astype(f), b.astype(f)) for W, b in self.weights],
            x=self.x.astype(f),
            y=y_cast(self.y),
            X=self.X.astype(f),
            Y=y_cast(self.Y),
        )


def _init_weights(cfg: Config, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    # He/Kaiming-uniform for W (relu hidden layers: bound sqrt(6/fan_in)), and PyTorch's
    # Linear default for b (bound 1/sqrt(fan_in)) so biases are non-zero and their gradient
    # path is exercised by the agreement check.
    out = []
    for fan_in, fan_out in cfg.layer_shapes:
        wb = np.sqrt(6.0 / fan_in)
        bb = 1.0 / np.sqrt(fan_in)
        W = rng.uniform(-wb, wb, size=(fan_in, fan_out))
        b = rng.uniform(-bb, bb, size=(fan_out,))
        out.append((W, b))
    return out


def _make_data(cfg: Config, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    if cfg.loss == "sigmoid_mse":
        # xor: the four corners in every batch (noise after the first batch so the fit
        # dataset is not 20 copies of one batch), target = xor of the clean corners.
        corners = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
        reps = -(-n // 4)
        clean = np.tile(corners, (reps, 1))[:n]
        X = clean + np.concatenate([np.zeros((cfg.batch, 2)), 0.05 * rng.standard_normal((n - cfg.batch, 2))])
        Y = (clean[:, :1] != clean[:, 1:]).astype(np.float64)
        return X, Y
    # Classification: Gaussian inputs labelled by a random linear teacher, so the task is
    # learnable (losses go down during fit) and every class appears.
    d, k = cfg.sizes[0], cfg.sizes[-1]
    X = rng.standard_normal((n, d))
    teacher = rng.standard_normal((d, k))
    Y = np.argmax(X @ teacher, axis=1).astype(np.int64)
    # Every class in the first batch (so in the fit dataset too): estimators that infer the
    # class set from the labels (scikit-learn) then see the same k classes as the others.
    Y[:k] = np.arange(k)
    return X, Y


def make_problem(
    config: str | Config, dtype: str = "float32", seed: int = 0, n_batches: int = N_BATCHES
) -> Problem:
    """Deterministic weights and data for `config` (same seed -> bit-identical arrays)."""
    cfg = get_config(config)
    rng = np.random.default_rng([seed, sum(map(ord, cfg.name))])
    weights = _init_weights(cfg, rng)
    X, Y = _make_data(cfg, n_batches * cfg.batch, rng)
    f = np.dtype(dtype).type
    if cfg.loss == "sce":
        Yc = np.ascontiguousarray(Y)
    else:
        Yc = np.ascontiguousarray(Y.astype(f))
    Xc = np.ascontiguousarray(X.astype(f))
    b = cfg.batch
    return Problem(
        config=cfg,
        dtype=np.dtype(dtype).name,
        seed=seed,
        lr=LR,
        weights=[(np.ascontiguousarray(W.astype(f)), b_.astype(f)) for W, b_ in weights],
        x=Xc[:b].copy(),
        y=Yc[:b].copy(),
        X=Xc,
        Y=Yc,
    )
