"""The bad-input catalogue (issue 8, item 4): ONE table, one row per way to hold graphc wrong.

Each row is a :class:`Case`: what is done, and what must come of it --

* ``raises``: a :class:`graphc.GraphcError` subclass, and words its message must
  contain (:data:`HERE` = the user's own ``file:line``, i.e. a line of the row's
  action in this file);
* ``result``: the documented correct result (NaN where the maths gives NaN, a
  cast, a recompile...), checked by the row's ``check``;
* ``cli``: ``graphc ...`` exits with code 2 and prints ONE line ``graphc: error:
  ...`` with those words and no traceback.

Nothing may end otherwise: no other exception, no crash of the interpreter (a
segfault fails the whole run), no hang (a watchdog dumps every thread's stack
and exits after :data:`WATCHDOG_S`).  Where the rules live: feeds in
``graphc/runtime/feeds.py``, graphs at build time in ``frontends/symbolic.py``
and the op shape rules, model files in ``graphc/io.py``, the compile cache in
``graphc/codegen/cache.py``, the CLI's error boundary in ``graphc/cli.py``
(``cli_command``).  RELIABILITY.md summarises them.

Focused tests of the same areas (more variants, fewer categories) live in
tests/compiled/test_feeds.py, tests/foundation/test_errors.py,
tests/io/test_model_file.py, tests/training/test_save_load.py and tests/cli/.
"""

from __future__ import annotations

import errno
import faulthandler
import hashlib
import inspect
import io
import json
import os
import pickle
import re
import struct
import subprocess
import sys
import tracemalloc
import types
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc import cli
from graphc.codegen import cache
from graphc.io import save_model
from graphc.runtime import compiled as compiled_mod

HERE = "<the user's file:line>"  # a word meaning "(at <this file>:<a line of the action>)"
WATCHDOG_S = 600  # a cold compile on a loaded 2-core machine takes well under a minute
N_IN, N_OUT = 3, 4
RNG = np.random.default_rng(0)
X = RNG.standard_normal((6, N_IN))
Y = np.array([0, 1, 2, 3, 0, 1])
ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- programs


def mlp(dtype: str = "float64", backend: str = "compiled", optimizer=None):
    """3 -> tanh 5 -> 4 logits, softmax cross-entropy on int labels (as tests/compiled)."""
    x = gc.input("x", (None, N_IN))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 5, activation="tanh", name="fc1")
    logits = gc.dense(h, N_OUT, name="fc2")
    return gc.compile(loss=gc.softmax_cross_entropy(logits, y), outputs={"logits": logits},
                      optimizer=optimizer or gc.optim.SGD(lr=0.1), dtype=dtype, seed=0,
                      backend=backend)


def tiny(name: str = "tiny"):
    """The cheapest compiled program (forward only): for the compile-cache rows."""
    x = gc.input("x", (None, N_IN))
    return gc.compile(outputs={"y": gc.dense(x, 2, activation="tanh", name=name)}, dtype="float64")


def featureless():
    """A program whose only feed has 0 features: a batch of 2**45 rows takes no memory."""
    x = gc.input("x", (None, 0))
    return gc.compile(outputs={"out": gc.dense(x, 4, activation="tanh", name="fc")}, dtype="float64")


_PROGRAMS: dict[str, object] = {}
_INIT: dict[str, dict] = {}


def shared(name: str, make: Callable[[], object]):
    """One program per name for the whole module, reset to its initial parameters."""
    if name not in _PROGRAMS:
        _PROGRAMS[name] = make()
        _INIT[name] = _PROGRAMS[name].params
    p = _PROGRAMS[name]
    p.set_params(_INIT[name])
    p.step_count = 0
    return p


class Ctx:
    """What a row's action may use: shared programs, a private directory, pytest's fixtures."""

    def __init__(self, tmp_path: Path, monkeypatch, capsys) -> None:
        self.tmp = tmp_path
        self.monkeypatch = monkeypatch
        self.capsys = capsys

    @property
    def net(self):
        return shared("net", mlp)

    @property
    def net32(self):
        return shared("net32", lambda: mlp("float32"))

    @property
    def ref(self):
        return shared("ref", lambda: mlp(backend="reference"))

    @property
    def tiny(self):
        return shared("tiny", tiny)

    def spy_native_calls(self, program) -> list:
        """Record every call into the program's generated functions (the batch size)."""
        calls: list = []
        for e in program._impl.entries.values():
            def spy(*args, _fn=e.fn):
                calls.append(args[2])
                return _fn(*args)

            self.monkeypatch.setattr(e, "fn", spy)
        self.monkeypatch.setattr(program._impl, "fast_step", None)  # no direct calls either
        return calls

    # --- the compile cache -------------------------------------------------------------
    def cache_dir(self, mode: int | None = None) -> Path:
        """A private GRAPHC_CACHE_DIR for this row (created 0700 by graphc unless ``mode``)."""
        d = self.tmp / "cache"
        if mode is not None:
            d.mkdir()
            d.chmod(mode)
        self.monkeypatch.setenv("GRAPHC_CACHE_DIR", str(d))
        return d

    def forget(self, program) -> None:
        """Make the next gc.compile of this graph read the cache directory again.

        Loaded modules are kept in sys.modules by key; monkeypatch puts the session's
        one back afterwards.
        """
        self.monkeypatch.delitem(sys.modules, program._impl.module.__name__, raising=False)

    # --- the command line --------------------------------------------------------------
    def cli(self, *argv) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main([str(a) for a in argv])
        out, err = self.capsys.readouterr()
        return code, out, err

    def model_py(self, body: str) -> Path:
        f = self.tmp / "model.py"
        f.write_text(body)
        return f

    def npz(self) -> Path:
        f = self.tmp / "data.npz"
        rng = np.random.default_rng(1)
        np.savez(f, x=rng.standard_normal((40, 64)), y=rng.integers(0, 10, 40))
        return f


@dataclass(frozen=True)
class Case:
    id: str
    action: Callable[[Ctx], object]
    kind: str = "raises"  # "raises" | "result" | "cli"
    error: type[Exception] | None = None
    words: tuple[str, ...] = ()
    check: Callable[[Ctx, object], None] | None = None


def raises(id, error, words, action) -> Case:
    return Case(id, action, "raises", error, tuple(words))


def result(id, action, check) -> Case:
    return Case(id, action, "result", check=check)


def cli_error(id, words, action) -> Case:
    return Case(id, action, "cli", words=tuple(words))


# ---------------------------------------------------------------------------- checks


