"""The compiled backend: optimise, generate, load, and call one native function per step.

``CompiledImpl`` owns the generated module and one workspace array per batch
size (allocated on first use of that size, then reused: a steady-state step
allocates nothing).  Feeds arrive already validated by the Program.
"""

from __future__ import annotations

import time
import weakref

import numba
import numpy as np

import graphc
from graphc.codegen import cache
from graphc.codegen.module import (
    build_layout,
    entry_source,
    fit_source,
    module_source,
    source_key,
)
from graphc.errors import CompileError, FeedError, NumericsError
from graphc.ir.graph import Graph
from graphc.ir.node import INT, NONE, TUPLE
from graphc.ops.update import state_slots
from graphc.runtime.feeds import check_allocation, gib
from graphc.runtime.fit import drive_epochs


def _optimize(graph: Graph, verify: bool, guard: bool):
    from graphc.passes import optimize

    return optimize(graph, verify=verify, guard=guard)


def host_fingerprint() -> str:
    import llvmlite
    import llvmlite.binding as llvm

    from graphc.kernels import SOURCE_HASH

    # The kernels' source enters the key: their machine code is linked into the module.
    return "|".join([graphc.__version__, numba.__version__, llvmlite.__version__,
                     llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten(),
                     SOURCE_HASH])


class Entry:
    """One generated entry point with its graph, layout and feed order."""

    def __init__(self, name: str, graph: Graph, report, feeds: list[str], returns: int | None):
        self.name = name
        self.graph = graph
        self.report = report
        self.plan = graph.meta["memory_plan"]
        self.feeds = feeds
        self.returns = returns
        self.layout = None
        self.emitter = None
        self.fn = None
        self.workspaces: dict[int, np.ndarray] = {}

    def workspace(self, n: int, dtype: np.dtype) -> np.ndarray:
        ws = self.workspaces.get(n)
        if ws is None:
            offs = self.layout.offsets(n)
            elems = offs[-1]
            what = f"batch size {n}: the {self.name} workspace"
            check_allocation(elems * dtype.itemsize, what)
            try:
                ws = np.empty(max(elems, 1), dtype=dtype)
            except (MemoryError, ValueError) as e:
                raise FeedError(f"{what} ({gib(elems * dtype.itemsize)}) cannot be allocated "
                                f"({e})") from None
            # The status word is read whenever a call returns NaN: it must start at 0,
            # not hold whatever np.empty left there.
            ws[offs[self.layout.slot_of["status"]]] = 0
            self.workspaces[n] = ws
        return ws


