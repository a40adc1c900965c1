"""Every activation and loss at the extremes (see ``extremes.py`` and RELIABILITY.md).

Each path -- the ops' NumPy references (unfused and fused), the reference interpreter
through ``gc.function``, compiled programs with the default (fused) pipeline and with
the fusion passes removed, a plain-SGD training step, and the activation and dense
kernels called directly with the derivative from z and from y -- is run on every cell
of the table in float32 and float64, and each cell must hold: a literal cell exactly,
an ``F`` cell within the dtype's tolerance of the long-double closed form.  Compiled
and reference results are also compared with each other (including outputs the table
has no cell for: dW of a dense layer, gradients w.r.t. targets, updated weights).

Dense layers come in two widths because codegen lowers them two ways by static shape
(``emit.py``, ``_small``): a layer with k*m <= ``SMALL_MAX_KM`` (never PReLU) runs the
inlined loop kernels ``dense_fwd_small`` / ``dense_bwd_small`` / ``dense_bwd_sgd_small``
(per-element ``act_scalar`` / ``dact_from_*``), every other one the GEMM-path kernels
``dense_fwd`` / ``dense_bwd`` / ``dense_bwd_sgd``, whose epilogues ``bias_act_fwd`` and
``act_bwd_colsum`` are separate loop nests per activation.  The 1x1 layers take the
first, the 1 x ``WIDE`` layers the second; the tests assert which kernels ran.
"""

from __future__ import annotations

import numpy as np
import pytest
from graphc.kernels import activations as K
from graphc.kernels import dense as KD
from graphc.kernels.blas import GEMM_LOOPS_MAX_MNK_NT, choose_gemm

import graphc as gc
import graphc.passes
from graphc.ops.activation import saves_output
from graphc.ops.base import get_op
from graphc.passes.cse import cse
from graphc.passes.dce import dce
from graphc.passes.fold import fold_constants
from graphc.passes.simplify import simplify

from . import extremes as X

DTYPES = [np.float64, np.float32]
UNFUSED = [dce, fold_constants, simplify, cse]

# The "wide" layers are x (n, 1) @ W (1, WIDE) with W = 1, b = 0.  WIDE is above
# SMALL_MAX_KM, so codegen picks the GEMM-path kernels, and above the NT loop limit, so
# at batch 1 all three GEMMs of the layer (z = x @ W, dW = x.T @ dz, dx = dz @ W.T) are
# BLAS calls, not the loop kernel (test_compiled checks both).  With k = 1 nothing is
# summed in z: z[0, j] = x * 1 + 0 is the grid value in every column.  An identity
# block padded with zeros would not do: an inf or NaN feature times a zero weight is
# NaN, so every other column would see NaN.
WIDE = max(KD.SMALL_MAX_KM, GEMM_LOOPS_MAX_MNK_NT) + 1


def _is_derivative(key) -> bool:
    if key[0] == "row":
        return key[1] in ("softmax_bwd", "log_softmax_bwd", "sce_grad0", "sce_grad1")
    return key[0] == "bwd" or key[-1] == "bwd"


def _check(results, dtype) -> list[str]:
    """results: [(key, point, got, where)] -> a line per wrong cell."""
    bad = []
    for key, point, got, where in results:
        got = np.asarray(got, dtype=np.float64).ravel()
        lit = X.rule(key, point)
        want = X.expected(key, point, dtype)
        # a wide layer: every column holds the cell (any other size is a shape bug)
        one = want.size == 1 and got.size == WIDE
        if one:
            want = np.repeat(want, got.size)
        atol = 4.0 if _is_derivative(key) else 0.0
        if lit is not None and not isinstance(lit, tuple):
            ok = X.literal_matches(lit, got, dtype)
        else:
            ok = X.close(got, want, dtype, atol_scale=atol)
            if lit is not None:
                ok = ok and X.literal_matches(lit, got, dtype)
        if not ok:
            shown = got.tolist() if got.size <= 3 else f"{np.unique(got).tolist()} (distinct)"
            lit_shown = lit if lit is not None and not isinstance(lit, tuple) else None
            wanted = lit_shown if lit_shown is not None else want[:1 if one else None].tolist()
            bad.append(f"{where}: {key} at {point}: got {shown}, want {wanted}"
                       + (" in every entry" if one else ""))
    return bad