def same_values(got, want, rtol: float = 1e-10) -> None:
    """NaN and +-inf at the same positions, finite values within rtol of the array's scale."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape
    for test in (np.isnan, np.isposinf, np.isneginf):
        np.testing.assert_array_equal(test(got), test(want))
    fin = np.isfinite(want)
    if fin.any():
        scale = np.abs(want[fin]).max()
        assert np.all(np.abs(got[fin] - want[fin]) <= rtol * (np.abs(want[fin]) + scale))


def same_params(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def compiled_and_reference(ctx: Ctx, feeds: dict, how: str):
    """``run`` or ``step`` on both backends from the same initial parameters."""
    out = []
    for p in (ctx.net, ctx.ref):
        with np.errstate(all="ignore"):  # NumPy's "invalid value in matmul": the point here
            r = p.run(feeds) if how == "run" else p.step(feeds)
        out.append((r, p.params))
    return out


def agree_with_reference(ctx: Ctx, res) -> None:
    """The compiled program gives what the reference interpreter (the maths) gives."""
    (got, gp), (want, wp) = res
    if isinstance(got, dict):
        for k in want:
            same_values(got[k], want[k])
    else:
        same_values(got, want)
    for k in wp:
        same_values(gp[k], wp[k])


def step_and_params(program, feeds):
    return program.step(feeds), program.params


def layouts_agree(ctx: Ctx, variant: np.ndarray):
    """run and step on ``variant`` (same values as X, other layout/dtype) vs on X itself."""
    net = ctx.net
    a = (net.run({"x": variant})["logits"], *step_and_params(net, {"x": variant, "y": Y}))
    net = ctx.net  # reset
    b = (net.run({"x": X})["logits"], *step_and_params(net, {"x": X, "y": Y}))
    return a, b


def bitwise_equal(ctx: Ctx, res) -> None:
    (run_a, loss_a, params_a), (run_b, loss_b, params_b) = res
    np.testing.assert_array_equal(run_a, run_b)
    assert loss_a == loss_b
    assert same_params(params_a, params_b)


def nan_rows(ctx: Ctx, res) -> None:
    """Row 2 NaN-poisoned: its logits are all NaN, every other row is exactly the clean one."""
    bad, clean = res
    assert np.isnan(bad[2]).all()
    rest = [0, 1, 3, 4, 5]
    np.testing.assert_array_equal(bad[rest], clean[rest])


def with_row(value: float, row: int = 2) -> np.ndarray:
    x = X.copy()
    x[row, 1] = value
    return x


def garbage_check(ctx: Ctx, res) -> None:
    loss, ev = res
    assert np.isnan(loss) and np.isnan(ev["loss"]), res


def batch0_run(ctx: Ctx, out) -> None:
    assert out.shape == (0, N_OUT) and out.dtype == np.float64


def batch0_evaluate(ctx: Ctx, ev) -> None:
    assert list(ev) == ["loss"] and np.isnan(ev["loss"])


def int_labels_check(ctx: Ctx, res) -> None:
    (loss32, p32), (loss8, p8), _ = res
    net = ctx.net  # reset
    loss64, p64 = step_and_params(net, _X())
    assert loss32 == loss8 == loss64
    assert same_params(p32, p64) and same_params(p8, p64)


def float32_cast(ctx: Ctx, res) -> None:
    got, want = res
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def batch0_step(ctx: Ctx, res) -> None:
    loss, before, after = res
    assert np.isnan(loss)  # the mean over no example, as PyTorch's reduction="mean"
    assert same_params(before, after)  # plain SGD: a zero data gradient moves nothing


def huge_refused(program_name: str, feeds: Callable[[], dict], how: str = "run"):
    def action(ctx: Ctx):
        p = shared(program_name, featureless if program_name == "featureless" else mlp)
        p.run({"x": np.zeros((2, p.feed_spec.inputs["x"][0][1]))})  # compiled, workspace for 2
        calls = ctx.spy_native_calls(p)
        try:
            getattr(p, how)(feeds())
        finally:
            assert calls == [], f"a native call was made: {calls}"

    return action


def garbage_workspace(ctx: Ctx):
    """A fresh workspace full of garbage (np.empty's), then a step whose loss is NaN."""
    net = mlp()  # a new program: new workspaces (its module comes from the cache)
    def empty(shape, dtype=float):
        return np.full(shape, 3.0, dtype)  # "node 2 went non-finite", if it were read

    ns = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    ns.empty = empty
    ctx.monkeypatch.setattr(compiled_mod, "np", ns)
    return net.step({"x": with_row(np.nan), "y": Y}), net.evaluate({"x": X[:0], "y": Y[:0]})


def tied_weights(ctx: Ctx):
    """W used twice (x @ W @ W) against two separate parameters holding the same values."""
    x = gc.input("x", (None, 3))
    W = gc.parameter("W", (3, 3))
    tied = gc.function([x], gc.grad(gc.sum(gc.tanh(x @ W @ W)), [W]), dtype="float64")
    A, B = gc.parameter("A", (3, 3)), gc.parameter("B", (3, 3))
    split = gc.function([x], gc.grad(gc.sum(gc.tanh(x @ A @ B)), [A, B]), dtype="float64")
    w = tied.params["W"]
    split.set_params({"A": w, "B": w})
    return tied(X)[0], split(X)


def tied_check(ctx: Ctx, res) -> None:
    tied, (ga, gb) = res
    same_values(tied, ga + gb, rtol=1e-12)  # gradients of both uses add up


def grad_unrelated(ctx: Ctx):
    x = gc.input("x", (None, 3))
    W, V = gc.parameter("W", (3, 2)), gc.parameter("V", (4, 2))
    f = gc.function([x], gc.grad(gc.sum(x @ W), [V]), dtype="float64")
    return f(X)[0]


def feedless_training(ctx: Ctx):
    W = gc.parameter("W", (3,), init="constant", value=2.0)
    net = gc.compile(loss=gc.l2(W), optimizer=gc.optim.SGD(0.5), dtype="float64")
    return net.step({}), net.step({}), net.params["W"]


def feedless_check(ctx: Ctx, res) -> None:
    first, second, w = res
    assert (first, second) == (6.0, 1.5)  # 0.5 * |W|^2, W halves each step
    np.testing.assert_array_equal(w, [0.5, 0.5, 0.5])


def two_params_named(ctx: Ctx):
    x = gc.input("x", (None, 3))
    a = gc.dense(x, 4, name="fc")
    b = gc.dense(a, 4, name="fc")
    return gc.compile(loss=gc.mean(b), backend="reference")


# ---------------------------------------------------------------------------- model files


class _Evil:
    """Unpickling this creates ``path``: proof that something was unpickled."""

    path = ""

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def payload_sha(header: dict) -> str:
    body = {k: v for k, v in header.items() if k != "payload_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(text.encode()).hexdigest()


def npy(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


_SAVED: dict[str, bytes] = {}


def saved_program() -> bytes:
    """A trained program file (Adam, so with optimizer state), as bytes."""
    if "p" not in _SAVED:
        import tempfile

        net = mlp(backend="reference", optimizer=gc.optim.Adam(0.01))
        net.step({"x": X, "y": Y})
        net.step({"x": X, "y": Y})
        with tempfile.TemporaryDirectory() as d:
            net.save(Path(d) / "m.gcm")
            _SAVED["p"] = (Path(d) / "m.gcm").read_bytes()
            _SAVED["params"] = net.params
    return _SAVED["p"]


def members_of(data: bytes) -> tuple[dict, dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        m = {i.filename: zf.read(i) for i in zf.infolist()}
    return json.loads(m["model.json"]), m


def write_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def program_file(header_fn=None, members_fn=None, resign: bool = True, raw_header=None,
                 extra: tuple = ()) -> Callable[[Ctx], Path]:
    """A case's file: the saved program with its header and/or members changed.

    ``resign`` recomputes payload_sha256, as a buggy or hostile writer would, so the
    case reaches the check it is about instead of stopping at the checksum.
    """
    def make(ctx: Ctx) -> Path:
        header, members = members_of(saved_program())
        if header_fn:
            header_fn(header)
        if members_fn:
            members_fn(ctx, header, members)
        if resign:
            header["payload_sha256"] = payload_sha(header)
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
        if raw_header:
            text = raw_header(text)
        members["model.json"] = text
        order = ["model.json", *(k for k in members if k != "model.json")]
        return write_zip(ctx.tmp / "model.gcm", [(k, members[k]) for k in order] + list(extra))

    return make


def raw_file(fn: Callable[[bytes], bytes]) -> Callable[[Ctx], Path]:
    def make(ctx: Ctx) -> Path:
        p = ctx.tmp / "model.gcm"
        p.write_bytes(fn(saved_program()))
        return p

    return make


def load(make: Callable[[Ctx], Path], backend: str = "reference"):
    def action(ctx: Ctx):
        path = make(ctx)
        return gc.load(path, backend=backend)

    return action


def graph_node(header: dict, op: str, name: str | None = None) -> dict:
    return next(n for n in header["meta"]["graph"]["nodes"]
                if n["op"] == op and (name is None or n.get("name") == name))


def entry(header: dict, array: str) -> dict:
    return header["arrays"][array]


def set_member(array: str, data_fn) -> Callable:
    def fn(ctx, header, members):
        members[entry(header, array)["member"]] = data_fn(ctx, header, members)

    return fn


def pickle_member(ctx, header, members):
    _Evil.path = str(ctx.tmp / "unpickled")
    name = entry(header, "fc1/W")["member"]
    payload = pickle.dumps(_Evil())
    return payload + b"\0" * (len(members[name]) - len(payload))  # the member's true size


def object_npy(ctx, header, members):
    _Evil.path = str(ctx.tmp / "unpickled")
    arr = np.empty(5, dtype=object)
    arr[:] = [_Evil()] * 5
    return npy(arr, allow_pickle=True)


def short_npy(ctx, header, members):
    return npy(np.zeros((5, N_OUT)))[:-8]  # an honest header, 8 data bytes missing


def flipped_bit(ctx, header, members):
    data = bytearray(members[entry(header, "fc1/W")["member"]])
    data[-1] ^= 1
    return bytes(data)


def consistent_reshape(header):
    """fc2/W stored as a self-consistent (4, 5) array: the file is fine, the graph is not."""
    e = entry(header, "fc2/W")
    e["shape"] = [N_OUT, 5]


def consistent_member(ctx, header, members):
    arr = np.zeros((N_OUT, 5))
    entry(header, "fc2/W")["sha256"] = hashlib.sha256(arr.tobytes()).hexdigest()
    return npy(arr)


def add_cycle(header):
    """fc1's matmul reads fc1's own tanh instead of x (its arity unchanged)."""
    g = header["meta"]["graph"]
    first = {}
    for n in g["nodes"]:
        first.setdefault(n["op"], n["id"])
    edge = next(e for e in g["edges"] if e["target"] == first["matmul"] and e["key"] == 0)
    edge["source"] = first["tanh"]


def zip_bomb(ctx: Ctx) -> Path:
    """fc2/b (4 floats) whose member inflates to 64 MiB of zeros (~64 KiB on disk)."""
    header, members = members_of(saved_program())
    bomb = entry(header, "fc2/b")["member"]
    path = ctx.tmp / "bomb.gcm"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members.items():
            if name != bomb:
                zf.writestr(name, data)
                continue
            with zf.open(name, "w", force_zip64=True) as out:
                out.write(data)
                for _ in range(64):
                    out.write(bytes(1 << 20))
    return path


def lying_bomb(ctx: Ctx) -> Path:
    """A member that inflates to 16 MiB while its zip headers claim its honest size."""
    header, members = members_of(saved_program())
    name = entry(header, "fc2/b")["member"]
    honest = len(members[name])
    members[name] += bytes(16 << 20)
    path = write_zip(ctx.tmp / "liar.gcm", list(members.items()))
    raw = bytearray(path.read_bytes())
    big = struct.pack("<I", len(members[name]))
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):  # local header, central dir
        start = 0
        while (start := raw.find(sig, start)) >= 0:
            if raw[start + off:start + off + 4] == big:
                raw[start + off:start + off + 4] = struct.pack("<I", honest)
            start += 4
    path.write_bytes(bytes(raw))
    return path


def load_bounded(make: Callable[[Ctx], Path], limit: int):
    """gc.load of the file ``make`` builds, with a Python-allocated peak under ``limit`` bytes."""
    def action(ctx: Ctx):
        path = make(ctx)
        tracemalloc.start()
        try:
            return gc.load(path, backend="reference")
        finally:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < limit, f"peak {peak} bytes while refusing"

    return action


def drop_array(name: str):
    def fn(ctx, header, members):
        del members[header["arrays"].pop(name)["member"]]

    return fn


def not_a_program(ctx: Ctx) -> Path:
    p = ctx.tmp / "weights.gcm"
    save_model(p, {"note": "just arrays"}, {"W": np.zeros((2, 2))})
    return p


def other_zip(ctx: Ctx) -> Path:
    return write_zip(ctx.tmp / "doc.gcm", [("word/document.xml", b"<w/>"), ("[Content_Types].xml", b"")])


def load_bit_exact(ctx: Ctx):
    p = ctx.tmp / "m.gcm"
    p.write_bytes(saved_program())
    return gc.load(p).params  # the compiled backend


def bit_exact_check(ctx: Ctx, params) -> None:
    want = _SAVED["params"]
    assert params.keys() == want.keys()
    for k in want:
        assert params[k].tobytes() == want[k].tobytes(), k


# ---------------------------------------------------------------------------- compile cache


TINY_X = np.linspace(-1.0, 1.0, 6).reshape(2, N_IN)


def tiny_expected(ctx: Ctx) -> np.ndarray:
    return ctx.tiny.run({"x": TINY_X})["y"]


def in_cache(ctx: Ctx, prepare: Callable[[Ctx, Path, str], None], mode: int | None = None,
             populate: bool = True, twice: bool = False):
    """Compile ``tiny`` in a private cache dir after ``prepare`` damaged it; run it.

    Returns (output, program, warnings, expected output).  ``populate`` first
    compiles and runs it there, so that the .py and Numba's files exist.
    """
    expected = tiny_expected(ctx)
    key = ctx.tiny._impl.key
    d = ctx.cache_dir(mode)
    if populate:
        ctx.forget(ctx.tiny)
        tiny().run({"x": TINY_X})
    ctx.forget(ctx.tiny)
    prepare(ctx, d, key)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        p = tiny()
        out = p.run({"x": TINY_X})["y"]
        if twice:  # a second program: still one warning
            ctx.forget(ctx.tiny)
            tiny("other").run({"x": TINY_X})
    return out, p, [str(w.message) for w in caught if "graphc" in str(w.message)], expected


def numba_files(d: Path, key: str, suffix: str) -> list[Path]:
    found = sorted((d / "__pycache__").glob(f"g_{key}.*{suffix}"))
    assert found, f"no Numba {suffix} files for g_{key}"
    return found


def damage(suffix: str, fn: Callable[[bytes], bytes]):
    def prepare(ctx, d, key):
        for f in numba_files(d, key, suffix):
            f.write_bytes(fn(f.read_bytes()))

    return prepare


def module_text(fn: Callable[[str, Ctx], str]):
    def prepare(ctx, d, key):
        p = d / f"g_{key}.py"
        p.write_text(fn(p.read_text() if p.exists() else "", ctx))

    return prepare


def hostile_module(text: str, ctx: Ctx) -> str:
    sentinel = ctx.tmp / "executed"
    return f"open({str(sentinel)!r}, 'w').close()\n" + text


def touch_module(ctx, d, key):
    p = d / f"g_{key}.py"
    st = p.stat()
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))  # the index is now stale


def foreign_index(ctx, d, key):
    """The Numba index of another module (another graph) copied over this one's."""
    x = gc.input("x", (None, N_IN))
    other = gc.compile(outputs={"y": gc.dense(x, 7, activation="relu", name="foreign")}, dtype="float64")
    other.run({"x": TINY_X})
    src = numba_files(d, other._impl.key, ".nbi")[0].read_bytes()
    for f in numba_files(d, key, ".nbi"):
        f.write_bytes(src)


def read_only(ctx, d, key):
    d.chmod(0o500)
    if os.geteuid() == 0:  # root writes anyway: show it what any other user sees
        real = os.access
        ctx.monkeypatch.setattr(cache.os, "access", lambda p, m, *a, **k: (
            False if Path(p) == d and m & os.W_OK else real(p, m, *a, **k)))


def write_fails(ctx, d, key):
    real = cache._atomic_write

    def refuse(path, text):
        if Path(path).parent == d:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, text)

    ctx.monkeypatch.setattr(cache, "_atomic_write", refuse)


