"""Before anything is timed, every framework must have computed the same thing.

Reference: a plain float64 NumPy implementation (written here, independent of every peer,
including numpy_hand) run from the problem's float32 weights cast exactly to float64.

Checked per peer, from a freshly built peer:
- the loss of the first step (at the initial weights):  |l - l_ref| <= rtol·|l_ref|;
- the loss of the second step (after one update), same tolerance: a wrong update shows here;
- when the peer exposes ``weights()``: the parameters after one step, per array,
  ‖P - P_ref‖ <= wtol·‖P_ref - P_0‖ + 2·eps(dtype)·‖P_0‖ — relative to the *update* so
  that a wrong or missing gradient cannot hide behind the size of the weights, with an
  absolute term for the rounding of P_0 - lr·g in the peer's dtype.
float32 default: rtol = 1e-4 (the brief's), wtol = 1e-3 (gradients of deep float32 nets
differ from float64 by ~1e-5 relative; a dropped or wrong gradient differs by ~1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.configs import Problem
from benchmarks.peers.base import Peer

RTOL = {"float32": 1e-4, "float64": 1e-10}
WTOL = {"float32": 1e-3, "float64": 1e-8}


class AgreementError(AssertionError):
    """A framework computed a different loss or update than the reference."""

    def __init__(
        self, framework: str, config: str, quantity: str, value: Any, reference: Any, tol: str
    ) -> None:
        self.framework, self.config, self.quantity = framework, config, quantity
        self.value, self.reference = value, reference
        super().__init__(
            f"{framework} disagrees on {config}: {quantity} = {value!r}, reference (NumPy "
            f"float64) = {reference!r}; tolerance {tol}. Its timings would not be comparable."
        )


@dataclass(frozen=True)
class Reference:
    loss1: float
    loss2: float
    weights1: list[tuple[np.ndarray, np.ndarray]]


def _ref_step(
    params: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, y: np.ndarray, loss: str, lr: float
) -> tuple[float, list[tuple[np.ndarray, np.ndarray]]]:
    hs = [x]
    for i, (W, b) in enumerate(params):
        z = hs[-1] @ W + b
        hs.append(np.maximum(z, 0.0) if i < len(params) - 1 else z)
    z = hs[-1]
    n = z.shape[0]
    if loss == "sce":
        zmax = z.max(axis=1, keepdims=True)
        lse = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
        value = float(np.mean(lse - z[np.arange(n), y]))
        d = np.exp(z - lse[:, None])
        d[np.arange(n), y] -= 1.0
        d /= n
    else:
        p = 1.0 / (1.0 + np.exp(-z))
        value = float(np.mean((p - y) ** 2))
        d = 2.0 * (p - y) / y.size * p * (1.0 - p)
    new = []
    for i in range(len(params) - 1, -1, -1):
        W, b = params[i]
        gW, gb = hs[i].T @ d, d.sum(axis=0)
        if i > 0:
            d = (d @ W.T) * (hs[i] > 0)
        new.append((W - lr * gW, b - lr * gb))
    return value, new[::-1]


def reference(problem: Problem) -> Reference:
    """First- and second-step losses and the weights after one step, in float64."""
    p64 = problem.astype("float64")
    cfg = p64.config
    l1, w1 = _ref_step(p64.weights, p64.x, p64.y, cfg.loss, p64.lr)
    l2, _ = _ref_step(w1, p64.x, p64.y, cfg.loss, p64.lr)
    return Reference(l1, l2, w1)


@dataclass
class Probe:
    """What a fresh peer computed: first and second step losses, weights after one step."""

    loss1: float
    loss2: float
    weights1: list[tuple[np.ndarray, np.ndarray]] | None


def probe(peer: Peer, first_loss: float | None = None) -> Probe:
    """Run steps 1 and 2 on a fresh peer (step 1 may have been run by the caller already)."""
    l1 = peer.step() if first_loss is None else first_loss
    w1 = peer.weights() if hasattr(peer, "weights") else None
    l2 = peer.step()
    return Probe(float(l1), float(l2), w1)


def check(
    framework: str, problem: Problem, ref: Reference, got: Probe, rtol: float | None = None
) -> dict[str, Any]:
    """Raise `AgreementError` if `got` disagrees with `ref`; else return the deviations."""
    rtol = RTOL.get(problem.dtype, 1e-4) if rtol is None else rtol
    wtol = WTOL.get(problem.dtype, 1e-3)
    cfg = problem.config.name
    out: dict[str, Any] = {"rtol": rtol, "wtol": wtol}

    def check_loss(q: str, v: float, r: float) -> None:
        if not np.isfinite(v) or abs(v - r) > rtol * abs(r):
            raise AgreementError(framework, cfg, q, v, r, f"rtol {rtol:g}")
        out[q.replace(" ", "_").replace("-", "_") + "_rel_err"] = abs(v - r) / abs(r)

    # Order: loss at the initial weights, then the update itself (names the wrong array),
    # then the loss after the update.
    check_loss("first-step loss", got.loss1, ref.loss1)
    if got.weights1 is not None:
        eps = float(np.finfo(np.dtype(problem.dtype)).eps)
        worst = 0.0
        for i, ((W, b), (Wr, br), (W0, b0)) in enumerate(
            zip(got.weights1, ref.weights1, problem.weights, strict=True)
        ):
            for name, p, pr, p0 in (("W", W, Wr, W0), ("b", b, br, b0)):
                p = np.asarray(p, dtype=np.float64).reshape(pr.shape)
                p0 = p0.astype(np.float64)
                err = float(np.linalg.norm(p - pr))
                upd = float(np.linalg.norm(pr - p0))
                allowed = wtol * upd + 2 * eps * float(np.linalg.norm(p0))
                if not err <= allowed:
                    raise AgreementError(
                        framework,
                        cfg,
                        f"layer {i} {name} after one step (‖P - P_ref‖)",
                        err,
                        f"‖P_ref - P_0‖ = {upd:.3g}",
                        f"{allowed:.3g}",
                    )
                worst = max(worst, err / upd if upd else 0.0)
        out["weights_rel_err"] = worst
    check_loss("second-step loss", got.loss2, ref.loss2)
    return out


def check_peer(framework: str, peer: Peer, problem: Problem, ref: Reference | None = None) -> dict[str, Any]:
    """Probe a freshly built peer and check it (convenience for tests and scripts)."""
    return check(framework, problem, ref or reference(problem), probe(peer))
