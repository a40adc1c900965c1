"""The extremes table: every activation and loss at +-0, subnormals, +-1e4, +-88.7, +-1e30,
+-inf and NaN, forward and backward.

This module is the data the tests check and the source of the table in
RELIABILITY.md ("Numerics"; ``python -m tests.numerics.extremes`` prints it, and a test
holds the two equal).  Each cell is either

* ``F`` (not listed in ``RULES``): the mathematics is finite there, and the result must
  equal the closed form below evaluated in ``np.longdouble`` (80-bit on x86) and then
  rounded to the dtype -- which is +-inf only when the exact value itself overflows
  the dtype (mse or l2 of 1e30 in float32) -- or
* a literal (``RULES``): the value the stated rule gives where the mathematics is not
  finite (an infinite or NaN input, an all -inf softmax row) or where PyTorch fixes a
  convention (relu'(NaN) = 1).  A literal is checked exactly (NaN as NaN).

The closed forms write those same rules (the ``z <= 0`` tests of PyTorch, the limits at
+-inf), and a test checks that the literal cells and the closed forms agree, so the
table cannot drift from what is tested.
"""

from __future__ import annotations

import numpy as np

LD = np.longdouble
INF, NAN = float("inf"), float("nan")

GRID = ("+0", "-0", "+sub", "-sub", "+1e4", "-1e4", "+88.7", "-88.7", "+1e30", "-1e30",
        "+inf", "-inf", "nan")


def grid_value(name: str, dtype) -> float:
    """The grid point in ``dtype`` (``sub`` is the dtype's smallest subnormal)."""
    if name.endswith("sub"):
        v = float(np.finfo(dtype).smallest_subnormal)
        return -v if name[0] == "-" else v
    return float(np.dtype(dtype).type(float(name)))


ACTS = ("linear", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "prelu")
ALPHA = {"leaky_relu": 0.01, "elu": 1.0, "prelu": 0.25}  # PyTorch's defaults
SOFTPLUS_THRESHOLD = 20.0


# ----------------------------------------------------------------------- closed forms
def _sig(z):
    e = np.exp(-abs(z))
    return 1 / (1 + e) if z >= 0 else e / (1 + e)


def act_f(act: str, z: LD) -> LD:
    a = LD(ALPHA.get(act, 0.0))
    if act == "linear":
        return z
    if act == "relu":
        return LD(0) if z <= 0 else z
    if act == "sigmoid":
        return _sig(z)
    if act == "tanh":
        return np.tanh(z)
    if act in ("leaky_relu", "prelu"):
        return a * z if z <= 0 else z
    if act == "elu":
        return a * np.expm1(z) if z <= 0 else z
    if act == "softplus":
        return z if z > SOFTPLUS_THRESHOLD else np.log1p(np.exp(z))
    raise KeyError(act)


def act_d(act: str, z: LD) -> LD:
    """f'(z), with PyTorch's choice at a NaN input (relu/elu test z <= 0, the others z > 0)."""
    a = LD(ALPHA.get(act, 0.0))
    if act == "linear":
        return LD(1)
    if act == "relu":
        return LD(0) if z <= 0 else LD(1)
    if act == "sigmoid":  # e / (1 + e)^2 with e = exp(-|z|): no 1 - s cancellation
        e = np.exp(-abs(z))
        return e / (1 + e) ** 2
    if act == "tanh":  # sech^2 = 4e / (1 + e)^2 with e = exp(-2|z|)
        e = np.exp(-2 * abs(z))
        return 4 * e / (1 + e) ** 2
    if act in ("leaky_relu", "prelu"):
        return LD(1) if z > 0 else a
    if act == "elu":
        return a * np.exp(z) if z <= 0 else LD(1)
    if act == "softplus":
        return LD(1) if z > SOFTPLUS_THRESHOLD else _sig(z)
    raise KeyError(act)


# Elementwise losses: (name, target, q); the loss of one element and its gradient
# w.r.t. the prediction (the mean over one element is the element).
LOSSES = (("bce", 0.0), ("bce", 0.5), ("bce", 1.0), ("mse", 1.0), ("mae", 1.0),
          ("quantile", 1.0), ("l2", None))
Q = 0.9