def not_owned(ctx, d, key):
    if os.geteuid() == 0:
        os.chown(d, 65534, 65534)
    else:
        uid = os.getuid()
        ctx.monkeypatch.setattr(cache.os, "getuid", lambda: uid + 1)


def is_a_file(ctx, d, key):
    d.write_text("not a directory")


def nothing(ctx, d, key):
    pass


def rebuilt(ctx: Ctx, res) -> None:
    """Same output as the session's program; the module on disk is exactly graphc's own."""
    out, p, warned, expected = res
    np.testing.assert_array_equal(out, expected)
    assert p._impl.on_disk
    assert Path(p._impl.path).read_text() == p._impl.source
    assert not (ctx.tmp / "executed").exists(), "a module graphc did not write was executed"


def rebuilt_with_warning(words: tuple[str, ...]):
    def check(ctx: Ctx, res) -> None:
        rebuilt(ctx, res)
        warned = res[2]
        assert len(warned) == 1 and all(w in warned[0] for w in words), warned

    return check


def rebuilt_silently(ctx: Ctx, res) -> None:
    rebuilt(ctx, res)
    assert res[2] == [], res[2]


def in_memory(words: tuple[str, ...]):
    def check(ctx: Ctx, res) -> None:
        out, p, warned, expected = res
        np.testing.assert_array_equal(out, expected)
        assert not p._impl.on_disk and "cache=False" in Path(p._impl.path).read_text()
        assert not Path(p._impl.path).is_relative_to(ctx.tmp)
        assert len(warned) == 1, warned  # once, though two programs were compiled
        assert "compiling in memory" in warned[0] and all(w in warned[0] for w in words), warned

    return check


