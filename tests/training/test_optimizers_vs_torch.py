"""Every optimizer, weight decay, gradient clipping and learning-rate schedule against
PyTorch: identical initial parameters, float64, 10 steps of an MLP with two hidden layers,
losses and parameters equal to rtol 1e-6 -- on both backends.

PyTorch is driven the way graphc's semantics say: weight decay on the weight matrices only
(two param groups, 0 on biases; AdamW's decoupled decay likewise), clip_grad_norm_ on the
raw gradients before ``opt.step()``, schedulers stepped once per epoch.

The compiled backend generates one Numba module per optimizer *hyperparameter set* (the
learning rate is a runtime value), so combinations that cost a compile each are grouped;
the reference backend runs every single variant.  (A one-hidden-layer SGD/Adam comparison
on the reference backend lives in tests/foundation/test_autodiff.py.)
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import graphc as gc

from .helpers import (
    SHARED_CLIP,
    SHARED_WD,
    TorchMLP,
    assert_params_close,
    make_net,
    shared_adam,
    torch,
)

pytestmark = pytest.mark.skipif(torch is None, reason="torch is not installed")
STEPS = 10
BATCHES = [8] * (STEPS - 1) + [5]  # a short last batch too


@dataclass
class Case:
    id: str
    graphc: Any          # () -> gc.optim.Optimizer
    torch: Any           # (param groups) -> torch.optim.Optimizer
    wd: float = 0.0      # gc.compile(weight_decay=...)
    clip: float | None = None
    compiled: bool = True  # also on the compiled backend (one Numba compile per case)


def _t(name, **kw):
    return lambda groups: getattr(torch.optim, name)(groups, **kw)


CASES = [
    # SGD.  Plain SGD without clipping folds into the dW GEMM in the compiled backend.
    Case("sgd", lambda: gc.optim.SGD(lr=0.1), _t("SGD", lr=0.1), compiled=False),
    Case("sgd_wd", lambda: gc.optim.SGD(lr=0.1), _t("SGD", lr=0.1), wd=0.05),
    Case("sgd_clip", lambda: gc.optim.SGD(lr=0.3), _t("SGD", lr=0.3), wd=0.01, clip=0.25),
    Case("sgd_momentum", lambda: gc.optim.SGD(lr=0.05, momentum=0.9),
         _t("SGD", lr=0.05, momentum=0.9), compiled=False),
    Case("sgd_momentum_dampening_wd", lambda: gc.optim.SGD(lr=0.05, momentum=0.9, dampening=0.3),
         _t("SGD", lr=0.05, momentum=0.9, dampening=0.3), wd=0.02),
    Case("sgd_nesterov", lambda: gc.optim.SGD(lr=0.05, momentum=0.8, nesterov=True),
         _t("SGD", lr=0.05, momentum=0.8, nesterov=True), compiled=False),
    Case("sgd_nesterov_wd_clip", lambda: gc.optim.SGD(lr=0.05, momentum=0.7, nesterov=True),
         _t("SGD", lr=0.05, momentum=0.7, nesterov=True), wd=0.01, clip=0.3),
    # Adam / AdamW
    Case("adam", lambda: gc.optim.Adam(lr=0.01), _t("Adam", lr=0.01), compiled=False),
    Case("adam_betas_wd_clip", shared_adam, _t("Adam", lr=0.02, betas=(0.8, 0.95), eps=1e-6),
         wd=SHARED_WD, clip=SHARED_CLIP),
    Case("adamw", lambda: gc.optim.AdamW(lr=0.02, weight_decay=0.1),
         lambda g: torch.optim.AdamW([dict(g[0], weight_decay=0.1), g[1]], lr=0.02)),
    Case("adamw_default_decay", lambda: gc.optim.AdamW(lr=0.02),
         lambda g: torch.optim.AdamW([dict(g[0], weight_decay=0.01), g[1]], lr=0.02),
         compiled=False),
    # RMSprop
    Case("rmsprop", lambda: gc.optim.RMSprop(lr=0.01), _t("RMSprop", lr=0.01), compiled=False),
    Case("rmsprop_alpha_wd", lambda: gc.optim.RMSprop(lr=0.01, alpha=0.9, eps=1e-6),
         _t("RMSprop", lr=0.01, alpha=0.9, eps=1e-6), wd=0.03),
    Case("rmsprop_momentum", lambda: gc.optim.RMSprop(lr=0.01, momentum=0.6),
         _t("RMSprop", lr=0.01, momentum=0.6), compiled=False),
    Case("rmsprop_centered", lambda: gc.optim.RMSprop(lr=0.01, centered=True),
         _t("RMSprop", lr=0.01, centered=True), compiled=False),
    Case("rmsprop_centered_momentum_clip",
         lambda: gc.optim.RMSprop(lr=0.01, momentum=0.5, centered=True),
         _t("RMSprop", lr=0.01, momentum=0.5, centered=True), wd=0.01, clip=0.4),
]
BY_ID = {c.id: c for c in CASES}


def _params(cases):
    return [pytest.param(c, b, id=f"{c.id}-{b}") for c in cases
            for b in (["reference", "compiled"] if c.compiled else ["reference"])]


def _batches(seed=0):
    rng = np.random.default_rng(seed)
    for n in BATCHES:
        yield rng.standard_normal((n, 5)), rng.integers(0, 3, n)


def _pair(case: Case, backend: str, lr=None):
    """A graphc program and its PyTorch twin with the same (random, non-trivial) init."""
    opt = case.graphc()
    if lr is not None:
        opt.lr = lr
    net = make_net(opt, backend, weight_decay=case.wd, clip_norm=case.clip)
    rng = np.random.default_rng(7)
    init = {n: rng.standard_normal(v.shape) * 0.6 for n, v in net.params.items()}
    net.set_params(init)
    model = TorchMLP(init)
    return net, model, case.torch(model.groups(case.wd))


def _torch_step(model, topt, xb, yb, clip, norms=None):
    topt.zero_grad()
    loss = model.loss(xb, yb)
    loss.backward()
    if clip is not None:
        norm = torch.nn.utils.clip_grad_norm_(list(model.p.values()), clip)
        if norms is not None:
            norms.append(float(norm))
    topt.step()
    return loss.item()


@pytest.mark.parametrize("case, backend", _params(CASES))
def test_optimizer_matches_pytorch(case, backend):
    net, model, topt = _pair(case, backend)
    norms = []
    for step, (xb, yb) in enumerate(_batches()):
        got = net.step({"x": xb, "y": yb})
        want = _torch_step(model, topt, xb, yb, case.clip, norms)
        np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"loss at step {step}")
        assert_params_close(net.params, model.params(), f"after step {step}")
    assert net.step_count == STEPS
    if case.clip is not None:  # clipping was exercised (the norm exceeded max_norm), not a no-op
        assert sum(n > case.clip for n in norms) >= STEPS // 2, norms
    # The optimizer state is PyTorch's too (momentum buffers, moments, square averages).
    names = {"momentum": "momentum_buffer", "exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq",
             "square_avg": "square_avg", "grad_avg": "grad_avg"}
    state = net.state
    for slot_key, arr in state.items():
        pname, slot = slot_key.split(":")
        ref = topt.state[model.p[pname]][names[slot]].numpy()
        np.testing.assert_allclose(arr, ref.T if pname.endswith("/W") else ref, rtol=1e-6,
                                   atol=1e-12, err_msg=slot_key)


def test_plain_sgd_is_folded_into_the_backward_gemm():
    """Plain SGD (the compiled case "sgd_wd" above; without decay alike) runs the fused
    dense_bwd_sgd kernel: dW and db are never materialised, W and b are updated inside the
    backward GEMM (beta = 1 - lr*wd)."""
    for case in ("sgd", "sgd_wd"):
        net = make_net(BY_ID[case].graphc(), "compiled", weight_decay=BY_ID[case].wd)
        e = net._impl.entries["train_step"]
        folded = [u for ups in e.emitter.folded.values() for u in ups]
        assert {e.graph.node(u).get("param") for u in folded} == {
            "fc1/W", "fc1/b", "fc2/W", "fc2/b", "fc3/W", "fc3/b"}
        assert "dense_bwd_sgd" in net._impl.source
    # ...and what must not fold does not: momentum state, or a clipping factor.
    for case in ("sgd_clip", "sgd_momentum_dampening_wd"):
        net = make_net(BY_ID[case].graphc(), "compiled", weight_decay=BY_ID[case].wd,
                       clip_norm=BY_ID[case].clip)
        assert not net._impl.entries["train_step"].emitter.folded
        assert "dense_bwd_sgd" not in net._impl.source


def test_defaults_are_pytorchs():
    def defaults(fn, skip=("self", "params", "weight_decay")):
        return {k: p.default for k, p in inspect.signature(fn).parameters.items()
                if k not in skip and p.kind is p.POSITIONAL_OR_KEYWORD}

    pairs = [(gc.optim.SGD, torch.optim.SGD), (gc.optim.Adam, torch.optim.Adam),
             (gc.optim.RMSprop, torch.optim.RMSprop)]
    for ours, theirs in pairs:
        mine, ref = defaults(ours), defaults(theirs)
        assert {k: ref[k] for k in mine} == mine, ours.__name__
    assert defaults(gc.optim.AdamW, skip=("self",)) == {
        k: v for k, v in defaults(torch.optim.AdamW, skip=("self", "params")).items()
        if k in ("lr", "betas", "eps", "weight_decay")}
    # The activations' defaults the training graphs rely on (DESIGN: as PyTorch).
    assert torch.nn.PReLU().weight.item() == 0.25


# --- learning-rate schedules, stepped per epoch ---------------------------------------------

SCHEDULES = [
    # (case whose hyperparameters are reused, graphc schedule, torch scheduler)
    ("sgd_momentum_dampening_wd", lambda: gc.optim.StepLR(0.05, step_size=2, gamma=0.5),
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5)),
    ("adam_betas_wd_clip", lambda: gc.optim.ExponentialLR(0.02, gamma=0.7),
     lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma=0.7)),
    ("rmsprop_centered_momentum_clip", lambda: gc.optim.CosineLR(0.01, t_max=4, eta_min=1e-3),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4, eta_min=1e-3)),
    # The folded SGD update takes the learning rate at run time too (beta = 1 - lr*wd).
    ("sgd_wd", lambda: gc.optim.CosineLR(0.1, t_max=5),
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=5)),
]
STEPS_PER_EPOCH = 2


@pytest.mark.parametrize("backend", ["reference", "compiled"])
@pytest.mark.parametrize("case_id, sched, tsched", SCHEDULES,
                         ids=["step", "exponential", "cosine", "cosine_folded_sgd"])
def test_schedule_matches_pytorch_scheduler(case_id, sched, tsched, backend):
    """Driven by ``program.epoch``: 5 epochs of 2 steps, the scheduler stepped after each."""
    case = BY_ID[case_id]
    net, model, topt = _pair(case, backend, lr=sched())
    scheduler = tsched(topt)
    batches = list(_batches(1))
    for epoch in range(STEPS // STEPS_PER_EPOCH):
        net.epoch = epoch
        assert net.lr() == pytest.approx(scheduler.get_last_lr()[0], rel=1e-12)
        for xb, yb in batches[epoch * STEPS_PER_EPOCH:(epoch + 1) * STEPS_PER_EPOCH]:
            got = net.step({"x": xb, "y": yb})
            want = _torch_step(model, topt, xb, yb, case.clip)
            np.testing.assert_allclose(got, want, rtol=1e-6, err_msg=f"loss in epoch {epoch}")
        scheduler.step()
        assert_params_close(net.params, model.params(), f"after epoch {epoch}")


@pytest.mark.parametrize("backend", ["reference", "compiled"])
def test_schedule_through_fit_matches_pytorch(backend):
    """``fit`` advances the schedule once per epoch (and continues across fit calls)."""
    case = BY_ID["adam_betas_wd_clip"]
    net, model, topt = _pair(case, backend, lr=gc.optim.StepLR(0.02, step_size=1, gamma=0.6))
    scheduler = torch.optim.lr_scheduler.StepLR(topt, step_size=1, gamma=0.6)
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((20, 5)), rng.integers(0, 3, 20)
    hist = net.fit({"x": x, "y": y}, epochs=2, batch_size=8, shuffle=False, progress=False)
    hist2 = net.fit({"x": x, "y": y}, epochs=1, batch_size=8, shuffle=False, progress=False)
    assert hist.epochs == [0, 1] and hist2.epochs == [2] and net.epoch == 3
    want_losses = []
    for _ in range(3):
        losses = [_torch_step(model, topt, x[i:i + 8], y[i:i + 8], case.clip) * len(x[i:i + 8])
                  for i in range(0, 20, 8)]
        want_losses.append(sum(losses) / 20)
        scheduler.step()
    np.testing.assert_allclose(hist.loss + hist2.loss, want_losses, rtol=1e-6)
    assert_params_close(net.params, model.params(), "after 3 epochs of fit")


def test_schedule_values():
    """The closed forms, including what PyTorch's chained schedulers compute."""
    s = gc.optim.StepLR(0.1, step_size=3, gamma=0.5)
    assert [s.lr_at(e) for e in range(7)] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])
    e = gc.optim.ExponentialLR(0.1, gamma=0.9)
    assert e.lr_at(4) == pytest.approx(0.1 * 0.9 ** 4)
    c = gc.optim.CosineLR(0.1, t_max=10, eta_min=0.01)
    assert c.lr_at(0) == 0.1 and c.lr_at(10) == pytest.approx(0.01)
    assert c.lr_at(5) == pytest.approx(0.055)
    # Past t_max graphc holds eta_min; PyTorch's CosineAnnealingLR would rise again (it is
    # periodic), so runs longer than t_max epochs deliberately differ from it.
    assert c.lr_at(15) == pytest.approx(0.01)
    assert gc.optim.SGD(lr=s).lr_at(4) == pytest.approx(0.05)


