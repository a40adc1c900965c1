"""Per-op tests driven by the table in ``tests/op_specs.py``.

For every spec:

(a) shape inference: the symbolic shape (batch ``None`` filled in) equals the
    shape the reference interpreter produces, for batch sizes 1 and 5; the
    gradients have the shapes of what they differentiate;
(b) ``gc.grad`` of ``sum(out * R)`` (R a fixed random projection fed as an
    input; a fixed number != 1 for scalar outputs, so that every VJP must scale by
    its incoming cotangent) w.r.t. every differentiable input and every parameter,
    against central finite differences in float64, at batch sizes 1 and 3;
(c) the VJP inner-product identity <J^T u, v> = <u, J v> along one random
    direction through all differentiable inputs and parameters at once (JAX's
    ``check_grads`` style), at a batch size the element-wise check does not use;
(d) the float32 reference stays float32 and tracks float64;
(e) the forward pass and all gradients against PyTorch (an oracle independent
    of graphc's reference), also at the kinks where the one-sided choice matters.

(b) and (c) are the checks of ``tests/gradcheck.py`` -- the same code that
differentiates the compiled kernels and training steps in
``tests/compiled/test_gradients_compiled.py``.  Finite-difference tolerance (the
rounding argument is in ``gradcheck``): step h_i = 1e-6 * max(1, |x_i|)
(relative), compared with ``rtol=1e-6, atol=1e-8``; the VJP identity with
``rtol=1e-6, atol=1e-7``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from gradcheck import assert_matches_finite_differences, assert_vjp_inner_product
from op_specs import BY_ID, PROJ, SPECS, SpecProgram

import graphc as gc


def _fill(shape, batch):
    return tuple(batch if d is None else d for d in shape)


class Harness(SpecProgram):
    """A spec on the reference backend, sampled away from its kinks by default."""

    def sample(self, batch, seed=0, fd_safe=True):
        return super().sample(batch, seed, fd_safe)


@functools.cache
def harness(spec_id: str, dtype: str = "float64") -> Harness:
    return Harness(BY_ID[spec_id], "reference", dtype)


IDS = [s.id for s in SPECS]


# --- coverage of the public API -------------------------------------------------------

PUBLIC_OPS = {"matmul", "add", "sub", "mul", "neg", "sum", "mean", "identity", "transpose",
              "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "softplus", "softmax",
              "log_softmax", "softmax_cross_entropy", "binary_cross_entropy", "mse", "mae",
              "quantile", "l2", "dense"}


def test_table_covers_the_public_api():
    covered = {s.op for s in SPECS}
    assert PUBLIC_OPS <= covered, PUBLIC_OPS - covered
    for name in PUBLIC_OPS:
        assert callable(getattr(gc, name))
    dense_acts = {s.id.split("_", 1)[1] for s in SPECS if s.op == "dense"}
    from graphc.ops.activation import ACTIVATION_NAMES

    for act in ACTIVATION_NAMES:
        assert any(a.startswith(act) for a in dense_acts), act


def test_table_is_reusable():
    """Two builds give equal graphs; sampling is deterministic in (batch, dtype, seed)."""
    spec = BY_ID["dense_prelu"]
    a, _, pa = spec.build_graph()
    b, _, pb = spec.build_graph()
    assert a.node == b.node and list(pa) == list(pb) == ["fc/W", "fc/alpha", "fc/b"]
    f1, p1 = spec.sample(3, "float32", seed=7)
    f2, p2 = spec.sample(3, "float32", seed=7)
    assert f1["x"].dtype == np.float32 and f1["x"].shape == (3, 4)
    assert p1["fc/W"].dtype == np.float32
    for k in f1:
        np.testing.assert_array_equal(f1[k], f2[k])
    for k in p1:
        np.testing.assert_array_equal(p1[k], p2[k])
    f3, _ = spec.sample(3, "float32", seed=8)
    assert not np.array_equal(f1["x"], f3["x"])
    labels, _ = BY_ID["sce_int_labels"].sample(6, "float32", seed=0)
    assert labels["y"].dtype == np.int64 and labels["y"].shape == (6,)


# --- (a) shapes ---------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("spec_id", IDS)
def test_shape_inference(spec_id, batch):
    h = harness(spec_id)
    feeds, params = h.sample(batch, fd_safe=False)
    out = h.output(feeds, params)
    assert out.shape == _fill(h.out.shape, batch)
    assert out.dtype == np.float64
    assert h.out.dtype == "float"
    grads = h.gradients(feeds, params)
    for name, g in grads.items():
        want = feeds[name].shape if name in feeds else params[name].shape
        assert g.shape == want, name
        assert g.dtype == np.float64
    for name, t in h.params.items():
        assert params[name].shape == t.shape


# --- (b) gradients against finite differences ------------------------------------------

@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("spec_id", IDS)
def test_gradients_match_finite_differences(spec_id, batch):
    h = harness(spec_id)
    assert h.wrt, "every spec has something to differentiate"
    feeds, params = h.sample(batch, seed=1)
    assert_matches_finite_differences(h.loss, feeds, params, h.gradients(feeds, params), spec_id)


# --- (c) VJP inner product ---------------------------------------------------------------

@pytest.mark.parametrize("spec_id", IDS)
def test_vjp_inner_product(spec_id):
    """<J^T u, v> (one reverse pass) equals <u, J v> (a directional central difference)."""
    h = harness(spec_id)
    feeds, params = h.sample(7, seed=2)  # a batch size the element-wise check does not use
    assert_vjp_inner_product(h.loss, feeds, params, h.gradients(feeds, params), seed=3,
                             what=spec_id)


# --- (d) float32 ------------------------------------------------------------------------------

@pytest.mark.parametrize("spec_id", IDS)
def test_float32_reference_tracks_float64(spec_id):
    """The reference in float32 stays float32 and within float32 rounding of float64."""
    h64, h32 = harness(spec_id), harness(spec_id, "float32")
    feeds, params = h64.sample(5, seed=6)
    g64 = h64.gradients(feeds, params)
    g32 = h32.gradients({k: v.astype(np.float32) if v.dtype == np.float64 else v
                         for k, v in feeds.items()},
                        {k: v.astype(np.float32) for k, v in params.items()})
    out32, out64 = h32.output(feeds, params), h64.output(feeds, params)
    assert out32.dtype == np.float32
    scale = max(1.0, float(np.abs(out64).max()))
    np.testing.assert_allclose(out32, out64, rtol=2e-5, atol=2e-6 * scale)
    for name in h64.wrt:
        assert g32[name].dtype == np.float32, name
        scale = max(1.0, float(np.abs(g64[name]).max()))
        np.testing.assert_allclose(g32[name], g64[name], rtol=1e-4, atol=1e-5 * scale,
                                   err_msg=f"d/d{name}")


# --- (e) against PyTorch ----------------------------------------------------------------

try:
    import torch
except ImportError:  # the PyTorch comparisons are skipped, nothing else
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def _torch_values(spec, feeds, params):
    vals = {}
    for a in spec.args:
        arr = feeds[a.name]
        if a.dtype == "int64":
            vals[a.name] = torch.from_numpy(arr)
        else:
            vals[a.name] = torch.tensor(arr, dtype=torch.float64, requires_grad=True)
    for n, arr in params.items():
        vals[n] = torch.tensor(arr, dtype=torch.float64, requires_grad=True)
    return vals


def _check_against_torch(h: Harness, feeds, params):
    spec = h.spec
    vals = _torch_values(spec, feeds, params)
    ref = spec.torch(torch, vals)
    out = h.output(feeds, params)
    np.testing.assert_allclose(out, ref.detach().numpy(), rtol=1e-12, atol=1e-13,
                               err_msg=f"forward of {spec.id}")
    (ref * torch.from_numpy(feeds[PROJ])).sum().backward()
    grads = h.gradients(feeds, params)
    for name in h.wrt:
        tg = vals[name].grad
        tg = np.zeros_like(grads[name]) if tg is None else tg.numpy()
        np.testing.assert_allclose(grads[name], tg, rtol=1e-10, atol=1e-12,
                                   err_msg=f"d/d{name} of {spec.id}")


TORCH_IDS = [s.id for s in SPECS if s.torch is not None]


@needs_torch
@pytest.mark.parametrize("spec_id", TORCH_IDS)
def test_against_torch(spec_id):
    h = harness(spec_id)
    feeds, params = h.sample(5, seed=4, fd_safe=False)
    _check_against_torch(h, feeds, params)


KINKED = ["relu", "leaky_relu", "leaky_relu_alpha_0.2", "leaky_relu_alpha_-0.3", "prelu",
          "elu", "elu_alpha_0.5", "elu_alpha_-0.7", "softplus", "mae"]


@needs_torch
@pytest.mark.parametrize("spec_id", KINKED)
def test_kinks_follow_torch(spec_id):
    """At the non-differentiable points graphc picks the same one-sided derivative as PyTorch."""
    h = harness(spec_id)
    feeds, params = h.sample(4, seed=5, fd_safe=False)
    first = h.spec.args[0].name
    x = feeds[first].copy()
    x[::2, ::2] = 20.0 if spec_id == "softplus" else 0.0
    feeds[first] = x
    if spec_id == "mae":
        t = feeds["t"].copy()
        t[::2, ::2] = x[::2, ::2] = 0.7
        feeds["t"] = t
    _check_against_torch(h, feeds, params)


@pytest.mark.parametrize("backend", ["reference", "compiled"])
def test_scalar_feeds(backend):
    s = gc.input("s", ())
    x = gc.input("x", (None, 2))
    f = gc.function([x, s], [x * s], backend=backend, dtype="float64")
    np.testing.assert_array_equal(f(np.ones((2, 2)), np.asarray(3.0))[0], np.full((2, 2), 3.0))


def test_division_by_zero_is_a_graph_error():
    x = gc.input("x", (None, 2))
    with pytest.raises(gc.GraphError, match="division of a tensor by zero"):
        x / 0
