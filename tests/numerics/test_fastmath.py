"""No kernel and no generated function may carry the ``nnan`` or ``ninf`` fast-math flags.

With them LLVM may assume no NaN/inf exists and fold ``isnan``/``isfinite`` (and the
``x * 0`` finiteness test of ``all_finite``) to constants, which would silently turn
off the numerics mode, ``fit``'s non-finite-loss check and the NaN rules of the
extremes table.  Three views: the decorators' options of every dispatcher, the
generated module's source, and the LLVM IR of freshly compiled kernels.
"""

from __future__ import annotations

import re

import graphc.kernels
import numpy as np
import pytest
from kernel_dispatchers import kernel_dispatchers
from numba import njit

import graphc as gc

FORBIDDEN = {"nnan", "ninf", "fast"}  # "fast" implies both
_FLAG = re.compile(r"\b(nnan|ninf|fast|reassoc|contract|arcp|nsz|afn)\b")


def _flags(fm) -> set[str]:
    if fm is True:
        return {"fast"}
    if not fm:
        return set()
    return {str(f) for f in fm}


def test_every_kernel_decorator_avoids_nnan_ninf():
    found = kernel_dispatchers()
    assert len(found) > 40, "kernel discovery found too few dispatchers"
    bad = {n: _flags(d.targetoptions.get("fastmath")) & FORBIDDEN for n, d in found.items()}
    assert not {n: f for n, f in bad.items() if f}


def test_no_fastmath_true_in_kernel_sources():
    from pathlib import Path

    for path in Path(graphc.kernels.__file__).parent.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"fastmath\s*=\s*True", text), path
        for m in re.finditer(r"fastmath\s*=\s*\{([^}]*)\}", text):
            assert not _flags(re.findall(r"\w+", m.group(1))) & FORBIDDEN, (path, m.group(0))


def _training_program(check_numerics=False):
    x = gc.input("x", (None, 4))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 5, activation="tanh", name="fm1")
    logits = gc.dense(h, 3, name="fm2")
    loss = gc.softmax_cross_entropy(logits, y)
    return gc.compile(loss=loss, outputs={"logits": logits}, optimizer=gc.optim.Adam(lr=0.01),
                      dtype="float32", check_numerics=check_numerics)


@pytest.mark.parametrize("check_numerics", [False, True])
def test_generated_module_flags(check_numerics):
    net = _training_program(check_numerics)
    src = net._impl.source
    line = next(ln for ln in src.splitlines() if ln.startswith("FASTMATH = "))
    assert not _flags(re.findall(r"'(\w+)'", line)) & FORBIDDEN, line
    decorators = [ln for ln in src.splitlines() if ln.startswith("@njit(")]
    assert decorators and all("fastmath=FASTMATH" in d for d in decorators), decorators
    assert "fastmath=True" not in src
    for e in net._impl.entries.values():
        assert not _flags(e.fn.targetoptions.get("fastmath")) & FORBIDDEN, e.name


def _fresh_ir(disp, *args) -> str:
    """LLVM IR of a fresh, uncached compile of ``disp`` with its own options
    (IR of code loaded from Numba's cache cannot be inspected)."""
    opts = {k: v for k, v in disp.targetoptions.items() if k in ("fastmath", "nogil", "boundscheck")}
    fresh = njit(**opts)(disp.py_func)
    fresh(*args)
    return "\n".join(fresh.inspect_llvm().values())


@pytest.mark.parametrize("which", ["bce_fwd", "softmax_fwd", "all_finite"])
def test_llvm_ir_has_no_nnan_ninf(which):
    from graphc.kernels import activations, elementwise, losses

    z = np.linspace(-3, 3, 12, dtype=np.float32)
    if which == "bce_fwd":
        ir = _fresh_ir(losses.bce_fwd, z, np.ones_like(z))
    elif which == "softmax_fwd":
        ir = _fresh_ir(activations.softmax_fwd, z.reshape(3, 4), np.empty((3, 4), np.float32))
    else:
        ir = _fresh_ir(elementwise.all_finite, z)
    flags = set(_FLAG.findall(ir))
    assert flags & {"reassoc", "contract", "nsz"}, "expected some fast-math flags in the IR"
    assert not flags & FORBIDDEN, flags & FORBIDDEN


def test_all_finite_is_not_folded():
    from graphc.kernels.elementwise import all_finite

    for dt in (np.float32, np.float64):
        for n in (1, 7, 300, 1000):
            a = np.ones(n, dt)
            assert all_finite(a)
            for bad in (np.nan, np.inf, -np.inf):
                b = a.copy()
                b[n - 1] = bad
                assert not all_finite(b), (dt, n, bad)