# --- hyperparameters -----------------------------------------------------------------------

BAD = [
    # (graphc call, the PyTorch call that refuses it too, or None where torch has no check)
    (lambda: gc.optim.SGD(lr=0.1, momentum=-0.5), lambda p: torch.optim.SGD(p, momentum=-0.5),
     "momentum must be >= 0"),
    (lambda: gc.optim.SGD(lr=0.1, momentum=float("nan")), None, "momentum must be >= 0"),
    (lambda: gc.optim.SGD(lr=0.1, momentum=0.9, dampening=1.5), None, r"dampening .*\[0, 1\]"),
    (lambda: gc.optim.SGD(lr=-1.0), lambda p: torch.optim.SGD(p, lr=-1.0), "lr must be"),
    (lambda: gc.optim.Adam(eps=-1e-8), lambda p: torch.optim.Adam(p, eps=-1e-8), "eps must be"),
    (lambda: gc.optim.Adam(betas=(0.9, 1.0)), lambda p: torch.optim.Adam(p, betas=(0.9, 1.0)),
     "betas"),
    (lambda: gc.optim.AdamW(weight_decay=-0.1), lambda p: torch.optim.AdamW(p, weight_decay=-0.1),
     "weight_decay must be >= 0"),
    (lambda: gc.optim.RMSprop(alpha=-0.1), lambda p: torch.optim.RMSprop(p, alpha=-0.1),
     "alpha must be"),
    (lambda: gc.optim.RMSprop(alpha=1.5), None, r"alpha must be in \[0, 1\]"),
    (lambda: gc.optim.RMSprop(eps=-1.0), lambda p: torch.optim.RMSprop(p, eps=-1.0), "eps must be"),
    (lambda: gc.optim.RMSprop(momentum=-0.1), lambda p: torch.optim.RMSprop(p, momentum=-0.1),
     "momentum must be >= 0"),
    (lambda: gc.optim.RMSprop(momentum="fast"), None, "momentum must be a number"),
    (lambda: make_net(gc.optim.SGD(0.1), "reference", clip_norm=-1.0), None,
     "clip_norm must be a positive"),  # a negative norm would reverse every gradient
    (lambda: make_net(gc.optim.SGD(0.1), "reference", clip_norm=0.0), None,
     "clip_norm must be a positive"),  # 0 would silently turn clipping off
    (lambda: make_net(gc.optim.SGD(0.1), "reference", weight_decay=float("nan")), None,
     "weight_decay must be"),
]