def loss_f(kind: str, p: LD, t) -> LD:
    if kind == "bce":  # max(p,0) - p t by the sign of p, + log1p(exp(-|p|))
        t = LD(t)
        lin = p * (1 - t) if p >= 0 else -p * t
        return lin + np.log1p(np.exp(-abs(p)))
    if kind == "mse":
        return (p - LD(t)) ** 2
    if kind == "mae":
        return abs(p - LD(t))
    if kind == "quantile":
        u = LD(t) - p
        return max(LD(Q) * u, LD(Q - 1) * u) if u == u else u
    if kind == "l2":
        return p * p / 2
    raise KeyError(kind)


def loss_d(kind: str, p: LD, t) -> LD:
    if kind == "bce":
        return _sig(p) - LD(t)
    if kind == "mse":
        return 2 * (p - LD(t))
    if kind == "mae":  # sign, with sign(NaN) = 0 as PyTorch's L1Loss
        d = p - LD(t)
        return LD(1) if d > 0 else (LD(-1) if d < 0 else LD(0))
    if kind == "quantile":
        u = LD(t) - p
        return LD(-Q) if u >= 0 else (LD(1 - Q) if u < 0 else u)
    if kind == "l2":
        return p
    raise KeyError(kind)


# Row ops on rows of 3 logits: each grid value in front of (0, 1), and whole rows.
ROWS = {**{f"[{g},0,1]": (g, "+0", "+1") for g in GRID},
        "[-inf,-inf,-inf]": ("-inf", "-inf", "-inf"), "[+inf,+inf,0]": ("+inf", "+inf", "+0"),
        "[+inf,-inf,0]": ("+inf", "-inf", "+0"), "[-1e30]*3": ("-1e30", "-1e30", "-1e30"),
        "[+1e30,-1e30,0]": ("+1e30", "-1e30", "+0"), "[+88.7,-88.7,0]": ("+88.7", "-88.7", "+0")}
ROW_G = (1.0, -2.0, 0.5)  # upstream gradient for softmax / log_softmax backward


def row_value(row: str, dtype) -> np.ndarray:
    return np.array([[grid_value(g, dtype) for g in ROWS[row]]], dtype=dtype)


def _log_softmax(x):
    m = np.max(x)  # NaN if any is NaN
    s = x - m
    return s - np.log(np.sum(np.exp(s)))


def row_f(op: str, x: np.ndarray) -> np.ndarray:
    """op on one row (longdouble): softmax, log_softmax, their backward with ROW_G,
    and cross-entropy (loss, gradient) for labels 0 and 1."""
    x = x.astype(LD)
    g = np.array(ROW_G, dtype=LD)
    ls = _log_softmax(x)
    p = np.exp(ls)
    if op == "softmax":
        return p
    if op == "softmax_bwd":
        return p * (g - np.sum(g * p))
    if op == "log_softmax":
        return ls
    if op == "log_softmax_bwd":
        return g - np.exp(ls) * np.sum(g)
    label = int(op[-1])
    onehot = np.eye(3, dtype=LD)[label]
    if op.startswith("sce_loss"):
        return np.array([-ls[label]])
    if op.startswith("sce_grad"):
        return p - onehot
    raise KeyError(op)


ROW_OPS = ("softmax", "softmax_bwd", "log_softmax", "log_softmax_bwd", "sce_loss0", "sce_grad0",
           "sce_loss1", "sce_grad1")


# ----------------------------------------------------------------------------- rules
# Cells that are not "finite, equal to the closed form".  Keys: ("fwd"|"bwd", act) or
# (kind, target, "fwd"|"bwd") for losses, over GRID names; rows: (op, row) -> value or
# tuple of per-entry values.  "nan", "inf", "-inf" or a number (a PyTorch convention).
_NONFINITE_IN = {"+inf": "inf", "-inf": "-inf", "nan": "nan"}

