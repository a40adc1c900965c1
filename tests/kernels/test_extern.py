"""Generated code calls kernels as separately compiled native functions (``kernels/extern.py``).

What must hold: a call through the intrinsic computes what the kernel computes,
returns its value and raises its exceptions; an entry point's LLVM module declares
the kernels it calls instead of linking their IR in (the compile-time point of it);
and symbol names depend only on what determines the code.  Loading a cached entry
point in a fresh process (the reload hook) is in ``tests/compiled/test_cache.py``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from graphc.kernels import elementwise, extern, losses, views
from kernel_dispatchers import kernel_dispatchers
from numba import njit, types
from numba.core.registry import CPUDispatcher

import graphc as gc

EW = extern.module("elementwise")
LOSS = extern.module("losses")


@njit(cache=False)
def _add_through_extern(a, b, out):
    EW.ew_add(a, b, out)


@njit(cache=False)
def _sce_through_extern(z, labels, p):
    return LOSS.sce_fwd(z, labels, p)


def test_the_module_view_replaces_kernels_and_keeps_the_rest():
    assert EW.ew_add is not elementwise.ew_add
    assert not isinstance(EW.ew_add, CPUDispatcher)
    assert extern.module("elementwise") is EW  # one view per module
    v = extern.module("views")
    assert v.carve is views.carve  # an overload, not a kernel: inlined as before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_call_through_the_intrinsic_computes_what_the_kernel_does(dtype):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 15)).astype(dtype)  # the elementwise kernels are flat
    got, want = np.empty_like(a), np.empty_like(a)
    _add_through_extern(a, b, got)
    elementwise.ew_add(a, b, want)
    np.testing.assert_array_equal(got, want)


def test_return_values_and_exceptions_cross_the_call():
    z = np.array([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]])
    labels = np.array([2, 0])
    p_got, p_want = np.empty_like(z), np.empty_like(z)
    assert _sce_through_extern(z, labels, p_got) == losses.sce_fwd(z, labels, p_want)
    np.testing.assert_array_equal(p_got, p_want)
    with pytest.raises(ValueError, match="class label out of range"):
        _sce_through_extern(z, np.array([2, 3]), p_got)


def test_symbol_names_depend_on_the_kernel_and_its_argument_types():
    f64 = (types.float64[:, ::1],) * 3
    f32 = (types.float32[:, ::1],) * 3
    add = extern._symbol(elementwise.ew_add, f64)
    assert add == extern._symbol(elementwise.ew_add, f64)
    assert add.startswith("graphc_k_ew_add_")
    assert len({add, extern._symbol(elementwise.ew_add, f32),
                extern._symbol(elementwise.ew_sub, f64)}) == 3


def test_register_gives_the_kernels_own_machine_code():
    sig = (types.float64[::1], types.float64, types.float64[::1])
    name, cres = extern.register(elementwise.ew_scale, sig)
    assert name == extern._symbol(elementwise.ew_scale, sig)
    assert extern._registered[name] == cres.library.get_pointer_to_function(
        cres.fndesc.mangled_name)
    with pytest.raises(TypeError, match="not a compiled kernel"):
        extern._find("graphc.kernels.views", "carve")


def test_entry_points_declare_kernels_instead_of_linking_them(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))  # a fresh compile
    x = gc.input("x", (None, 11))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 13, activation="tanh", name="extern_h")
    out = gc.dense(h, 3, name="extern_out")
    net = gc.compile(loss=gc.softmax_cross_entropy(out, y), outputs={"out": out},
                     optimizer=gc.optim.Adam(lr=0.01), dtype="float64", seed=0)
    rng = np.random.default_rng(0)
    net.step({"x": rng.standard_normal((4, 11)), "y": rng.integers(0, 3, 4)})
    fn = net._impl.entries["train_step"].fn
    ir = "\n".join(fn.inspect_llvm().values())
    defined = re.findall(r'^define [^@]*@"?([^\s("]+)', ir, re.M)
    declared = re.findall(r'^declare [^@]*@"?(graphc_k_[^\s("]+)', ir, re.M)
    kernels = {k.rsplit(".", 1)[1] for k in kernel_dispatchers()}
    assert len(kernels) > 40
    called = {d.split("graphc_k_")[1].rsplit("_", 1)[0] for d in declared}
    assert "adam" in called and len(called) >= 5, called
    linked = sorted(d for d in defined if any(f"{len(k)}{k}B" in d for k in kernels))
    assert not linked, linked


def test_a_cached_caller_expecting_another_return_type_is_refused():
    sig = (types.float64[::1], types.float64, types.float64[::1])
    _, cres = extern.register(elementwise.ew_scale, sig)
    extern._reload("graphc.kernels.elementwise", "ew_scale", sig, cres.signature.return_type)
    with pytest.raises(RuntimeError, match="now returns"):
        extern._reload("graphc.kernels.elementwise", "ew_scale", sig, types.int64)
