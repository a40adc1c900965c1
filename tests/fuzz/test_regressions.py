"""Regression tests: every bug the fuzzers found, as the (shrunk) case that found it.

Each test is a fixed :class:`~.strategies.Case` run through the same check as
the fuzzer (compiled against reference, strict NaN/inf positions, the
tolerances of :mod:`.tolerances`), plus, where it helps, a direct assertion
on the symptom.
"""

from __future__ import annotations

import textwrap

import numpy as np

import graphc as gc

from .harness import check_case
from .strategies import Case


def case(model: str, feeds: str, *, dtype: str = "float64", batches=(3, 4, 2),
         optimizer: str = "gc.optim.SGD(lr=0.1)", train: dict | None = None, depth: int = 1,
         grad_inputs: tuple[str, ...] = (), seed: int = 0) -> Case:
    return Case(textwrap.dedent(model).strip() + "\n", textwrap.dedent(feeds).strip() + "\n",
                dtype, seed, tuple(batches), optimizer, train or {}, depth, grad_inputs,
                ["regression"])


def test_nan_loss_does_not_read_an_uninitialised_status_word():
    """A step whose loss is NaN (NaN features, or batch 0) made the runtime read the
    status word of a freshly np.empty workspace, raising KeyError/ValueError or a bogus
    FeedError/NumericsError at random (fixed in e717715, found here independently)."""
    c = case('''
        def model():
            x = gc.input("x", (None, 3))
            h0 = gc.dense(x, 2, name="l0")
            y = gc.input("y", (None, 2))
            loss = gc.mse(h0, y)
            return {"loss": loss, "out": h0}
        ''', '''
        def feeds(rng, n):
            x = rng.standard_normal((n, 3))
            x[n // 2:n // 2 + 1, 1] = np.nan
            return {"x": x.astype("float32"), "y": rng.standard_normal((n, 2)).astype("float32")}
        ''', dtype="float32", batches=(2, 0, 5))
    check_case(c)
    # And directly, for every fresh workspace size: NaN out, no exception.
    x = gc.input("x", (None, 3))
    y = gc.input("y", (None, 2))
    loss = gc.mse(gc.dense(x, 2, name="l0"), y)
    net = gc.compile(loss=loss, optimizer=gc.optim.SGD(0.1), dtype="float32")
    for n in range(1, 40):
        xb = np.full((n, 3), np.nan, dtype=np.float32)
        assert np.isnan(net.step({"x": xb, "y": np.zeros((n, 2), np.float32)}))