RULES: dict[tuple, dict] = {
    ("fwd", "linear"): dict(_NONFINITE_IN),
    ("fwd", "relu"): {"+inf": "inf", "nan": "nan"},
    ("fwd", "sigmoid"): {"nan": "nan"},
    ("fwd", "tanh"): {"nan": "nan"},
    ("fwd", "leaky_relu"): dict(_NONFINITE_IN),
    ("fwd", "elu"): {"+inf": "inf", "nan": "nan"},
    ("fwd", "softplus"): {"+inf": "inf", "nan": "nan"},
    ("fwd", "prelu"): dict(_NONFINITE_IN),
    # derivatives at NaN: PyTorch's (relu, elu: g; leaky_relu, prelu: slope * g)
    ("bwd", "linear"): {"nan": 1.0},
    ("bwd", "relu"): {"nan": 1.0},
    ("bwd", "sigmoid"): {"nan": "nan"},
    ("bwd", "tanh"): {"nan": "nan"},
    ("bwd", "leaky_relu"): {"nan": 0.01},
    ("bwd", "elu"): {"nan": 1.0},
    ("bwd", "softplus"): {"nan": "nan"},
    ("bwd", "prelu"): {"nan": 0.25},
    # bce: an infinite logit on the wrong side of its target is +inf; on the right side
    # it is inf * 0 = NaN (PyTorch: NaN for every -inf logit and for +inf with t = 1)
    ("bce", 0.0, "fwd"): {"+inf": "inf", "-inf": "nan", "nan": "nan"},
    ("bce", 0.5, "fwd"): {"+inf": "inf", "-inf": "inf", "nan": "nan"},
    ("bce", 1.0, "fwd"): {"+inf": "nan", "-inf": "inf", "nan": "nan"},
    ("bce", 0.0, "bwd"): {"nan": "nan"},
    ("bce", 0.5, "bwd"): {"nan": "nan"},
    ("bce", 1.0, "bwd"): {"nan": "nan"},
    ("mse", 1.0, "fwd"): {"+inf": "inf", "-inf": "inf", "nan": "nan"},
    ("mse", 1.0, "bwd"): dict(_NONFINITE_IN),
    ("mae", 1.0, "fwd"): {"+inf": "inf", "-inf": "inf", "nan": "nan"},
    ("mae", 1.0, "bwd"): {"nan": 0.0},  # PyTorch's L1Loss: sign(NaN) = 0
    ("quantile", 1.0, "fwd"): {"+inf": "inf", "-inf": "inf", "nan": "nan"},
    ("quantile", 1.0, "bwd"): {"nan": "nan"},
    ("l2", None, "fwd"): {"+inf": "inf", "-inf": "inf", "nan": "nan"},
    ("l2", None, "bwd"): dict(_NONFINITE_IN),
}

# Rows: a NaN or a +inf anywhere, or no finite entry, makes the whole row NaN (PyTorch:
# max - max = inf - inf); -inf entries among finite ones are the limits (p = 0,
# log p = -inf, an infinite loss when the label sits on one).
_NAN_ROWS = ("[nan,0,1]", "[+inf,0,1]", "[-inf,-inf,-inf]", "[+inf,+inf,0]", "[+inf,-inf,0]")
for _row in _NAN_ROWS:
    for _op in ROW_OPS:
        RULES.setdefault(("row", _op), {})[_row] = "nan"
RULES[("row", "log_softmax")]["[-inf,0,1]"] = ("-inf", "F", "F")
RULES[("row", "sce_loss0")]["[-inf,0,1]"] = "inf"


def rule(key: tuple, point: str):
    """The literal for a cell, or None for F."""
    return RULES.get(key, {}).get(point)


# ------------------------------------------------------------------------- expected
def expected_ld(key: tuple, point: str, dtype) -> np.ndarray:
    """The closed form for a cell at the dtype's grid point, in long double (an array:
    rows give several values)."""
    kind = key[0]
    with np.errstate(all="ignore"):
        if kind == "row":
            return np.asarray(row_f(key[1], row_value(point, dtype)[0]), dtype=LD).ravel()
        z = LD(grid_value(point, dtype))
        if kind in ("fwd", "bwd"):
            v = (act_f if kind == "fwd" else act_d)(key[1], z)
        else:
            v = (loss_f if key[2] == "fwd" else loss_d)(kind, z, key[1])
        return np.asarray([v], dtype=LD)


def expected(key: tuple, point: str, dtype) -> np.ndarray:
    """The closed form rounded to ``dtype`` (+-inf where the exact value overflows it)."""
    with np.errstate(all="ignore"):
        return expected_ld(key, point, dtype).astype(dtype)