class CompiledImpl:
    def __init__(self, program) -> None:
        t0 = time.perf_counter()
        self.program = program
        opts = program.options
        self.check_numerics = opts["check_numerics"]
        arena = program.arena.offsets
        self.entries: dict[str, Entry] = {}
        specs = [("forward", program.forward_graph, None)]
        if program.loss_name is not None:
            specs.append(("evaluate", program.eval_graph, program.loss_name))
        if program.train_graph is not None:
            specs.insert(0, ("train_step", program.train_graph, "loss"))
        sources = []
        for name, graph, ret in specs:
            opt, report = _optimize(graph, opts["verify"], opts["check_passes"])
            feeds = sorted(opt.by_name("input"))
            e = Entry(name, opt, report, feeds, opt.outputs[ret] if ret else None)
            e.layout = build_layout(opt, e.plan, arena)
            self.entries[name] = e
        self.t_optimize = time.perf_counter() - t0
        sources = []
        for e in self.entries.values():
            src, em = entry_source(e.name, e.graph, e.plan, e.layout, e.feeds, e.returns,
                                   self.check_numerics, True, program.feed_spec.label_classes)
            e.emitter = em
            sources.append(src)
        if "train_step" in self.entries:
            sources.append(fit_source(self.entries["train_step"].feeds, True))
        summary = f"entries: {', '.join(self.entries)}; dtype {program.dtype.name}"
        self.source = module_source(sources, graphc.__version__, summary)
        self.key = source_key(self.source, host_fingerprint())
        t1 = time.perf_counter()
        try:
            self.module, self.path, self.on_disk = cache.load(self.source, self.key)
        except Exception as e:  # a generator bug must not look like a user error
            raise CompileError(f"loading the generated module failed: {e}") from e
        for e in self.entries.values():
            e.fn = getattr(self.module, e.name)
        self.t_load = time.perf_counter() - t1
        self.t_compile_native = 0.0
        self._gather: dict = {}
        self._compiled: weakref.WeakSet = weakref.WeakSet()  # functions known compiled
        self.prepare_fast()

    # --- calls ----------------------------------------------------------------------
    def _call(self, e: Entry, feeds: dict[str, np.ndarray], n: int, lr: float, step: int) -> float:
        ws = e.workspace(n, self.program.dtype)
        args = [feeds[f] for f in e.feeds]
        if self.check_numerics:
            status = e.layout.offsets(n)[e.layout.slot_of["status"]]
            ws[status] = 0
        # Numerics mode stops a step at its first non-finite value, possibly after some
        # parameters were updated: keep a copy to put the last finite weights back.
        backup = (self.program.arena.data.copy()
                  if self.check_numerics and e.name == "train_step" else None)
        if not self._has_run(e.fn):  # first call compiles (or loads the cache)
            out = self._first_call(e.fn, self.program.arena.data, ws, n, lr, step, *args)
        else:
            out = e.fn(self.program.arena.data, ws, n, lr, step, *args)
        if out != out or self.check_numerics:
            try:
                self._check_status(e, ws, n, feeds, step)
            except NumericsError:
                if backup is not None:
                    self.program.arena.data[...] = backup
                raise
        return out

    def _check_status(self, e: Entry, ws: np.ndarray, n: int, feeds, step: int) -> None:
        status = e.layout.offsets(n)[e.layout.slot_of["status"]]
        code = int(ws[status])
        ws[status] = 0
        if code in (-1, -2):  # a label out of range, a feed of the wrong shape
            self.program.feed_spec.validate(feeds, self.program.dtype, set(feeds))  # raises
            raise FeedError("a label is out of range" if code == -1 else
                            f"feed shapes {[np.shape(a) for a in feeds.values()]} do not match "
                            "the program's inputs")
        if code > 0:
            raise NumericsError(self._numerics_message(e, code, step, ws, n, feeds))

    def prepare_fast(self) -> None:
        """Build ``fast_step``: ``Program.step``'s path for feeds that already are exactly
        what ``train_step`` takes (or None where there is no such path).

        A hot training loop passes the same well-formed arrays every step.  The fast
        path checks what only Python can see -- the array type, the dtype (the
        builtin dtypes are singletons, so ``is``), ndim, C order -- and leaves every
        shape to the generated code (status -2: the general validation then names the
        feed).  Everything it touches is bound here, because each attribute read costs
        about as much as the native call of a tiny step, and it is written out for the
        entry's number of feeds (see ``_make_fast_step``).
        """
        self.fast_step = None
        e = self.entries.get("train_step")
        if e is None or self.check_numerics or not e.feeds:
            return
        program = self.program
        spec = []
        for name in e.feeds:
            shape, kind = program.feed_spec.inputs[name]
            if not shape or shape[0] is not None:
                return
            dt = np.dtype(np.int64) if kind == "int64" else program.dtype
            spec.append((name, dt, len(shape)))
        self.fast_step = _make_fast_step(self, e, spec)

    def fit_epochs(self, feeds: dict[str, np.ndarray], perm: np.ndarray, bs: int,
                   lrs: np.ndarray, step0: int, losses: np.ndarray, stop_on_nan: bool = True,
                   shuffle: bool = False, seed: int = 0, epoch0: int = 0,
                   in_order: bool = False) -> int:
        """Run every minibatch of ``lrs.size`` epochs natively; returns the number of
        steps taken (fewer when ``stop_on_nan`` and a loss was not finite).

        With ``shuffle`` each epoch's order is ``epoch_order(seed, epoch0 + e)``,
        written into ``perm``; without, ``perm`` is the order of every epoch, and
        ``in_order`` says it is ``arange(n)`` (minibatches are then views, not copies).
        """
        e = self.entries["train_step"]
        ws = e.workspace(bs, self.program.dtype)
        srcs = [feeds[f] for f in e.feeds]
        key = (bs, tuple((a.shape[1:], a.dtype) for a in srcs))
        bufs = self._gather.get(key)
        if bufs is None:
            bufs = [np.empty((bs, *a.shape[1:]), dtype=a.dtype) for a in srcs]
            self._gather = {key: bufs}
        arena = self.program.arena.data
        if self.check_numerics:
            return self._fit_checked(e, feeds, perm, bs, lrs, step0, losses, stop_on_nan,
                                     shuffle, seed, epoch0)
        fn = self.module.fit_loop
        rows = srcs[0].shape[0] if srcs else 0
        if shuffle and perm.size != rows:  # epoch_order writes range(perm.size): gathered rows
            raise FeedError(f"fit: a shuffled epoch needs one order entry per example "
                            f"({rows}), got {perm.size}")
        in_order = in_order and not shuffle and perm.size == rows
        args = (arena, ws, bs, lrs, step0, perm, shuffle, np.uint64(seed % 2**64),
                np.uint64(epoch0), in_order, losses, stop_on_nan, *srcs, *bufs)
        if not self._has_run(fn):
            return int(self._first_call(fn, *args))
        return int(fn(*args))

    def _fit_checked(self, e, feeds, perm, bs, lrs, step0, losses, stop_on_nan, shuffle,
                     seed, epoch0) -> int:
        """``fit_epochs`` in numerics mode, which needs the status word after every
        step: the same steps, driven from Python."""
        def step(batch, n, lr, s):
            try:
                return self._call(e, batch, n, lr, step0 + s + 1)
            except NumericsError as err:
                err.steps_done = s  # the failing step was undone; s steps stand
                raise

        return drive_epochs(step, {f: feeds[f] for f in e.feeds}, perm, bs, lrs, losses,
                            stop_on_nan, shuffle, seed, epoch0)

    def _has_run(self, fn) -> bool:
        """Whether ``fn`` has compiled code.  Numba's ``signatures`` builds a list and
        hashes every type on each read (15 us: as much as a whole xor epoch), so a
        function seen compiled is remembered."""
        try:
            if fn in self._compiled:
                return True
        except TypeError:  # not weak-referenceable: ask every time
            return bool(getattr(fn, "signatures", True))
        if getattr(fn, "signatures", True):
            self._compiled.add(fn)
            return True
        return False

    def _first_call(self, fn, *args):
        """Call ``fn`` for the first time: Numba compiles it or loads it from its cache.

        Numba's cache files are pickles that Numba reads without catching errors,
        so a truncated or corrupt one (a full disk, a killed writer) raised
        UnpicklingError/EOFError at the first step.  If the call fails before
        any code ran (``fn`` still has no compiled signature), the module's
        Numba cache files are deleted and the call is retried once, compiling
        afresh; a second failure is a :class:`CompileError`.
        """
        t0 = time.perf_counter()
        try:
            return fn(*args)
        except Exception as err:
            if getattr(fn, "signatures", True):  # it compiled and ran: not a cache problem
                raise
            removed = cache.purge_native(self.key, fn)
            if not removed:
                raise CompileError(f"native compilation of {getattr(fn, '__name__', fn)} failed: "
                                   f"{type(err).__name__}: {err}") from err
            cache.warn_once(f"graphc: unreadable Numba cache files for module g_{self.key[:16]} "
                            f"({type(err).__name__}: {err}); deleted {removed} file(s) and "
                            "recompiled")
            try:
                return fn(*args)
            except Exception as err2:
                if getattr(fn, "signatures", True):
                    raise
                raise CompileError(f"native compilation of {getattr(fn, '__name__', fn)} "
                                   f"failed: {type(err2).__name__}: {err2}") from err2
        finally:
            self.t_compile_native += time.perf_counter() - t0

    # --- numerics mode ----------------------------------------------------------------
    _TUPLE_NAMES = {"dense": ("y", "z"), "sce_fused": ("loss", "probabilities"),
                    "bce_fused": ("loss", "sigmoid")}

    def _numerics_message(self, e: Entry, code: int, step: int, ws: np.ndarray, n: int,
                          feeds) -> str:
        """What went non-finite, decoded from the status word (see ``Emitter._numerics_check``):
        the value, the op and the user's layer and source line, the entry and step, and
        which of the op's inputs were already non-finite."""
        g = e.graph
        nid, k = divmod(code, 8)
        nid -= 1
        node = g.node(nid)
        if node.op == "update":
            pname, opt = node.get("param"), node.get("opt")
            slot = state_slots(node.attr)[k - 1] if k else None
            key = f"{pname}:{slot}" if slot else pname
            what = (f"optimizer state {key!r}" if slot else f"parameter {pname!r}")
            what += f" after its {opt} update"
            bad = self._state_of(self.program.arena.views[key])
            src = nid
        else:
            src = g.inputs(nid)[0] if node.op == "getitem" else nid
            what = "the output"
            if node.op == "getitem":
                prod = g.node(src)
                names = prod.get("outs") or self._TUPLE_NAMES.get(prod.op) or ()
                idx = node.get("index")
                what = f"output {names[idx] if idx < len(names) else idx}"
            bad = self._state_of(self._value(e, nid, ws, n, feeds))
        snode = g.node(src)
        desc = snode.op
        if snode.get("act"):
            desc += f" (act {snode.get('act')})"
        layer = self._layer(g, src)
        if layer:
            desc += f" of layer {layer!r}"
        if snode.loc:
            desc += f", defined at {snode.loc}"
        ins = []
        for i in g.inputs(src):
            st = self._state_of(self._value(e, i, ws, n, feeds))
            if st is not None:
                ins.append((self._input_label(g, i), st))
        nonfinite = [f"{lab} ({st})" for lab, st in ins if st != "finite"]
        if nonfinite:
            cause = "non-finite input(s): " + ", ".join(nonfinite)
        else:
            cause = ("all its inputs are finite, so the op itself produced it (overflow, "
                     "inf - inf, 0/0...)")
        listing = ", ".join(f"{lab}: {st}" for lab, st in ins)
        train = e.name == "train_step"
        return (f"{bad or 'non-finite'} in {what} of {desc}, in {e.name}"
                f"{f' at step {step}' if train else ''}; {cause}. Inputs: {listing or 'none'}."
                f"{' The weights are those from before this step.' if train else ''} (numerics "
                "mode: check_numerics=True or GRAPHC_CHECK_NUMERICS=1)")

    @staticmethod
    def _state_of(a) -> str | None:
        if a is None:
            return None
        if np.isnan(a).any():
            return "NaN"
        if np.isinf(a).any():
            return "+inf" if (a == np.inf).any() and not (a == -np.inf).any() else (
                "-inf" if not (a == np.inf).any() else "+-inf")
        return "finite"

    def _value(self, e: Entry, i: int, ws: np.ndarray, n: int, feeds):
        """Node i's current value (None for tuples, integers and values with no buffer)."""
        node = e.graph.node(i)
        if node.op == "input":
            a = feeds.get(node.get("name"))
            return None if a is None or a.dtype.kind != "f" else a
        if node.op == "parameter":
            return self.program.arena.views[node.get("name")]
        slot = e.layout.slot_of.get(i)
        if node.dtype in (TUPLE, NONE, INT) or slot is None:
            return None
        shape = tuple(n if d is None else d for d in node.shape) or (1,)
        off = e.layout.offsets(n)[slot]
        return ws[off:off + int(np.prod(shape, dtype=np.int64))]

    @staticmethod
    def _layer(g: Graph, nid: int) -> str:
        """The user's name for node nid: its own, or the layer of a parameter it reads
        ("fc1" from "fc1/W")."""
        node = g.node(nid)
        if node.get("name") and node.op not in ("input", "parameter"):
            return str(node.get("name"))
        if node.op == "update":
            return str(node.get("param")).rsplit("/", 1)[0]
        for i in g.inputs(nid):
            src = g.node(i)
            if src.op == "getitem":
                src = g.node(g.inputs(i)[0])
            if src.op == "parameter" and "/" in str(src.get("name")):
                return str(src.get("name")).rsplit("/", 1)[0]
        return ""

    def _input_label(self, g: Graph, i: int) -> str:
        node = g.node(i)
        if node.op == "input":
            return f"feed {node.get('name')!r}"
        if node.op == "parameter":
            return f"parameter {node.get('name')!r}"
        if node.op == "getitem":
            prod = g.node(g.inputs(i)[0])
            names = prod.get("outs") or self._TUPLE_NAMES.get(prod.op) or ()
            idx = node.get("index")
            part = names[idx] if idx < len(names) else idx
            layer = self._layer(g, g.inputs(i)[0])
            return f"{part} of {prod.op}" + (f" {layer!r}" if layer else "")
        layer = self._layer(g, i)
        return node.op + (f" {layer!r}" if layer else "")

    def step(self, feeds: dict[str, np.ndarray], n: int, lr: float, step: int) -> float:
        e = self.entries["train_step"]
        return float(self._call(e, feeds, n, lr, step))

    def evaluate(self, feeds: dict[str, np.ndarray], n: int) -> tuple[float, dict]:
        e = self.entries["evaluate"]
        loss = float(self._call(e, feeds, n, 0.0, 0))
        return loss, self.read_outputs(e, feeds, n)

    def run(self, feeds: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        e = self.entries["forward"]
        self._call(e, feeds, n, 0.0, 0)
        return self.read_outputs(e, feeds, n)

    def read_outputs(self, e: Entry, feeds, n: int) -> dict[str, np.ndarray]:
        ws = e.workspaces[n]
        offs = e.layout.offsets(n)
        out = {}
        for name, nid in e.graph.outputs.items():
            node = e.graph.node(nid)
            shape = tuple(n if d is None else d for d in node.shape)
            if node.op == "input":
                out[name] = feeds[node.get("name")].copy()
            elif node.op == "parameter":
                out[name] = self.program.arena.views[node.get("name")].copy()
            else:
                off = offs[e.layout.slot_of[nid]]
                size = int(np.prod(shape, dtype=np.int64))
                out[name] = ws[off:off + size].reshape(shape).copy()
        return out


def _c_order_test(var: str, nd: int, isz: int) -> str:
    """A Python expression true when array ``var`` has ``nd`` dims in C order, reading only
    ``ndim``/``shape``/``strides`` (``.flags`` allocates an object on every access)."""
    if nd == 1:
        return f"{var}.ndim == 1 and {var}.strides[0] == {isz}"
    if nd == 2:
        return (f"{var}.ndim == 2 and {var}.strides[1] == {isz} "
                f"and {var}.strides[0] == {var}.shape[1] * {isz}")
    return f"{var}.ndim == {nd} and {var}.flags.c_contiguous"


def _make_fast_step(impl: CompiledImpl, e: Entry, spec: list[tuple[str, np.dtype, int]]):
    """``fast_step(feeds) -> loss | None`` for ``train_step`` with these feeds, as Python source
    with one variable per feed, so a steady step builds no list or argument tuple and
    tracemalloc sees no allocation but the new step count (see ``prepare_fast``)."""
    args = [f"a{i}" for i in range(len(spec))]
    lines = ["def fast_step(feeds):",
             f"    if len(feeds) != {len(spec)}:",
             "        return None"]
    for i, (_, dt, nd) in enumerate(spec):
        lines += [f"    a{i} = feeds.get(name{i})",
                  f"    if not (type(a{i}) is ndarray and a{i}.dtype is dt{i} and "
                  f"{_c_order_test(f'a{i}', nd, dt.itemsize)}):",
                  "        return None"]
    lines += ["    n = a0.shape[0]",
              "    ws = workspaces.get(n)",
              "    if ws is None:  # a new batch size: the general path allocates its workspace",
              "        return None",
              "    with lock:",
              "        program.step_count += 1",
              f"        out = entry.fn(program.arena.data, ws, n, program.lr(), program.step_count, "
              f"{', '.join(args)})",
              "        if out != out:",
              f"            refused(ws, n, ({', '.join(args)},))",
              "    return out"]
    program = impl.program
    names = [name for name, _, _ in spec]

    def refused(ws: np.ndarray, n: int, arrays: tuple) -> None:
        # NaN: an empty batch or a NaN loss (status 0), or the generated checks refused
        # the feeds (the general validation then says why): that step never ran.
        try:
            impl._check_status(e, ws, n, dict(zip(names, arrays, strict=True)),
                               program.step_count)
        except (FeedError, NumericsError):
            program.step_count -= 1
            raise

    env = {"ndarray": np.ndarray, "workspaces": e.workspaces, "lock": program._lock,
           "program": program, "entry": e, "refused": refused}
    env.update({f"name{i}": name for i, name in enumerate(names)})
    env.update({f"dt{i}": dt for i, (_, dt, _) in enumerate(spec)})
    exec(compile("\n".join(lines) + "\n", f"<graphc fast_step {e.name}>", "exec"), env)  # noqa: S102
    return env["fast_step"]
