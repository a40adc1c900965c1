"""JAX: jax.jit of the whole update (value_and_grad + SGD), params as a pytree, buffers donated.

``fit`` runs one jitted ``lax.scan`` over the epoch's batches, which is what a careful JAX
user writes for a training loop (one dispatch per epoch instead of one per step).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from benchmarks.configs import Problem
from benchmarks.peers.base import check_problem_loss, module_available

COMPILES = True


def available() -> tuple[bool, str]:
    return module_available("jax", 'pip install "jax[cpu]"')


def cache_env(cache_dir: str) -> dict[str, str]:
    """Persistent compilation cache in `cache_dir`, caching even fast compiles."""
    return {
        "JAX_COMPILATION_CACHE_DIR": cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _functions(problem: Problem) -> tuple[Any, Any, Any, Any]:
    import jax
    import jax.numpy as jnp

    check_problem_loss(problem.config.loss)
    lr = problem.lr
    sce = problem.config.loss == "sce"

    def forward(params: Any, x: Any) -> Any:
        h = x
        last = len(params) - 1
        for i, (W, b) in enumerate(params):
            h = h @ W + b
            if i < last:
                h = jax.nn.relu(h)
        return h

    def loss_fn(params: Any, x: Any, y: Any) -> Any:
        z = forward(params, x)
        if sce:
            zy = jnp.take_along_axis(z, y[:, None], axis=1)[:, 0]
            return jnp.mean(jax.nn.logsumexp(z, axis=1) - zy)
        return jnp.mean((jax.nn.sigmoid(z) - y) ** 2)

    def update(params: Any, x: Any, y: Any) -> tuple[Any, Any]:
        loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
        return jax.tree_util.tree_map(lambda p, g: p - lr * g, params, grads), loss

    def epoch(params: Any, xs: Any, ys: Any) -> tuple[Any, Any]:
        def body(p: Any, xy: Any) -> tuple[Any, Any]:
            return update(p, *xy)

        params, losses = jax.lax.scan(body, params, (xs, ys))
        return params, losses[-1]

    def infer(params: Any, x: Any) -> Any:
        z = forward(params, x)
        return z if sce else jax.nn.sigmoid(z)

    return (
        partial(jax.jit, donate_argnums=0)(update),
        partial(jax.jit, donate_argnums=0)(epoch),
        jax.jit(infer),
        loss_fn,
    )


class JaxJit:
    note = "jit(value_and_grad + SGD), donate_argnums=0; fit = jit(lax.scan) per epoch"

    def __init__(self, problem: Problem) -> None:
        import jax.numpy as jnp

        self.jnp = jnp
        self._update, self._epoch, self._infer, _ = _functions(problem)
        self.params = [(jnp.asarray(W), jnp.asarray(b)) for W, b in problem.copy_weights()]

        # jax runs without x64 by default: labels become int32 (values are < 2**31).
        def ycast(y: np.ndarray) -> Any:
            return jnp.asarray(y.astype(np.int32) if y.dtype == np.int64 else y)

        self.x, self.y = jnp.asarray(problem.x), ycast(problem.y)
        nb, b = problem.n_batches, problem.config.batch
        self.xs = jnp.asarray(problem.X.reshape(nb, b, *problem.X.shape[1:]))
        self.ys = ycast(problem.Y.reshape(nb, b, *problem.Y.shape[1:]))

    def step(self) -> float:
        self.params, loss = self._update(self.params, self.x, self.y)
        return float(loss)  # float() waits for the result, so timings include the work

    def fit(self, epochs: int) -> float:
        loss = None
        for _ in range(epochs):
            self.params, loss = self._epoch(self.params, self.xs, self.ys)
        return float(loss) if loss is not None else float("nan")

    def infer(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self._infer(self.params, self.jnp.asarray(x)))

    def weights(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.array(W), np.array(b)) for W, b in self.params]


def build(problem: Problem) -> JaxJit:
    return JaxJit(problem)