def literal_matches(lit, got: np.ndarray, dtype=np.float64) -> bool:
    """Does ``got`` (all entries, or per entry for a tuple literal) equal the literal
    (a number: rounded to ``dtype``)?"""
    lits = lit if isinstance(lit, tuple) else (lit,) * got.size
    for want, v in zip(lits, got.ravel(), strict=True):
        v = float(v)
        if want == "F":
            if not np.isfinite(v):
                return False
        elif want == "nan":
            if v == v:
                return False
        elif want in ("inf", "-inf"):
            if v != float(want):
                return False
        elif v != float(np.dtype(dtype).type(want)):
            return False
    return True


def close(got: np.ndarray, want: np.ndarray, dtype, atol_scale: float = 0.0) -> bool:
    """Same non-finite positions; finite values within the dtype's tolerance.

    rtol: 1e-14 (float64, ~45 ULP) or 1e-6 (float32, ~8 ULP); atol: two subnormal steps
    plus ``atol_scale * eps`` for derivatives, which (as in PyTorch) are computed from
    the output near saturation (1 - y*y, y(1 - y)) and so carry an absolute accuracy
    of a few eps, not a relative one.
    """
    got = np.asarray(got, dtype=np.float64).ravel()
    want = np.asarray(want, dtype=np.float64).ravel()
    fi = np.finfo(dtype)
    rtol = 1e-14 if dtype == np.float64 else 1e-6
    atol = 2 * float(fi.smallest_subnormal) + atol_scale * float(fi.eps)
    for a, b in zip(got, want, strict=True):
        if np.isnan(b) or np.isnan(a):
            if not (np.isnan(a) and np.isnan(b)):
                return False
        elif np.isinf(b) or np.isinf(a):
            if a != b:
                return False
        elif abs(a - b) > rtol * abs(b) + atol:
            return False
    return True


# ------------------------------------------------------------------------- the table
def all_keys() -> list[tuple[tuple, tuple]]:
    """Every (key, points) the tests cover."""
    out = []
    for d in ("fwd", "bwd"):
        out += [((d, a), GRID) for a in ACTS]
    for kind, t in LOSSES:
        out += [((kind, t, d), GRID) for d in ("fwd", "bwd")]
    out += [(("row", op), tuple(ROWS)) for op in ROW_OPS]
    return out


def _fmt(v: float) -> str:
    if v != v:
        return "NaN"
    if np.isinf(v):
        return "+inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    text = f"{v:.4g}"
    if "e" in text:
        m, e = text.split("e")
        text = f"{m}e{int(e)}"
    return text


def _cell(key, point, dtype=np.float64) -> str:
    lit = rule(key, point)
    vals = expected(key, point, dtype)
    if lit is not None and not isinstance(lit, tuple) and not isinstance(lit, str):
        return f"**{_fmt(float(lit))}**\u2020"
    text = " ".join(_fmt(float(v)) for v in vals)
    return f"**{text}**" if lit is not None else text


def _label(key) -> str:
    if key[0] in ("fwd", "bwd"):
        return f"{key[1]}{'' if key[0] == 'fwd' else chr(39)}"
    if key[0] == "row":
        return key[1]
    kind, t, d = key
    name = "l2" if t is None else f"{kind} t={t:g}"
    return name + ("" if d == "fwd" else " grad")


def render() -> str:
    """The markdown tables of RELIABILITY.md's Numerics section (float64 values)."""
    parts = []
    head = "| | " + " | ".join(GRID) + " |\n|---|" + "---|" * len(GRID) + "\n"
    act_rows = [k for k, _ in all_keys() if k[0] in ("fwd", "bwd")]
    loss_rows = [k for k, _ in all_keys() if k[0] not in ("fwd", "bwd", "row")]
    for keys in (act_rows, loss_rows):
        body = "".join("| " + _label(k) + " | " + " | ".join(_cell(k, p) for p in GRID) + " |\n"
                       for k in keys)
        parts.append(head + body)
    rows = list(ROWS)
    rhead = "| row | " + " | ".join(ROW_OPS) + " |\n|---|" + "---|" * len(ROW_OPS) + "\n"
    rbody = "".join("| " + r + " | " + " | ".join(_cell(("row", op), r) for op in ROW_OPS)
                    + " |\n" for r in rows)
    parts.append(rhead + rbody)
    return "\n".join(parts)


if __name__ == "__main__":
    print(render())