# ---------------------------------------------------------------------------- CLI


BAD_SHAPE = ("import graphc as gc\n\ndef model():\n    x = gc.input('x', (None, 4))\n"
             "    W = gc.parameter('W', (5, 3))\n    return gc.sum(x @ W)\n")
NO_XY = ("import graphc as gc\n\ndef model():\n    a = gc.input('a', (None, 2))\n"
         "    return gc.sum(gc.dense(a, 1, name='fc'))\n")


def tampered_gcm(ctx: Ctx) -> Path:
    return program_file(lambda h: graph_node(h, "matmul").update(shape=[None, 50]))(ctx)


def cli_subprocess(ctx: Ctx):
    done = subprocess.run([sys.executable, "-m", "graphc.cli", "dump", str(ctx.tmp / "nope.py") + ":f"],
                          capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def cli_debug(ctx: Ctx):
    return ctx.cli("dump", str(ctx.model_py(BAD_SHAPE)) + ":model", "--debug")


def debug_check(ctx: Ctx, res) -> None:
    code, out, err = res
    assert code == 2 and "Traceback" in err and "ShapeError" in err
    assert err.rstrip().splitlines()[-1].startswith("graphc: error: matmul: inner dimensions differ")


# ---------------------------------------------------------------------------- the table


def _X(**kw):
    return {"x": X, "y": Y, **kw}


CATALOGUE: list[Case] = [
    # --- feeds ------------------------------------------------------------------------
    raises("feed/wrong feature dim", gc.FeedError, ["feed 'x'", "(N, 3)", "(6, 4)", "axis 1"],
           lambda c: c.net.step(_X(x=np.zeros((6, 4))))),
    raises("feed/wrong ndim 3-D", gc.FeedError, ["feed 'x'", "2-D", "3-D (1, 6, 3)"],
           lambda c: c.net.run({"x": X[None]})),
    raises("feed/wrong ndim 1-D", gc.FeedError, ["feed 'x'", "2-D", "1-D (3,)"],
           lambda c: c.net.run({"x": X[0]})),
    raises("feed/wrong ndim 0-D", gc.FeedError, ["feed 'x'", "0-D ()"],
           lambda c: c.net.run({"x": 1.0})),
    raises("feed/labels 2-D", gc.FeedError, ["feed 'y'", "1-D", "2-D (6, 1)"],
           lambda c: c.net.step(_X(y=Y[:, None]))),
    raises("feed/batch sizes differ", gc.FeedError, ["batch size 5", "'x'", "has 6", "must agree"],
           lambda c: c.net.step(_X(y=Y[:5]))),
    raises("feed/missing", gc.FeedError, ["missing feed 'y'", "(N,)"],
           lambda c: c.net.step({"x": X})),
    raises("feed/unknown name", gc.FeedError, ["unknown feed 'z'", "takes x, y"],
           lambda c: c.net.step(_X(z=X))),
    raises("feed/misspelt name", gc.FeedError, ["unknown feed 'X'"],
           lambda c: c.net.run({"X": X})),
    raises("feed/not a dict", gc.FeedError, ["dict of name -> array", "list"],
           lambda c: c.net.run([X])),
    raises("feed/object array", gc.FeedError, ["feed 'x'", "numeric", "object"],
           lambda c: c.net.run({"x": X.astype(object)})),
    raises("feed/None", gc.FeedError, ["feed 'x'", "object"],
           lambda c: c.net.run({"x": None})),
    raises("feed/string array", gc.FeedError, ["feed 'x'", "<U"],
           lambda c: c.net.run({"x": X.astype(str)})),
    raises("feed/bytes array", gc.FeedError, ["feed 'x'", "S"],
           lambda c: c.net.run({"x": X.astype("S8")})),
    raises("feed/complex array", gc.FeedError, ["feed 'x'", "complex128"],
           lambda c: c.net.run({"x": X.astype(complex)})),
    raises("feed/bool features", gc.FeedError, ["feed 'x'", "bool"],
           lambda c: c.net.run({"x": X > 0})),
    raises("feed/datetime array", gc.FeedError, ["feed 'x'", "datetime64"],
           lambda c: c.net.run({"x": np.zeros((6, 3), "datetime64[s]")})),
    raises("feed/structured array", gc.FeedError, ["feed 'x'", "numeric"],
           lambda c: c.net.run({"x": np.zeros((6, 3), dtype=[("a", "f8")])})),
    raises("feed/ragged list", gc.FeedError, ["feed 'x'", "cannot be read as an array"],
           lambda c: c.net.run({"x": [[1.0, 2.0, 3.0], [1.0]]})),
    raises("feed/float labels", gc.FeedError, ["feed 'y'", "integer labels", "float64", "astype"],
           lambda c: c.net.step(_X(y=Y.astype(float)))),
    raises("feed/bool labels", gc.FeedError, ["feed 'y'", "bool"],
           lambda c: c.net.step(_X(y=Y > 0))),
    raises("feed/complex labels", gc.FeedError, ["feed 'y'", "complex"],
           lambda c: c.net.step(_X(y=Y.astype(complex)))),
    raises("feed/label out of range", gc.FeedError, ["feed 'y'", "label 4 out of range [0, 4)"],
           lambda c: c.net.step(_X(y=Y + 1))),
    raises("feed/negative label", gc.FeedError, ["feed 'y'", "label -1 out of range"],
           lambda c: c.net.step(_X(y=Y - 1))),
    raises("feed/label out of range (fast path, checked in native code)", gc.FeedError,
           ["feed 'y'", "label 4 out of range"],
           lambda c: (c.net.step(_X()), c.net.step(_X(y=np.ascontiguousarray(Y + 1, np.int64))))),
    raises("feed/label 2**40 (int32 indexing would wrap)", gc.FeedError, ["label 1099511627776"],
           lambda c: c.net.step(_X(y=np.where(Y == 3, 2**40, Y)))),
    raises("feed/uint64 label above int64", gc.FeedError, ["label 18446744073709551615"],
           lambda c: c.net.step(_X(y=np.where(Y == 3, 2**64 - 1, Y).astype(np.uint64)))),
    raises("feed/label out of range in evaluate", gc.FeedError, ["label 4"],
           lambda c: c.net.evaluate(_X(y=Y + 1))),
    raises("feed/label out of range in fit", gc.FeedError, ["label 4"],
           lambda c: c.net.fit(_X(y=Y + 1), epochs=1, progress=False)),
    result("feed/NaN in features: run gives NaN in that row only",
           lambda c: (c.net.run({"x": with_row(np.nan)})["logits"], c.net.run({"x": X})["logits"]),
           nan_rows),
    result("feed/NaN in features: step = the reference interpreter's NaN loss and params",
           lambda c: compiled_and_reference(c, _X(x=with_row(np.nan)), "step"), agree_with_reference),
    result("feed/+inf in features: run = reference",
           lambda c: compiled_and_reference(c, {"x": with_row(np.inf)}, "run"), agree_with_reference),
    result("feed/-inf in features: step = reference",
           lambda c: compiled_and_reference(c, _X(x=with_row(-np.inf)), "step"), agree_with_reference),
    result("feed/1e300 in features: step = reference (overflow to inf, not a crash)",
           lambda c: compiled_and_reference(c, _X(x=with_row(1e300)), "step"), agree_with_reference),
    result("feed/NaN loss with a fresh workspace full of garbage: still NaN (regression)",
           garbage_workspace, garbage_check),
    result("feed/batch 0 run: empty outputs",
           lambda c: c.net.run({"x": X[:0]})["logits"], batch0_run),
    result("feed/batch 0 step: NaN loss (mean of nothing), no update from plain SGD",
           lambda c: (lambda before: (c.net.step({"x": X[:0], "y": Y[:0]}), before, c.net.params))(
               c.net.params), batch0_step),
    result("feed/batch 0 evaluate: NaN loss",
           lambda c: c.net.evaluate({"x": X[:0], "y": Y[:0]}), batch0_evaluate),
    raises("feed/batch 0 fit", gc.FeedError, ["fit", "0 examples"],
           lambda c: c.net.fit({"x": X[:0], "y": Y[:0]}, epochs=1, progress=False)),
    result("feed/Fortran order = C order, bitwise",
           lambda c: layouts_agree(c, np.asfortranarray(X)), bitwise_equal),
    result("feed/strided view = its copy, bitwise",
           lambda c: layouts_agree(c, np.repeat(X, 2, axis=0)[::2]), bitwise_equal),
    result("feed/negative strides = its copy, bitwise",
           lambda c: layouts_agree(c, X[::-1, ::-1][::-1, ::-1]), bitwise_equal),
    result("feed/transposed view = its copy, bitwise",
           lambda c: layouts_agree(c, np.ascontiguousarray(X.T).T), bitwise_equal),
    result("feed/int features are cast",
           lambda c: (c.net.run({"x": np.arange(18).reshape(6, 3)})["logits"],
                      c.net.run({"x": np.arange(18.0).reshape(6, 3)})["logits"]),
           lambda c, r: np.testing.assert_array_equal(*r)),
    result("feed/int32 and uint8 labels are accepted (= int64 labels)",
           lambda c: (step_and_params(c.net, _X(y=Y.astype(np.int32))),
                      step_and_params(c.net, _X(y=Y.astype(np.uint8))),
                      step_and_params(c.net, _X(y=Y.astype(np.uint8)))[0]),
           int_labels_check),
    result("feed/float64 into a float32 program is cast (as torch.as_tensor(x, float32))",
           lambda c: (c.net32.run({"x": X})["logits"], c.net32.run({"x": X.astype(np.float32)})["logits"]),
           float32_cast),
    result("feed/float16 into a float64 program is cast",
           lambda c: (c.net.run({"x": X.astype(np.float16)})["logits"],
                      c.net.run({"x": X.astype(np.float16).astype(np.float64)})["logits"]),
           lambda c, r: np.testing.assert_array_equal(*r)),
    raises("feed/huge batch as a broadcast view: refused before copying or any native call",
           gc.FeedError, ["feed 'x'", "GiB", "more than this machine's"],
           huge_refused("net", lambda: {"x": np.broadcast_to(X[:1], (2**42, N_IN))})),
    raises("feed/huge batch whose workspace cannot exist: refused before any native call",
           gc.FeedError, ["batch size 35184372088832", "workspace", "GiB", "more than this machine's"],
           huge_refused("featureless", lambda: {"x": np.zeros((2**45, 0))})),
    raises("feed/huge batch in step", gc.FeedError, ["batch size", "workspace", "GiB"],
           lambda c: (lambda x: gc.compile(loss=gc.sum(gc.dense(x, 4, activation="tanh", name="fc")),
                                           dtype="float64").step({"x": np.zeros((2**45, 0))}))(
               gc.input("x", (None, 0)))),
    raises("feed/function called with too few arrays", gc.FeedError, ["takes 1 arrays (x)", "got 2"],
           lambda c: gc.function([gc.input("x", (None, 3))], [gc.relu(gc.input("x", (None, 3)))],
                                 backend="reference")(X, X)),
    raises("feed/predict on a several-input program", gc.FeedError, ["several inputs"],
           lambda c: (lambda a, b: gc.compile(outputs={"s": a + b}, backend="reference").predict(X))(
               gc.input("a", (None, 3)), gc.input("b", (None, 3)))),
    raises("feed/set_params with a wrong shape", gc.FeedError, ["parameter 'fc1/W'", "(3, 5)", "(5, 3)"],
           lambda c: c.net.set_params({"fc1/W": np.zeros((5, 3))})),
    raises("feed/set_params of an unknown name", gc.GraphError, ["unknown parameter 'fc3/W'", "fc1/W"],
           lambda c: c.net.set_params({"fc3/W": np.zeros((5, 3))})),
    raises("feed/set_params with strings", gc.FeedError, ["parameter 'fc1/b'", "float"],
           lambda c: c.net.set_params({"fc1/b": np.array(["a"] * 5)})),
    raises("feed/fit batch_size 0", gc.GraphError, ["batch_size", "positive", "0"],
           lambda c: c.net.fit(_X(), batch_size=0, progress=False)),
    raises("feed/fit on_nan unknown", gc.GraphError, ["on_nan", "'stop'", "'ignore'"],
           lambda c: c.net.fit(_X(), on_nan="ignore", progress=False)),
    raises("feed/step without an optimizer", gc.GraphError, ["no optimizer"],
           lambda c: gc.compile(outputs={"y": gc.relu(gc.input("x", (None, 3)))},
                                backend="reference").step({"x": X})),

    # --- graphs, at build time --------------------------------------------------------
    raises("graph/matmul shapes", gc.ShapeError, ["matmul", "(N, 3)", "(4, 2)", HERE],
           lambda c: gc.input("x", (None, 3)) @ gc.parameter("W", (4, 2))),
    raises("graph/add does not broadcast", gc.ShapeError, ["add", "(N, 3)", "(5,)", HERE],
           lambda c: gc.input("x", (None, 3)) + gc.parameter("b", (5,))),
    raises("graph/loss shapes", gc.ShapeError, ["mse", "(N, 3)", "(N, 2)", HERE],
           lambda c: gc.mse(gc.input("p", (None, 3)), gc.input("t", (None, 2)))),
    raises("graph/label shape", gc.ShapeError, ["(N,)", "(N, 2)", HERE],
           lambda c: gc.softmax_cross_entropy(gc.input("z", (None, 3)),
                                              gc.input("y", (None, 2), dtype="int64"))),
    raises("graph/rank-1 into dense", gc.ShapeError, ["dense layer 'fc'", "2-D", "1-D", "(N,)", HERE],
           lambda c: gc.dense(gc.input("v", (None,)), 3, name="fc")),
    raises("graph/rank-3 into dense", gc.ShapeError, ["dense layer", "2-D", "3-D", "(N, 2, 3)", HERE],
           lambda c: gc.dense(gc.input("v", (None, 2, 3)), 3)),
    raises("graph/unknown activation lists the valid ones", gc.GraphError,
           ["'gelu'", "linear", "relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus", "prelu",
            "softmax", "log_softmax", HERE],
           lambda c: gc.dense(gc.input("x", (None, 3)), 4, activation="gelu")),
    raises("graph/unknown loss (Sequential) lists the valid ones", gc.GraphError,
           ["'hinge'", "cross_entropy", "binary_cross_entropy", "mse", "mae", "quantile"],
           lambda c: gc.Sequential([gc.layers.Dense(3)], input_dim=3).compile(loss="hinge")),
    raises("graph/unknown loss (spec file) lists the valid ones", gc.GraphError,
           ["spec.json", "'hinge'", "cross_entropy", "mse"],
           lambda c: gc.load_spec((lambda p: p.write_text(json.dumps(
               {"input_dim": 3, "layers": [{"units": 2}], "loss": "hinge"})) and p)(c.tmp / "spec.json"))),
    raises("graph/unknown optimizer lists the valid ones", gc.GraphError,
           ["'adamx'", "sgd", "adam", "adamw", "rmsprop"],
           lambda c: gc.compile(loss=gc.sum(gc.input("x", (None, 3))), optimizer="adamx")),
    raises("graph/unknown init lists the valid ones", gc.GraphError, ["'glorot'", "glorot_uniform", HERE],
           lambda c: gc.parameter("W", (3, 3), init="glorot")),
    raises("graph/two parameters with one name", gc.GraphError,
           ["two parameters named 'fc/W'", "(3, 4)", "(4, 4)", __file__], two_params_named),
    result("graph/a parameter used twice = tied weights: the gradients add up", tied_weights, tied_check),
    raises("graph/grad of a non-scalar", gc.GradError, ["scalar", "(N, 4)", "gc.sum"],
           lambda c: (lambda W: gc.grad(gc.input("x", (None, 3)) @ W, [W]))(gc.parameter("W", (3, 4)))),
    result("graph/grad w.r.t. something the loss does not depend on: zeros", grad_unrelated,
           lambda c, g: np.testing.assert_array_equal(g, np.zeros((4, 2)))),
    raises("graph/grad w.r.t. a non-tensor", gc.GradError, ["not a graphc tensor", "array("],
           lambda c: gc.grad(gc.sum(gc.input("x", (None, 3))), [np.zeros(3)])),
    raises("graph/grad w.r.t. a name", gc.GradError, ["'W'", "not a graphc tensor"],
           lambda c: gc.grad(gc.sum(gc.input("x", (None, 3))), ["W"])),
    raises("graph/grad of a non-tensor", gc.GradError, ["target", "float"],
           lambda c: gc.grad(3.0, [gc.parameter("W", (3,))])),
    raises("graph/grad w.r.t. a bare tensor, not a list", gc.GradError, ["list", "gc.grad(loss, [W])"],
           lambda c: (lambda W: gc.grad(gc.sum(W), W))(gc.parameter("W", (3,)))),
    raises("graph/grad w.r.t. integer labels", gc.GradError, ["int64", "'y'", "only float"],
           lambda c: (lambda y: gc.grad(gc.softmax_cross_entropy(gc.input("z", (None, 3)), y), [y]))(
               gc.input("y", (None,), dtype="int64"))),
    raises("graph/mixed dtypes", gc.ShapeError, ["add", "mixed dtypes", "int64", HERE],
           lambda c: gc.input("x", (None, 3)) + gc.input("i", (None, 3), dtype="int64")),
    raises("graph/int targets for a float loss", gc.ShapeError, ["mse", "float", "int64", HERE],
           lambda c: gc.mse(gc.input("x", (None, 3)), gc.input("i", (None, 3), dtype="int64"))),
    raises("graph/unknown dtype", gc.GraphError, ["'complex64'", "float", "int64", HERE],
           lambda c: gc.input("x", (None, 3), dtype="complex64")),
    raises("graph/negative dimension", gc.ShapeError, ["input 'x'", "(None, -3)", HERE],
           lambda c: gc.input("x", (None, -3))),
    raises("graph/parameter with a batch dimension", gc.ShapeError, ["'W'", "fixed shape", HERE],
           lambda c: gc.parameter("W", (None, 3))),
    raises("graph/dense with 0 units", gc.ShapeError, ["positive int", "0", HERE],
           lambda c: gc.dense(gc.input("x", (None, 3)), 0)),
    raises("graph/quantile q outside (0, 1)", gc.GraphError, ["q", "(0, 1)", "1.5", HERE],
           lambda c: gc.quantile(gc.input("p", (None, 1)), gc.input("t", (None, 1)), q=1.5)),
    raises("graph/division by a tensor", gc.ShapeError, ["divides", "numbers", HERE],
           lambda c: gc.input("x", (None, 3)) / gc.input("y", (None, 3))),
    raises("graph/division by zero", gc.GraphcError, ["zero"],
           lambda c: gc.input("x", (None, 3)) / 0),
    raises("graph/a string in arithmetic", gc.GraphError, ["str", HERE],
           lambda c: gc.input("x", (None, 3)) + "one"),
    raises("graph/reduction axis out of range", gc.ShapeError, ["axis 2", "2-D", HERE],
           lambda c: gc.sum(gc.input("x", (None, 3)), axis=2)),
    raises("graph/non-scalar loss", gc.GraphError, ["loss must be a scalar", "gc.mean"],
           lambda c: gc.compile(loss=gc.input("x", (None, 3)))),
    raises("graph/nothing to compile", gc.GraphError, ["needs a loss or at least one output"],
           lambda c: gc.compile()),
    raises("graph/an output named 'loss'", gc.GraphError, ["'loss' is reserved"],
           lambda c: gc.compile(outputs={"loss": gc.input("x", (None, 3))})),
    raises("graph/an output that is not a tensor", gc.GraphError, ["str", HERE],
           lambda c: gc.compile(outputs={"a": "b"})),
    raises("graph/dtype float16", gc.GraphError, ["'float32' or 'float64'", "'float16'"],
           lambda c: gc.compile(loss=gc.sum(gc.input("x", (None, 3))), dtype="float16")),
    raises("graph/unknown backend", gc.GraphError, ["backend", "'gpu'"],
           lambda c: gc.compile(loss=gc.sum(gc.input("x", (None, 3))), backend="gpu")),
    raises("graph/negative weight decay", gc.GraphError, ["weight_decay", ">= 0", "-0.1"],
           lambda c: gc.compile(loss=gc.sum(gc.input("x", (None, 3))), weight_decay=-0.1)),
    raises("graph/learning rate not positive", gc.GraphError, ["lr must be a positive number", "0"],
           lambda c: gc.optim.SGD(lr=0)),
    raises("graph/function inputs that are not inputs", gc.GraphError, ["gc.input tensors"],
           lambda c: gc.function([gc.parameter("W", (3,))], [gc.parameter("W", (3,))])),
    raises("graph/function output needs an input not listed", gc.GraphError,
           ["depend on input 'b'", "inputs=[...]"],
           lambda c: (lambda a, b: gc.function([a], [a + b], backend="reference"))(
               gc.input("a", (None, 3)), gc.input("b", (None, 3)))),
    result("graph/a training loss of the parameters alone (no feeds) compiles and trains",
           feedless_training, feedless_check),

    # --- model files (gc.load = graphc.io.load_program over load_model) -----------------
    raises("file/missing", gc.ModelFileError, ["nope.gcm", "does not exist"],
           lambda c: gc.load(c.tmp / "nope.gcm")),
    raises("file/a directory", gc.ModelFileError, ["is a directory"],
           lambda c: gc.load((c.tmp / "d.gcm").mkdir() or c.tmp / "d.gcm")),
    raises("file/empty", gc.ModelFileError, ["model.gcm", "empty (0 bytes)"], load(raw_file(lambda b: b""))),
    raises("file/truncated to half", gc.ModelFileError, ["model.gcm", "truncated"],
           load(raw_file(lambda b: b[:len(b) // 2]))),
    raises("file/truncated by one byte", gc.ModelFileError, ["truncated"], load(raw_file(lambda b: b[:-1]))),
    raises("file/random bytes", gc.ModelFileError, ["not a zip archive"],
           load(raw_file(lambda b: np.random.default_rng(2).bytes(len(b))))),
    raises("file/trailing bytes", gc.ModelFileError, ["8 trailing byte"],
           load(raw_file(lambda b: b + b"garbage!"))),
    raises("file/leading bytes", gc.ModelFileError, ["before the zip archive"],
           load(raw_file(lambda b: b"MZ" * 8 + b))),
    raises("file/a zip that is not a model", gc.ModelFileError, ["missing member 'model.json'"],
           load(other_zip)),
    raises("file/a valid model file that is not a program", gc.ModelFileError,
           ["not a graphc program file", "'graphc-program'"], load(not_a_program)),
    raises("file/wrong schema version", gc.ModelFileError, ["schema_version", "found 2", "supported 1"],
           load(program_file(lambda h: h.update(schema_version=2)))),
    raises("file/wrong format", gc.ModelFileError, ["wrong format", "'onnx'"],
           load(program_file(lambda h: h.update(format="onnx")))),
    raises("file/tampered shape in the header", gc.ModelFileError,
           ["fc2/W", "stored shape (5, 4)", "declared shape (4, 5)"],
           load(program_file(lambda h: entry(h, "fc2/W").update(shape=[N_OUT, 5])))),
    raises("file/tampered shape, self-consistent file that does not fit the graph", gc.ModelFileError,
           ["fc2/W", "float64[4, 5]", "needs float64[5, 4]"],
           load(program_file(consistent_reshape, set_member("fc2/W", consistent_member)))),
    raises("file/tampered graph: a node's shape disagrees with its op", gc.ModelFileError,
           ["invalid graph", "matmul", "(N, 50)", "(N, 5)"],
           load(program_file(lambda h: graph_node(h, "matmul").update(shape=[None, 50])))),
    raises("file/tampered graph: a parameter's shape disagrees with its attributes", gc.ModelFileError,
           ["invalid graph", "parameter", "(3, 50)", "(3, 5)"],
           load(program_file(lambda h: graph_node(h, "parameter", "fc1/W").update(shape=[3, 50])))),
    raises("file/tampered graph: a cycle", gc.ModelFileError, ["invalid graph", "cycle"],
           load(program_file(add_cycle))),
    raises("file/tampered graph: unknown op", gc.ModelFileError, ["invalid graph", "unknown op 'evil'"],
           load(program_file(lambda h: graph_node(h, "tanh").update(op="evil")))),
    raises("file/graph is not an object", gc.ModelFileError, ["holds no graph", "list"],
           load(program_file(lambda h: h["meta"].update(graph=[1, 2])))),
    raises("file/bad step count", gc.ModelFileError, ["step_count", "integer >= 0", "'abc'"],
           load(program_file(lambda h: h["meta"].update(step_count="abc")))),
    raises("file/loss that is not an output", gc.ModelFileError, ["loss must be", "'nope'"],
           load(program_file(lambda h: h["meta"].update(loss="nope")))),
    raises("file/unknown optimizer", gc.ModelFileError, ["Adagrad"],
           load(program_file(lambda h: h["meta"].update(optimizer={"class": "Adagrad", "args": {}})))),
    raises("file/missing optimizer state", gc.ModelFileError, ["missing ['fc1/W:exp_avg']"],
           load(program_file(members_fn=drop_array("fc1/W:exp_avg")))),
    raises("file/shape x itemsize != stored bytes", gc.ModelFileError,
           ["fc2/W", "stored byte count 152", "itemsize 8 = 160"],
           load(program_file(members_fn=set_member("fc2/W", short_npy)))),
    raises("file/overflowing shape product", gc.ModelFileError, ["over the limit", "overflowing"],
           load(program_file(lambda h: entry(h, "fc1/W").update(shape=[2**62, 2**62, 16])))),
    raises("file/negative dimension", gc.ModelFileError, ["negative"],
           load(program_file(lambda h: entry(h, "fc1/W").update(shape=[-1, 15])))),
    raises("file/huge JSON header", gc.ModelFileError, ["header size limit"],
           load(program_file(raw_header=lambda t: t + b" " * (17 << 20)))),
    raises("file/non-UTF-8 JSON header", gc.ModelFileError, ["not valid UTF-8"],
           load(program_file(raw_header=lambda t: t[:1] + b" \xff\xfe " + t[1:]))),
    raises("file/duplicate JSON keys", gc.ModelFileError, ["duplicate key 'format'"],
           load(program_file(raw_header=lambda t: t.replace(b'{"format":', b'{"format":1,"format":', 1)))),
    raises("file/NaN in the JSON header", gc.ModelFileError, ["not valid JSON", "NaN"],
           load(program_file(raw_header=lambda t: t.replace(b'"seed":0', b'"seed":NaN', 1)))),
    raises("file/array checksum mismatch", gc.ModelFileError, ["fc1/W", "checksum mismatch"],
           load(program_file(members_fn=set_member("fc1/W", flipped_bit)))),
    raises("file/payload checksum mismatch", gc.ModelFileError, ["payload checksum mismatch"],
           load(program_file(lambda h: h["meta"].update(step_count=0), resign=False))),
    raises("file/a pickle instead of an array (never unpickled)", gc.ModelFileError,
           ["fc1/W", "not a .npy array", "pickle"],
           load(program_file(members_fn=set_member("fc1/W", pickle_member)))),
    raises("file/an object array inside (never unpickled)", gc.ModelFileError, ["fc1/b", "object"],
           load(program_file(members_fn=set_member("fc1/b", object_npy)))),
    raises("file/object dtype declared", gc.ModelFileError, ["object arrays are refused"],
           load(program_file(lambda h: entry(h, "fc1/b").update(dtype="object")))),
    raises("file/member named ../", gc.ModelFileError, ["'../evil.npy'", "unsafe path"],
           load(program_file(extra=(("../evil.npy", b"x"),)))),
    raises("file/member with an absolute name", gc.ModelFileError, ["'/etc/evil'", "absolute path"],
           load(program_file(extra=(("/etc/evil", b"x"),)))),
    raises("file/member with a drive letter", gc.ModelFileError, ["'C:/evil'", "absolute path"],
           load(program_file(extra=(("C:/evil", b"x"),)))),
    raises("file/duplicate member names", gc.ModelFileError, ["duplicate member", "arrays/0.npy"],
           load(program_file(extra=(("arrays/0.npy", b"x"),)))),
    raises("file/zip bomb: refused by its declared size, memory stays small", gc.ModelFileError,
           ["fc2/b", "zip bomb", "refusing to decompress"], load_bounded(zip_bomb, 16 << 20)),
    raises("file/zip bomb lying about its size: reads stay bounded", gc.ModelFileError,
           ["corrupt", "CRC"], load_bounded(lying_bomb, 8 << 20)),
    result("file/a good program file loads bit-exactly (compiled backend)", load_bit_exact, bit_exact_check),

    # --- the compile cache ---------------------------------------------------------------
    result("cache/corrupt cached module: rewritten, never run",
           lambda c: in_cache(c, module_text(lambda t, c: t[:len(t) // 3] + "\x00\x01garbage(")),
           rebuilt_silently),
    result("cache/truncated cached module: rewritten",
           lambda c: in_cache(c, module_text(lambda t, c: t[:100])), rebuilt_silently),
    result("cache/a cached module that differs from graphc's: rebuilt, never executed",
           lambda c: in_cache(c, module_text(hostile_module)), rebuilt_silently),
    result("cache/a planted module before the first compile: rebuilt, never executed",
           lambda c: in_cache(c, lambda c, d, k: (d.mkdir(mode=0o700), module_text(hostile_module)(c, d, k)),
                              populate=False), rebuilt_silently),
    result("cache/truncated Numba data file (.nbc): one warning, recompiled",
           lambda c: in_cache(c, damage(".nbc", lambda b: b[:100])),
           rebuilt_with_warning(("unreadable Numba cache files", "recompiled"))),
    result("cache/random Numba index (.nbi): one warning, recompiled",
           lambda c: in_cache(c, damage(".nbi", lambda b: np.random.default_rng(3).bytes(64))),
           rebuilt_with_warning(("unreadable Numba cache files",))),
    result("cache/empty Numba index: one warning, recompiled",
           lambda c: in_cache(c, damage(".nbi", lambda b: b"")),
           rebuilt_with_warning(("EOFError",))),
    result("cache/stale Numba index (module touched): recompiled silently",
           lambda c: in_cache(c, touch_module), rebuilt_silently),
    result("cache/another module's Numba index: recompiled silently",
           lambda c: in_cache(c, foreign_index), rebuilt_silently),
    result("cache/read-only cache directory: one warning, compiled in memory",
           lambda c: in_cache(c, read_only, populate=False, mode=0o700, twice=True),
           in_memory(("read-only",))),
    result("cache/cache directory whose writes fail (read-only file system): in memory",
           lambda c: in_cache(c, write_fails, populate=False, twice=True),
           in_memory(("cannot write to cache directory", "Read-only file system"))),
    result("cache/cache directory not owned by the user: in memory",
           lambda c: in_cache(c, not_owned, populate=False, mode=0o700, twice=True),
           in_memory(("not owned by you",))),
    result("cache/cache directory writable by others: in memory",
           lambda c: in_cache(c, nothing, populate=False, mode=0o777, twice=True),
           in_memory(("writable by its group and others", "0o777", "chmod 700"))),
    result("cache/cache directory writable by its group: in memory",
           lambda c: in_cache(c, nothing, populate=False, mode=0o770, twice=True),
           in_memory(("writable by its group", "0o770"))),
    result("cache/GRAPHC_CACHE_DIR is a file: in memory",
           lambda c: in_cache(c, is_a_file, populate=False, twice=True), in_memory(("unusable",))),

    # --- the command line ----------------------------------------------------------------
    cli_error("cli/missing model file", ["no such file"], lambda c: c.cli("dump", c.tmp / "nope.py:f")),
    cli_error("cli/missing .gcm", ["nope.gcm", "does not exist"],
              lambda c: c.cli("dump", c.tmp / "nope.gcm")),
    cli_error("cli/corrupt .gcm", ["bad.gcm", "not a valid .gcm file"],
              lambda c: (c.tmp / "bad.gcm").write_bytes(b"not a zip") and c.cli("dump", c.tmp / "bad.gcm")),
    cli_error("cli/tampered graph in a .gcm", ["invalid graph", "matmul"],
              lambda c: c.cli("dump", tampered_gcm(c))),
    cli_error("cli/target without :function", ["must be path/to/file.py:function"],
              lambda c: c.cli("dump", c.model_py(BAD_SHAPE))),
    cli_error("cli/no such function", ["no function 'nope'", "model"],
              lambda c: c.cli("dump", f"{c.model_py(BAD_SHAPE)}:nope")),
    cli_error("cli/shape error in the user's model names their line",
              ["inner dimensions differ", "(N, 4) @ (5, 3)", "model.py:6"],
              lambda c: c.cli("dump", f"{c.model_py(BAD_SHAPE)}:model")),
    cli_error("cli/exception in the user's model", ["NameError", "undefined_name", "model.py:2"],
              lambda c: c.cli("dump", f"{c.model_py('def f():' + chr(10) + '    return undefined_name')}:f")),
    cli_error("cli/syntax error in the user's model", ["SyntaxError"],
              lambda c: c.cli("dump", f"{c.model_py('def f(:' + chr(10))}:f")),
    cli_error("cli/unknown data set", ["unknown data set 'weird:thing'", "digits"],
              lambda c: c.cli("train", f"{c.model_py(BAD_SHAPE)}:model", "--data", "weird:thing")),
    cli_error("cli/missing data file", ["none.npz", "no such file"],
              lambda c: c.cli("train", f"{c.model_py(BAD_SHAPE)}:model", "--data", c.tmp / "none.npz")),
    cli_error("cli/train a model without x and y", ["inputs named 'x' and 'y'", "has a"],
              lambda c: c.cli("train", f"{c.model_py(NO_XY)}:model", "--data", c.npz(), "--no-progress")),
    cli_error("cli/unknown optimizer", ["unknown optimizer 'adamx'", "sgd"],
              lambda c: c.cli("train", f"{ROOT / 'examples' / 'mlp.py'}:mlp", "--data", c.npz(),
                              "--optimizer", "adamx", "--no-progress")),
    cli_error("cli/negative epochs", ["epochs must be a non-negative int", "-1"],
              lambda c: c.cli("train", f"{ROOT / 'examples' / 'mlp.py'}:mlp", "--data", c.npz(),
                              "--epochs", "-1", "--no-progress")),
    cli_error("cli/save into a missing directory", ["cannot save", "directory", "does not exist"],
              lambda c: c.cli("train", f"{ROOT / 'examples' / 'mlp.py'}:mlp", "--data", c.npz(),
                              "--epochs", "1", "--no-progress", "--save", c.tmp / "no" / "m.gcm")),
    cli_error("cli/the real entry point (subprocess)", ["nope.py", "no such file"], cli_subprocess),
    result("cli/--debug adds the traceback", cli_debug, debug_check),
]


# ---------------------------------------------------------------------------- the test


@pytest.fixture(autouse=True)
def watchdog():
    """A hang is a failure too: dump every thread's stack and exit instead of waiting forever."""
    faulthandler.dump_traceback_later(WATCHDOG_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def _check_here(msg: str, action: Callable) -> None:
    lines, start = inspect.getsourcelines(action)
    m = re.search(r"\(at (.+?):(\d+)\)", msg)
    assert m, f"no (at file:line) in {msg!r}"
    assert os.path.abspath(m.group(1)) == os.path.abspath(__file__), msg
    assert start <= int(m.group(2)) < start + len(lines), (msg, start, len(lines))


@pytest.mark.parametrize("case", CATALOGUE, ids=[c.id for c in CATALOGUE])
def test_bad_input(case: Case, tmp_path, monkeypatch, capsys):
    ctx = Ctx(tmp_path, monkeypatch, capsys)
    if case.kind == "raises":
        with pytest.raises(gc.GraphcError) as info:
            case.action(ctx)
        err = info.value
        assert isinstance(err, case.error), f"{type(err).__name__}, not {case.error.__name__}: {err}"
        msg = str(err)
        for w in case.words:
            if w is HERE:
                _check_here(msg, case.action)
            else:
                assert w in msg, f"{w!r} not in {msg!r}"
        assert not (tmp_path / "unpickled").exists(), "something was unpickled"
    elif case.kind == "result":
        case.check(ctx, case.action(ctx))
    else:
        code, out, err = case.action(ctx)
        assert code == cli.EXIT_ERROR, (code, err)
        assert err.startswith("graphc: error: ") and err.endswith("\n"), err
        assert len(err.splitlines()) == 1 and "Traceback" not in err, err
        for w in case.words:
            assert w in err, f"{w!r} not in {err!r}"


def test_catalogue_is_one_table_with_unique_ids():
    ids = [c.id for c in CATALOGUE]
    assert len(ids) == len(set(ids))
    for c in CATALOGUE:
        assert c.kind in ("raises", "result", "cli")
        assert c.kind != "raises" or (issubclass(c.error, gc.GraphcError) and c.words), c.id
        assert c.kind != "result" or c.check is not None, c.id
        assert c.kind != "cli" or c.words, c.id
