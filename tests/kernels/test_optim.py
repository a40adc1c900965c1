import numpy as np
import pytest
from graphc.kernels import optim as O

torch = pytest.importorskip("torch")

STEPS = 5
N = 37


def _run_torch(make_opt, p0, grads):
    p = torch.tensor(p0.copy(), dtype=torch.float64, requires_grad=True)
    opt = make_opt([p])
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
    return p.detach().numpy()


def _data(rng):
    p0 = rng.standard_normal(N)
    grads = [rng.standard_normal(N) for _ in range(STEPS)]
    return p0, grads


@pytest.mark.parametrize(
    "momentum,dampening,nesterov,wd",
    [
        (0.0, 0.0, False, 0.0),
        (0.0, 0.0, False, 0.01),
        (0.9, 0.0, False, 0.0),
        (0.9, 0.1, False, 1e-3),
        (0.9, 0.0, True, 1e-2),
    ],
)
def test_sgd_matches_torch(momentum, dampening, nesterov, wd, rng):
    lr = 0.05
    p0, grads = _data(rng)
    ref = _run_torch(
        lambda ps: torch.optim.SGD(
            ps, lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov, weight_decay=wd
        ),
        p0,
        grads,
    )
    p = p0.copy()
    buf = np.zeros(N if momentum else 0)
    for t, g in enumerate(grads):
        O.sgd(p, g, buf, lr, momentum, dampening, nesterov, wd, t == 0)
    np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("decoupled,wd", [(False, 0.0), (False, 0.01), (True, 0.01), (True, 0.0)])
def test_adam_matches_torch(decoupled, wd, rng):
    lr, betas, eps = 1e-2, (0.9, 0.995), 1e-8
    p0, grads = _data(rng)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    ref = _run_torch(lambda ps: cls(ps, lr=lr, betas=betas, eps=eps, weight_decay=wd), p0, grads)
    p = p0.copy()
    m = np.zeros(N)
    v = np.zeros(N)
    for t, g in enumerate(grads):
        O.adam(p, g, m, v, lr, betas[0], betas[1], eps, wd, t + 1, decoupled)
    np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "momentum,centered,wd", [(0.0, False, 0.0), (0.9, False, 0.0), (0.0, True, 0.01), (0.5, True, 1e-3)]
)
def test_rmsprop_matches_torch(momentum, centered, wd, rng):
    lr, alpha, eps = 1e-2, 0.99, 1e-8
    p0, grads = _data(rng)
    ref = _run_torch(
        lambda ps: torch.optim.RMSprop(
            ps, lr=lr, alpha=alpha, eps=eps, momentum=momentum, centered=centered, weight_decay=wd
        ),
        p0,
        grads,
    )
    p = p0.copy()
    sq = np.zeros(N)
    buf = np.zeros(N if momentum else 0)
    gavg = np.zeros(N if centered else 0)
    for g in grads:
        O.rmsprop(p, g, sq, buf, gavg, lr, alpha, eps, momentum, centered, wd)
    np.testing.assert_allclose(p, ref, rtol=1e-10, atol=1e-12)


def test_float32_runs_in_float32(rng):
    p0, grads = _data(rng)
    p = p0.astype(np.float32)
    m = np.zeros(N, np.float32)
    v = np.zeros(N, np.float32)
    O.adam(p, grads[0].astype(np.float32), m, v, 1e-2, 0.9, 0.999, 1e-8, 0.0, 1, False)
    ref = p0 - 1e-2 * np.sign(grads[0])  # first Adam step moves each weight by ~lr
    np.testing.assert_allclose(p, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sum_sq_and_scale(dtype, rng):
    x = rng.standard_normal(1001).astype(dtype)
    np.testing.assert_allclose(O.sum_sq(x), np.sum(x.astype(np.float64) ** 2), rtol=1e-12)
    assert O.sum_sq(x[:0]) == 0.0
    y = x.copy()
    O.scale_(y, 0.3)
    np.testing.assert_allclose(y, x * dtype(0.3), rtol=1e-6 if dtype == np.float32 else 1e-15)