@pytest.mark.parametrize("call, torch_call, message", BAD)
def test_bad_hyperparameters_are_refused(call, torch_call, message):
    with pytest.raises(gc.GraphError, match=message):
        call()
    if torch_call is not None:
        with pytest.raises(ValueError):
            torch_call([torch.nn.Parameter(torch.zeros(2))])


def test_adamw_keeps_the_l2_weight_decay_of_compile():
    """AdamW with no decoupled decay is Adam, so adding L2 through gc.compile must give
    Adam + L2 (torch: Adam(weight_decay=...) on the W group)."""
    case = Case("adamw0_l2", lambda: gc.optim.AdamW(lr=0.02, weight_decay=0.0),
                lambda g: torch.optim.Adam(g, lr=0.02), wd=0.05)
    net, model, topt = _pair(case, "reference")
    for xb, yb in _batches():
        net.step({"x": xb, "y": yb})
        _torch_step(model, topt, xb, yb, None)
    assert_params_close(net.params, model.params(), "after 10 steps")


@pytest.mark.parametrize("backend", ["reference", "compiled"])
def test_adamw_decay_and_compile_l2_both_apply(backend):
    """AdamW(weight_decay=d) with gc.compile(weight_decay=l): torch AdamW(weight_decay=d) on
    the W group, with l * W added to W's gradient after clipping (the L2 term)."""
    # graphc decays weight matrices only: torch's decoupled decay on the W group, none on b.
    case = Case("adamw_l2", lambda: gc.optim.AdamW(lr=0.02, weight_decay=0.1),
                lambda g: torch.optim.AdamW([{**g[0], "weight_decay": 0.1},
                                             {**g[1], "weight_decay": 0.0}], lr=0.02), wd=0.05)
    net, model, topt = _pair(case, backend)
    ws = [v for n, v in model.p.items() if n.endswith("/W")]
    for xb, yb in _batches():
        net.step({"x": xb, "y": yb})
        topt.zero_grad()
        loss = model.loss(xb, yb)
        loss.backward()
        with torch.no_grad():
            for w in ws:
                w.grad += 0.05 * w
        topt.step()
    assert_params_close(net.params, model.params(), "after 10 steps")