def _assert_all(results, dtype):
    bad = _check(results, dtype)
    assert not bad, f"{len(bad)} wrong cells ({np.dtype(dtype).name}):\n" + "\n".join(bad[:60])


# --------------------------------------------------------------- the table itself
@pytest.mark.parametrize("dtype", DTYPES)
def test_table_rules_agree_with_closed_forms(dtype):
    """A literal cell is what the closed form gives; every other cell is finite maths."""
    bad = []
    for key, points in X.all_keys():
        for p in points:
            v = X.expected_ld(key, p, dtype)
            lit = X.rule(key, p)
            ok = (np.isfinite(v).all() if lit is None
                  else X.literal_matches(lit, v.astype(dtype) if isinstance(lit, float) else v, dtype))
            if not ok:
                bad.append(f"{key} at {p}: closed form {v.tolist()}, rule {lit}")
    assert not bad, "\n".join(bad)


def test_reliability_md_has_the_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "RELIABILITY.md").read_text(encoding="utf-8")
    table = X.render()
    assert table in doc, ("RELIABILITY.md's Numerics table differs from tests/numerics/extremes.py;"
                          " regenerate it with: python -m tests.numerics.extremes")


# ------------------------------------------------------------------ op references
def _arr(v, dtype, shape=(1, 1)):
    return np.full(shape, v, dtype=dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_op_references(dtype):
    res = []
    one = np.array(1.0, dtype)
    with np.errstate(all="ignore"):
        for act in X.ACTS:
            alpha = X.ALPHA.get(act) if act != "prelu" else None
            slope = np.full((1,), 0.25, dtype)
            for p in X.GRID:
                z = _arr(X.grid_value(p, dtype), dtype)
                g = np.ones_like(z)
                if act == "linear":
                    y = z.copy()
                elif act == "prelu":
                    y = get_op("prelu").reference([z, slope], {})
                else:
                    y = get_op(act).reference([z], {"alpha": alpha})
                res.append((("fwd", act), p, y, "op"))
                modes = [False] + ([True] if saves_output(act, alpha) else [])
                for from_y in modes:
                    ins = [y if from_y else z, g] + ([slope] if act == "prelu" else [])
                    d = get_op("act_grad").reference(ins, {"act": act, "alpha": alpha,
                                                           "from_y": from_y})
                    res.append((("bwd", act), p, d, f"act_grad from_y={from_y}"))
                # the fused layer with W = 1, b = 0: z passes through unchanged
                W, b = np.ones((1, 1), dtype), np.zeros((1,), dtype)
                attrs = {"act": act, "alpha": alpha, "has_bias": True, "save_z": True,
                         "from_y": saves_output(act, alpha), "outs": ("dx", "dW", "db")}
                dins = [z, W, b] + ([slope] if act == "prelu" else [])
                yd, zd = get_op("dense").reference(dins, attrs)
                res.append((("fwd", act), p, yd, "dense"))
                saved = yd if attrs["from_y"] else zd
                bins = [z, W, saved, g] + ([slope] if act == "prelu" else [])
                dx, dW, db = get_op("dense_bwd").reference(bins, attrs)
                res.append((("bwd", act), p, dx, "dense_bwd dx"))
                res.append((("bwd", act), p, db, "dense_bwd db"))
        for kind, t in X.LOSSES:
            name = {"bce": "binary_cross_entropy"}.get(kind, kind)
            for p in X.GRID:
                z = _arr(X.grid_value(p, dtype), dtype)
                tt = _arr(t if t is not None else 0.0, dtype)
                if kind == "l2":
                    res.append((("l2", None, "fwd"), p, get_op("l2").reference([z], {}), "op"))
                    res.append((("l2", None, "bwd"), p, get_op("mul").reference([z, one], {}),
                                "op"))
                    continue
                attrs = {"q": X.Q}
                res.append(((kind, t, "fwd"), p, get_op(name).reference([z, tt], attrs), "op"))
                gattrs = {"kind": name, "wrt": "pred", "q": X.Q}
                res.append(((kind, t, "bwd"), p, get_op("loss_grad").reference([z, tt, one], gattrs),
                            "loss_grad"))
                if kind == "bce":
                    loss, s = get_op("bce_fused").reference([z, tt], {})
                    res.append(((kind, t, "fwd"), p, loss, "bce_fused"))
                    res.append(((kind, t, "bwd"), p, get_op("bce_bwd").reference([s, tt, one], {}),
                                "bce_bwd"))
        for row in X.ROWS:
            x = X.row_value(row, dtype)
            gr = np.array([X.ROW_G], dtype)
            for op in ("softmax", "log_softmax"):
                y = get_op(op).reference([x], {})
                res.append((("row", op), row, y, "op"))
                res.append((("row", f"{op}_bwd"), row, get_op(f"{op}_grad").reference([y, gr], {}),
                            "op"))
            for label in (0, 1):
                for lab in (np.array([label]), np.eye(3, dtype=dtype)[[label]]):
                    w = "int" if lab.dtype.kind == "i" else "one-hot"
                    res.append((("row", f"sce_loss{label}"), row,
                                get_op("softmax_cross_entropy").reference([x, lab], {}), w))
                    res.append((("row", f"sce_grad{label}"), row,
                                get_op("sce_grad").reference([x, lab, one], {}), w))
                    loss, pr = get_op("sce_fused").reference([x, lab], {})
                    res.append((("row", f"sce_loss{label}"), row, loss, f"sce_fused {w}"))
                    res.append((("row", f"sce_grad{label}"), row,
                                get_op("sce_bwd").reference([pr, lab, one], {}), f"sce_bwd {w}"))
    _assert_all(res, dtype)


# ----------------------------------------------------------------- whole programs
def _build_programs():
    """name -> (inputs, outputs {label: tensor}, feeds(point|row, label) -> arrays)."""
    progs = {}
    # activations alone, and as fused dense layers (W = 1, b = 0)
    for layer in (False, True):
        ins, outs, loss_terms, xs = [], {}, [], []
        for i, act in enumerate(X.ACTS):
            x = gc.input(f"x{i}", (None, 1))
            g = gc.input(f"g{i}", (None, 1))
            if layer:
                W = gc.parameter(f"d{i}/W", (1, 1), init="ones")
                b = gc.parameter(f"d{i}/b", (1,), init="zeros")
                y = gc.activation(gc.matmul(x, W) + b, act, layer=f"d{i}")
                wrt = [x, W, b]
            else:
                y = gc.activation(x, act, layer=f"p{i}") if act != "linear" else gc.identity(x)
                wrt = [x]
            ins += [x, g]
            outs[("fwd", act)] = y
            loss_terms.append((gc.sum(y * g), wrt, act))
        total = loss_terms[0][0]
        for term, _, _ in loss_terms[1:]:
            total = total + term
        for _term, wrt, act in loss_terms:
            grads = gc.grad(total, wrt)
            outs[("bwd", act)] = grads[0]
            if layer:
                outs[("dW", act)] = grads[1]
                outs[("db", act)] = grads[2]

        def feeds(point, dtype, _ins=ins):
            v = X.grid_value(point, dtype)
            return [np.full((1, 1), v if k % 2 == 0 else 1.0, dtype) for k in range(len(_ins))]

        progs["dense" if layer else "act"] = (ins, outs, feeds, X.GRID)

    # activations as wide dense layers (1 -> WIDE, W = 1, b = 0: see WIDE).  Fed g = 1
    # (variant 0), db[j] = f'(z) in every column; fed g = e_0 (variant 1), dx = sum_j
    # f'(z) g_j = f'(z) + WIDE - 1 terms f'(z) * 0, which are 0, or NaN exactly where
    # f'(z) is NaN, so dx is the table's cell too
    ins, outs, terms = [], {}, []
    for i, act in enumerate(X.ACTS):
        x = gc.input(f"wx{i}", (None, 1))
        g = gc.input(f"wg{i}", (None, WIDE))
        W = gc.parameter(f"w{i}/W", (1, WIDE), init="ones")
        b = gc.parameter(f"w{i}/b", (WIDE,), init="zeros")
        y = gc.activation(gc.matmul(x, W) + b, act, layer=f"w{i}")
        ins += [x, g]
        outs[("fwd", act)] = y
        terms.append((gc.sum(y * g), [x, W, b], act))
    total = terms[0][0]
    for term, _, _ in terms[1:]:
        total = total + term
    for _term, wrt, act in terms:
        outs[("bwd", act)], outs[("dW", act)], outs[("db", act)] = gc.grad(total, wrt)

    def wide_feeds(point, dtype, onehot, _n=len(X.ACTS)):
        x = np.full((1, 1), X.grid_value(point, dtype), dtype)
        g = np.eye(1, WIDE, dtype=dtype) if onehot else np.ones((1, WIDE), dtype)
        return [x, g] * _n

    progs["wide"] = (ins, outs, wide_feeds, X.GRID)

    # elementwise losses: gradient w.r.t. predictions (fused with the loss for bce)
    # and w.r.t. targets
    ins, outs = [], {}
    for i, (kind, t) in enumerate(X.LOSSES):
        p = gc.input(f"p{i}", (None, 1))
        tt = gc.input(f"t{i}", (None, 1))
        ins += [p, tt]
        if kind == "l2":
            loss = gc.l2(p)
            outs[(kind, t, "fwd")] = loss
            outs[(kind, t, "bwd")] = gc.grad(loss, [p])[0]
            continue
        fn = {"bce": gc.binary_cross_entropy, "mse": gc.mse, "mae": gc.mae,
              "quantile": lambda a, b: gc.quantile(a, b, q=X.Q)}[kind]
        loss = fn(p, tt)
        dp, dt = gc.grad(loss, [p, tt])
        outs[(kind, t, "fwd")] = loss
        outs[(kind, t, "bwd")] = dp
        outs[("dt", kind, t)] = dt

    def loss_feeds(point, dtype, _ins=ins):
        v = X.grid_value(point, dtype)
        arrs = []
        for kind, t in X.LOSSES:
            arrs += [np.full((1, 1), v, dtype), np.full((1, 1), 0.0 if t is None else t, dtype)]
        return arrs

    progs["losses"] = (ins, outs, loss_feeds, X.GRID)

    # softmax / log_softmax and cross-entropy with int labels and one-hot targets
    xs, gs = gc.input("xs", (None, 3)), gc.input("gs", (None, 3))
    xl, gl = gc.input("xl", (None, 3)), gc.input("gl", (None, 3))
    zi, yi = gc.input("zi", (None, 3)), gc.input("yi", (None,), dtype="int64")
    zo, yo = gc.input("zo", (None, 3)), gc.input("yo", (None, 3))
    sm, lsm = gc.softmax(xs), gc.log_softmax(xl)
    li, lo = gc.softmax_cross_entropy(zi, yi), gc.softmax_cross_entropy(zo, yo)
    outs = {("row", "softmax"): sm, ("row", "log_softmax"): lsm,
            ("row", "softmax_bwd"): gc.grad(gc.sum(sm * gs), [xs])[0],
            ("row", "log_softmax_bwd"): gc.grad(gc.sum(lsm * gl), [xl])[0],
            ("row", "sce_loss"): li, ("row", "sce_grad"): gc.grad(li, [zi])[0],
            ("row", "sce_loss_onehot"): lo, ("row", "sce_grad_onehot"): gc.grad(lo, [zo])[0],
            ("dt", "sce_onehot"): gc.grad(lo, [yo])[0]}

    def row_feeds(row, dtype, label=0):
        x = X.row_value(row, dtype)
        g = np.array([X.ROW_G], dtype)
        return [x, g, x, g, x, np.array([label]), x, np.eye(3, dtype=dtype)[[label]]]

    progs["rows"] = ([xs, gs, xl, gl, zi, yi, zo, yo], outs, row_feeds, tuple(X.ROWS))
    return progs


_PROGS: dict = {}


def _programs():
    if not _PROGS:
        _PROGS.update(_build_programs())
    return _PROGS


_FNS: dict = {}


def _function(name, dtype, backend, fused):
    key = (name, np.dtype(dtype).name, backend, fused)
    if key not in _FNS:
        ins, outs, _, _ = _programs()[name]
        labels = list(outs)
        with pytest.MonkeyPatch.context() as mp:
            if not fused:
                mp.setattr(graphc.passes, "PIPELINE", UNFUSED)
            f = gc.function(ins, [outs[k] for k in labels], dtype=np.dtype(dtype).name,
                            backend=backend)
        _FNS[key] = (f, labels)
    return _FNS[key]


def _run(name, dtype, backend, fused):
    """[(label, point, variant, array)] for every output at every point."""
    f, labels = _function(name, dtype, backend, fused)
    _, _, feeds, points = _programs()[name]
    out = []
    for p in points:
        for v, kw in VARIANTS.get(name, [(0, {})]):
            with np.errstate(all="ignore"):
                vals = f(*feeds(p, dtype, **kw))
            out += [(lab, p, v, np.asarray(val)) for lab, val in zip(labels, vals, strict=True)]
    return out


# Feeds of a program beyond the grid point: the label (rows), g = 1 or g = e_0 (wide).
VARIANTS = {"rows": [(0, {"label": 0}), (1, {"label": 1})],
            "wide": [(0, {"onehot": False}), (1, {"onehot": True})]}


def _cells(results, name):
    """Program outputs -> table cells (outputs without a cell are skipped)."""
    cells = []
    for lab, p, v, val in results:
        if lab[0] in ("dW", "db", "dt"):
            if lab[0] == "db":
                # wide with g = e_0: only column 0 carries f'(z); the others are f'(z) * 0
                cells.append((("bwd", lab[1]), p, val[..., :1] if v == 1 else val, "db"))
            continue
        if name == "wide" and lab[0] == "bwd" and v == 0:
            continue  # dx = WIDE * f'(z) with g = 1: compared with the reference only
        if lab[0] == "row":
            op = lab[1]
            if op.startswith("sce"):
                base = "sce_loss" if "loss" in op else "sce_grad"
                cells.append((("row", f"{base}{v}"), p, val, op))
            elif v == 0:
                cells.append((lab, p, val, "program"))
            continue
        cells.append((lab, p, val, "program"))
    return cells


PROGRAMS = ["act", "dense", "wide", "losses", "rows"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", PROGRAMS)
def test_reference_interpreter(name, dtype):
    _assert_all(_cells(_run(name, dtype, "reference", True), name), dtype)


# Without the fusion passes the losses and rows take the unfused kernels (sce_grad,
# loss_grad); act has nothing to fuse, and unfused dense is gemm + the act kernels.
COMPILED = [(n, True) for n in PROGRAMS] + [("losses", False), ("rows", False)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, fused", COMPILED,
                         ids=[f"{n}-{'fused' if f else 'unfused'}" for n, f in COMPILED])
def test_compiled(name, dtype, fused):
    comp = _run(name, dtype, "compiled", fused)
    _assert_all(_cells(comp, name), dtype)
    # compiled == reference on every output, the table's or not (dW, d/d target)
    ref = _run(name, dtype, "reference", True)
    bad = []
    for (lab, p, v, a), (_, _, _, b) in zip(comp, ref, strict=True):
        if not X.close(a, b, dtype, atol_scale=4.0):
            bad.append(f"{lab} at {p} (variant {v}): compiled {a.ravel().tolist()}, "
                       f"reference {b.ravel().tolist()}")
    assert not bad, "\n".join(bad)
    src = _function(name, dtype, "compiled", fused)[0].program._impl.source
    n = len(X.ACTS)
    # {kernel call: how many times}; None: at least once.  The 1x1 layers take the small
    # kernels except PReLU (never small); the wide ones the GEMM-path kernels, every one.
    want = {("dense", True): {"K_dense.dense_fwd_small(": n - 1, "K_dense.dense_fwd(": 1,
                              "K_dense.dense_bwd_small(": n - 1, "K_dense.dense_bwd(": 1},
            ("wide", True): {"K_dense.dense_fwd(": n, "K_dense.dense_bwd(": n,
                             "_small(": 0},
            ("losses", True): {"K_loss.bce_fwd(": None, "K_ew.ew_sub(": None},  # bce_fused/_bwd
            ("rows", True): {"K_loss.sce_fwd(": None, "K_loss.sce_bwd(": None,
                             "K_loss.sce_onehot_fwd(": None},
            ("losses", False): {"K_loss.bce_bwd(": None},
            ("rows", False): {"K_act.softmax_fwd(": None}}.get((name, fused), {"K_act.act_": None})
    _assert_calls(src, want, f"{name} ({'fused' if fused else 'unfused'})")
    if name == "wide":  # ... and their GEMMs go to BLAS at batch 1 (z, dW, dx)
        assert [choose_gemm(1, WIDE, 1), choose_gemm(1, WIDE, 1, transa=True),
                choose_gemm(1, 1, WIDE, transb=True)] == ["blas"] * 3


def _entry(src: str, name: str) -> str:
    """One entry point's body in a generated module (``evaluate`` runs the layers too)."""
    start = src.index(f"def {name}(")
    end = src.find("\ndef ", start)
    return src[start:] if end < 0 else src[start:end]


def _assert_calls(src: str, want: dict, what: str) -> None:
    """Each kernel call in ``want`` occurs in the generated source as often as stated, so
    a moved threshold or a changed lowering cannot silently move a test off its path."""
    for call, count in want.items():
        got = src.count(call)
        ok = got > 0 if count is None else got == count
        assert ok, f"{what} calls {call} {got} times, want {count if count is not None else '>= 1'}"


# ------------------------------------------------------------ kernels called directly
@pytest.mark.parametrize("dtype", DTYPES)
def test_activation_kernels_both_derivative_paths(dtype):
    """act_fwd, and act_bwd from z and (where valid) from y, on the whole grid at once."""
    res = []
    z = np.array([[X.grid_value(p, dtype) for p in X.GRID]], dtype)
    g = np.ones_like(z)
    for act in X.ACTS:
        code = K.ACTIVATION_CODES[act]
        alpha = X.ALPHA.get(act, 0.0)
        a = np.full(z.shape[1], 0.25, dtype) if act == "prelu" else np.zeros(0, dtype)
        y = np.empty_like(z)
        K.act_fwd(code, alpha, a, z, y)
        res += [(("fwd", act), p, y[0, i], "act_fwd") for i, p in enumerate(X.GRID)]
        for from_y in (False, True):
            if from_y and not K.derivative_from_y_ok(code, alpha):
                continue
            dz = np.empty_like(z)
            K.act_bwd(code, alpha, a, from_y, y if from_y else z, g, dz)
            res += [(("bwd", act), p, dz[0, i], f"act_bwd from_y={from_y}")
                    for i, p in enumerate(X.GRID)]
    _assert_all(res, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_prelu_slope_gradient_keeps_nan(dtype):
    z = np.array([[X.grid_value(p, dtype) for p in X.GRID]], dtype).T.copy()  # (13, 1)
    g = np.ones_like(z)
    da = np.empty(1, dtype)
    for i, p in enumerate(X.GRID):
        K.prelu_da(z[i:i + 1], g[i:i + 1], da)
        with np.errstate(all="ignore"):
            want = get_op("prelu_da").reference([z[i:i + 1], g[i:i + 1]], {})
        assert X.close(da, want, dtype), (p, da, want)


# ------------------------------------------------------------ a plain-SGD training step
def _sgd_program(dtype, backend):
    """Per activation, a linear 1x1 layer feeding a 1 x WIDE layer, all on the same x,
    trained by plain SGD, so each update folds into its backward: the 1 x WIDE layer's
    into ``dense_bwd_sgd`` (GEMM path), the 1x1 layer's into ``dense_bwd_sgd_small``.  The
    linear layer in front passes x through exactly and makes the wide layer's folded
    backward compute dx too (with the old W).  lr = 1 and b = 0: the new b is exactly
    -db, so the fold's db is a table cell.  (1x1 layers with each activation would add
    as much compile time again; test_dense_backward_kernels_both_derivative_paths runs
    ``dense_bwd_sgd_small`` on the grid for every activation instead.)"""
    x = gc.input("x", (None, 1))
    gw = gc.input("gw", (None, WIDE))

    def layer(h, name, width, act):
        W = gc.parameter(f"{name}/W", (h.shape[1], width), init="ones")
        b = gc.parameter(f"{name}/b", (width,), init="zeros")
        return gc.activation(gc.matmul(h, W) + b, act, layer=name)

    loss = None
    for i, act in enumerate(X.ACTS):
        term = gc.sum(layer(layer(x, f"p{i}", 1, "linear"), f"w{i}", WIDE, act) * gw)
        loss = term if loss is None else loss + term
    return gc.compile(loss=loss, optimizer=gc.optim.SGD(lr=1.0), dtype=np.dtype(dtype).name,
                      backend=backend)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_step(dtype):
    """One plain-SGD step per grid point (from the same initial weights) on both backends:
    the loss and every updated parameter agree (NaN and inf in the same places), and the
    fold's derivatives are the table's: the new b of the wide layer is -f'(z) (g = 1),
    and with g = e_0 the linear layer's new b is -dx of the wide layer = -f'(z)."""
    comp, ref = _sgd_program(dtype, "compiled"), _sgd_program(dtype, "reference")
    n = len(X.ACTS)
    # every update folded (no optimizer kernel): the wide layers on the GEMM path, the
    # linear 1x1 layers on the small kernels
    _assert_calls(_entry(comp._impl.source, "train_step"),
                  {"K_dense.dense_bwd_sgd(": n, "K_dense.dense_bwd_sgd_small(": n,
                   "K_dense.dense_fwd(": n, "K_dense.dense_fwd_small(": n,
                   "K_opt.": 0, "K_dense.dense_bwd(": 0, "K_dense.dense_bwd_small(": 0},
                  "the SGD step")
    init = comp.params
    bad, cells = [], []
    for p in X.GRID:
        for onehot in (False, True):
            feeds = {"x": np.full((1, 1), X.grid_value(p, dtype), dtype),
                     "gw": np.eye(1, WIDE, dtype=dtype) if onehot else np.ones((1, WIDE), dtype)}
            got = []
            for prog in (comp, ref):
                prog.set_params(init)
                with np.errstate(all="ignore"):
                    loss = prog.step(feeds)
                got.append((np.array([loss]), prog.params))
            (lc, pc), (lr, pr) = got
            where = f"at {p}, g = {'e_0' if onehot else '1'}"
            if not X.close(lc, lr, dtype, atol_scale=4.0):
                bad.append(f"loss {where}: compiled {lc.tolist()}, reference {lr.tolist()}")
            for name in init:
                if not X.close(pc[name], pr[name], dtype, atol_scale=4.0):
                    bad.append(f"{name} {where}: compiled {pc[name].ravel()[:3].tolist()}, "
                               f"reference {pr[name].ravel()[:3].tolist()}")
            with np.errstate(all="ignore"):
                for i, act in enumerate(X.ACTS):
                    key = ("bwd", act)
                    if onehot:
                        cells.append((key, p, -pc[f"w{i}/b"][:1], "sgd wide db"))
                        cells.append((key, p, -pc[f"p{i}/b"], "sgd wide dx"))
                    else:
                        cells.append((key, p, -pc[f"w{i}/b"], "sgd wide db"))
    assert not bad, f"{len(bad)} differences:\n" + "\n".join(bad[:60])
    _assert_all(cells, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_backward_kernels_both_derivative_paths(dtype):
    """dense_bwd, dense_bwd_sgd and their small variants called directly on a 1 x WIDE
    layer with a bias, derivative from z and (where valid) from y: dz, db and the SGD
    fold's db (-b after a step with lr = 1 from b = 0) are the table's, and the fold's
    new W is W - x.T @ dz (NaN and inf in the same places).  A compiled graph at the
    table's alphas takes the derivative from y for every activation but softplus and
    PReLU, and act_bwd (tested above) has no bias, so without this the from-z loops of
    act_bwd_colsum that also sum db, the small kernels' dact_from_z for relu and
    leaky_relu, and dense_bwd_sgd_small with any activation but linear would never see
    the grid."""
    res, bad = [], []
    W, g = np.ones((1, WIDE), dtype), np.ones((1, WIDE), dtype)
    dx, tmp = np.empty((1, 1), dtype), np.empty(2 * WIDE, dtype)
    for act in X.ACTS:
        code, alpha = K.ACTIVATION_CODES[act], X.ALPHA.get(act, 0.0)
        prelu = act == "prelu"
        for p in X.GRID:
            x = np.full((1, 1), X.grid_value(p, dtype), dtype)
            z = np.repeat(x, WIDE, axis=1)
            a = np.full(WIDE if prelu else 0, 0.25, dtype)
            y = np.empty_like(z)
            K.act_fwd(code, alpha, a, z, y)
            for from_y in (False, True):
                if from_y and not K.derivative_from_y_ok(code, alpha):
                    continue
                saved = y if from_y else z
                for small in (False,) if prelu else (False, True):  # PReLU is never small
                    tag = f"dense_bwd{'_small' if small else ''} from_y={from_y}"
                    dz, dW, db = np.empty_like(z), np.empty_like(W), np.empty(WIDE, dtype)
                    da = np.empty(WIDE if prelu else 0, dtype)
                    bwd = KD.dense_bwd_small if small else KD.dense_bwd
                    bwd(x, W, saved, g, code, alpha, a, from_y, dz, dx, dW, db, da)
                    res += [(("bwd", act), p, dz, f"{tag} dz"), (("bwd", act), p, db, f"{tag} db")]
                    b, W1, a1 = np.zeros(WIDE, dtype), W.copy(), a.copy()
                    sgd = KD.dense_bwd_sgd_small if small else KD.dense_bwd_sgd
                    with np.errstate(all="ignore"):
                        W_want = W - x.T @ dz
                    sgd(x, W1, b, saved, g, code, alpha, a1, from_y, dz, dx, tmp, 1.0, 0.0)
                    res.append((("bwd", act), p, -b, f"{tag} sgd db"))
                    if not X.close(W1, W_want, dtype):
                        bad.append(f"{tag} sgd W, {act} at {p}: {np.unique(W1).tolist()}, "
                                   f"want {np.unique(W_want).tolist()}")
    assert not bad, "\n".join(bad[:60])
    _assert_all(res, dtype)
