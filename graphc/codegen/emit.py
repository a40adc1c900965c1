"""Emit the Python source of one Numba module for an optimised graph.

The module has one ``@njit`` entry point per program function (``train_step``,
``forward``).  Each takes few arguments -- the parameter arena, the workspace,
the batch size, the runtime scalars (learning rate, step), then the feeds in
name order -- because Numba unboxes every array argument on every call.
Inside, parameters and optimizer state are views carved from the arena at
compile-time offsets, and every intermediate is a view into the workspace at
offsets the memory plan gives (computed from the batch size in a few integer
operations).  Each node becomes one kernel call from ``graphc.kernels``;
the generated code never contains an op's maths itself.

Scalars (shape ``()``) live in one-element buffers so every value is an array.
Kernels that want 2-D operands get 2-D views (``K_view.carve``, which costs no
reference counting, unlike slicing and ``reshape``): a 1-D tensor of m is
viewed as (1, m), an (n, m) tensor as itself.

Lowering choices made here, by static shape and graph structure:
  * ``update`` of a dense layer's W and b by plain SGD (no momentum, no
    clipping) folds into the backward GEMM (``dense_bwd_sgd``: alpha = -lr,
    beta = 1 - lr*wd), so dW and db are never materialised;
  * a scratch buffer a kernel needs (dz of a dense backward, softmax of an
    unfused cross-entropy) gets a workspace slot of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from graphc.errors import CompileError
from graphc.ir.graph import Graph
from graphc.ir.node import INT, NONE, TUPLE, Node
from graphc.kernels.dense import SMALL_MAX_KM
from graphc.ops.update import state_slots

ACT_CODES = {"linear": 0, "relu": 1, "sigmoid": 2, "tanh": 3, "leaky_relu": 4, "elu": 5,
             "softplus": 6, "prelu": 7}
FASTMATH = "{'reassoc', 'contract', 'arcp', 'nsz', 'afn'}"
ALIGN = 16


@dataclass
class Layout:
    """Where every value lives: arena offsets (static) and workspace slots (per batch)."""

    arena: dict[str, tuple[int, tuple]]         # name -> (offset, shape)
    slot_sizes: list[list[tuple[int, int]]]     # slot -> [(a, b)]: elems = max(a*n + b)
    slot_of: dict[int, int] = field(default_factory=dict)

    def slot_elems(self, slot: int, n: int) -> int:
        return max((a * n + b for a, b in self.slot_sizes[slot]), default=0)

    def offsets(self, n: int) -> list[int]:
        out, pos = [], 0
        for s in range(len(self.slot_sizes)):
            out.append(pos)
            pos += -(-self.slot_elems(s, n) // ALIGN) * ALIGN
        out.append(pos)
        return out


def linear_size(shape: tuple) -> tuple[int, int]:
    """Element count as a*n + b for a shape with at most one None (batch) dim."""
    prod = 1
    batch = False
    for d in shape:
        if d is None:
            if batch:
                raise CompileError(f"shape {shape} has two batch dimensions")
            batch = True
        else:
            prod *= d
    return (prod, 0) if batch else (0, prod)


def _dims(shape: tuple) -> list[str]:
    return ["n" if d is None else str(d) for d in shape]


def _tuple(dims: list[str]) -> str:
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _size(shape: tuple) -> str:
    a, b = linear_size(shape)
    if a == 0:
        return str(b)
    return "n" if a == 1 else f"{a} * n"


def _f(x) -> str:
    if x is None:
        return "0.0"
    v = float(x)
    if math.isinf(v) or math.isnan(v):
        return f"np.float64('{v}')"
    return repr(v)


class Emitter:
    """Source for one entry point; see the module docstring."""

    def __init__(self, g: Graph, schedule: list[int], layout: Layout, feeds: list[str],
                 check_numerics: bool = False) -> None:
        self.g = g
        self.schedule = schedule
        self.layout = layout
        self.feeds = feeds
        self.check_numerics = check_numerics
        self.lines: list[str] = []
        self.decls: list[str] = []  # every view declaration, for per-node profiling functions
        self.var: dict[int, str] = {}
        self.shape: dict[int, tuple] = {}
        self.skip: set[int] = set()
        self.node_lines: dict[int, list[str]] = {}
        self.folded: dict[int, list[int]] = {}  # dense_bwd id -> update ids it absorbs
        self._plan_folds()

    # --- structure ------------------------------------------------------------------
    def _users(self, n: int) -> list[int]:
        return self.g.users(n)

    def _plan_folds(self) -> None:
        """Find dense_bwd nodes whose dW (and db) only feed a plain-SGD update."""
        g = self.g
        for n in self.schedule:
            node = g.node(n)
            if node.op != "dense_bwd":
                continue
            outs = node.get("outs")
            x, W = g.inputs(n)[:2]
            items = {g.node(u).get("index"): u for u in self._users(n)
                     if g.node(u).op == "getitem"}
            ups: dict[str, int] = {}
            ok = "dW" in outs
            for key in ("dW", "db", "da"):
                if key not in outs or not ok:
                    continue
                item = items.get(outs.index(key))
                users = self._users(item) if item is not None else []
                if (item is None or len(users) != 1 or g.node(users[0]).op != "update"
                        or g.uses(item) != 1):
                    ok = False
                    break
                up = g.node(users[0])
                ins = g.inputs(users[0])
                if (up.get("opt") != "sgd" or up.get("momentum") or len(ins) != 2
                        or ins[1] != item):
                    ok = False
                    break
                ups[key] = users[0]
            if not ok:
                continue
            fwd_ins = g.inputs(n)
            param_W = g.inputs(ups["dW"])[0]
            if param_W != W:
                continue
            # A bias is folded only when the db output exists; with a bias but no db
            # (impossible from autodiff) we don't fold.
            fwd = [u for u in self._users(W) if g.node(u).op == "dense"]
            if len(fwd) != 1:
                continue
            fnode = g.node(fwd[0])
            f_ins = g.inputs(fwd[0])
            if fnode.get("has_bias") and "db" not in ups:
                continue
            if fnode.get("act") == "prelu" and "da" not in ups:
                continue
            if "db" in ups and g.inputs(ups["db"])[0] != f_ins[2]:
                continue
            # Every other reader of W, b (and the slope) must run before this node.
            params = [W] + ([f_ins[2]] if "db" in ups else []) + (
                [fwd_ins[4]] if "da" in ups else [])
            readers = {r for p in params for r in self._users(p)} - {n, fwd[0], *ups.values()}
            if readers:
                continue
            self.folded[n] = [ups[k] for k in ("dW", "db", "da") if k in ups]
            self.skip.update(ups.values())
            self.skip.update(items[outs.index(k)] for k in ("dW", "db", "da") if k in ups)

    # --- variables -------------------------------------------------------------------
    def _buf(self, n: int) -> str:
        """Declare the workspace view of value n (its slot), returning its name."""
        node = self.g.node(n)
        slot = self.layout.slot_of[n]
        name = f"v{n}"
        shape = node.shape if node.shape != () else (1,)
        decl = f"    {name} = K_view.carve(ws, o{slot}, {_tuple(_dims(shape))})"
        self.lines.append(decl)
        self.decls.append(decl)
        self.var[n] = name
        self.shape[n] = shape
        return name

    def _scratch(self, key: tuple, dims: list[str]) -> str:
        """A kernel's scratch buffer of shape ``dims`` (see :func:`scratch_needs`)."""
        slot = self.layout.slot_of[key]  # type: ignore[index]
        size = " * ".join(dims) if dims else "1"
        return f"K_view.carve(ws, o{slot}, {size if len(dims) == 1 else _tuple(dims)})"

    def v(self, n: int) -> str:
        return self.var[n]

    def flat(self, n: int) -> str:
        return f"K_view.carve({self.var[n]}, 0, {_size(self.shape[n])})"

    def two_d(self, n: int) -> str:
        shape = self.shape[n]
        if len(shape) == 2:
            return self.var[n]
        return f"K_view.carve({self.var[n]}, 0, (1, {_size(shape)}))"

    # --- emission --------------------------------------------------------------------
    def emit(self) -> list[str]:
        g = self.g
        for n in self.schedule:
            if n in self.skip:
                continue
            node = g.node(n)
            start = len(self.lines)
            self.lines.append(f"    # %{n} {node.op}" + (f" {node.get('name')}"
                              if node.get("name") else ""))
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                raise CompileError(f"no code generator for op {node.op!r}")
            handler(n, node, g.inputs(n))
            if self.check_numerics and node.op not in ("input", "parameter", "constant",
                                                       "getitem"):
                self._numerics_check(n, node)
            self.node_lines[n] = self.lines[start:]
        return self.lines

    def _numerics_check(self, n: int, node: Node) -> None:
        """After node n's kernel, every value it wrote must be finite, or the entry stops.

        The status word names the first non-finite value as ``(id + 1) * 8 + k``: a
        node's own value (k = 0; a tuple's elements by their getitem ids), or for an
        update of parameter p -- also one folded into ``dense_bwd_sgd`` -- p itself
        (k = 0) and its i-th optimizer state slot (k = 1 + i).  The runtime decodes it
        (``CompiledImpl._numerics_error``).
        """
        checks: list[tuple[str, int]] = []
        if node.dtype == TUPLE:
            checks += [(self.flat(u), (u + 1) * 8) for u in self._users(n)
                       if g_op(self.g, u) == "getitem" and u not in self.skip and u in self.var]
        elif node.op == "update":
            checks += self._update_checks(n)
        elif node.dtype not in (NONE, INT) and n in self.var:
            checks.append((self.flat(n), (n + 1) * 8))
        for u in self.folded.get(n, []):
            checks += self._update_checks(u)
        for view, code in checks:
            self.lines.append(f"    if not K_ew.all_finite({view}):")
            self.lines.append(f"        status[0] = {code}")
            self.lines.append("        return np.nan")

    def _update_checks(self, u: int) -> list[tuple[str, int]]:
        node = self.g.node(u)
        out = [(self.flat(self.g.inputs(u)[0]), (u + 1) * 8)]
        for k, slot in enumerate(state_slots(node.attr)):
            off, shape = self.layout.arena[f"{node.get('param')}:{slot}"]
            size = math.prod(shape) if shape else 1
            out.append((f"K_view.carve(arena, {off}, {size})", (u + 1) * 8 + 1 + k))
        return out

    # sources
    def op_input(self, n, node, ins):
        name = f"f_{self.feeds.index(node.get('name'))}"
        self.var[n] = name
        self.shape[n] = node.shape if node.shape != () else (1,)

    def op_parameter(self, n, node, ins):
        self._arena_view(n, node.get("name"), node.shape)

    def _arena_view(self, n, name, shape):
        off, _ = self.layout.arena[name]
        shape = shape if shape != () else (1,)
        var = f"p{n}"
        decl = f"    {var} = K_view.carve(arena, {off}, {_tuple(_dims(shape))})"
        self.lines.append(decl)
        self.decls.append(decl)
        self.var[n] = var
        self.shape[n] = shape

    def op_constant(self, n, node, ins):
        out = self._buf(n)
        value = node.get("value")
        if isinstance(value, tuple):
            flat = _flatten(value)
            for i, x in enumerate(flat):
                self.lines.append(f"    K_view.carve({out}, 0, {len(flat)})[{i}] = {_f(x)}")
        else:
            self.lines.append(f"    K_ew.broadcast_fill({self.flat(n)}, {_f(value)})")

    def op_zeros_like(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    K_ew.broadcast_fill({self.flat(n)}, 0.0)")

    # arithmetic
    def _binary(self, n, node, ins, kind):
        a, b = ins
        out = self._buf(n)
        sa, sb = self.g.node(a).shape, self.g.node(b).shape
        if sa == sb:
            self.lines.append(f"    K_ew.ew_{kind}({self.flat(a)}, {self.flat(b)}, {self.flat(n)})")
        elif sb == () or sa == ():
            self.lines.append(f"    K_ew.ew_{kind}({self.flat(a)}, {self.flat(b)}, {self.flat(n)})")
        elif len(sb) < len(sa):
            self.lines.append(f"    K_ew.ew_{kind}_row({self._rows(a, sb)}, {self.flat(b)}, "
                              f"{self._rows(n, sb)})")
        elif kind == "sub":  # a row vector minus a matrix: -(b - a)
            self.lines.append(f"    K_ew.ew_sub_row({self._rows(b, sa)}, {self.flat(a)}, "
                              f"{self._rows(n, sa)})")
            self.lines.append(f"    K_ew.ew_neg({self.flat(n)}, {self.flat(n)})")
        else:
            self.lines.append(f"    K_ew.ew_{kind}_row({self._rows(b, sa)}, {self.flat(a)}, "
                              f"{self._rows(n, sa)})")
        return out

    def _rows(self, n: int, suffix: tuple) -> str:
        """View n as (rows, prod(suffix)) for row-vector broadcasting."""
        inner = math.prod(suffix)
        a, b = linear_size(self.g.node(n).shape)
        rows = ("n" if a == inner else f"{a // inner} * n") if a else str(b // inner)
        return f"K_view.carve({self.var[n]}, 0, ({rows}, {inner}))"

    def op_add(self, n, node, ins):
        self._binary(n, node, ins, "add")

    def op_sub(self, n, node, ins):
        self._binary(n, node, ins, "sub")

    def op_mul(self, n, node, ins):
        self._binary(n, node, ins, "mul")

    def op_neg(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    K_ew.ew_neg({self.flat(ins[0])}, {self.flat(n)})")

    def op_scale(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    K_ew.ew_scale({self.flat(ins[0])}, {_f(node.get('factor'))}, "
                          f"{self.flat(n)})")

    def op_identity(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    K_ew.copy({self.flat(ins[0])}, {self.flat(n)})")

    def op_getitem(self, n, node, ins):
        pass  # the tuple's producer wrote straight into this buffer

    # linear algebra
    def op_matmul(self, n, node, ins):
        self._buf(n)
        a, b = ins
        self.lines.append(f"    K_blas.gemm_auto({node.get('ta')}, {node.get('tb')}, 1.0, "
                          f"{self.v(a)}, {self.v(b)}, 0.0, {self.v(n)})")

    def op_transpose(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    K_ew.transpose({self.v(ins[0])}, {self.v(n)})")

    # reductions
    def _count(self, n: int, axis) -> str:
        """How many elements a mean over ``axis`` of n averages, as a parenthesised expression."""
        shape = self.g.node(n).shape
        if axis is None:
            return f"({_size(shape)})" if shape != () else "1"
        d = shape[axis]
        return "n" if d is None else str(d)

    def _reduce(self, n, node, ins, mean: bool):
        self._buf(n)
        x = ins[0]
        axis = node.get("axis")
        xs = self.g.node(x).shape
        if axis is None or len(xs) <= 1:
            self.lines.append(f"    {self.v(n)}[0] = K_ew.sum_all({self.flat(x)})")
        elif axis == 0:
            self.lines.append(f"    K_ew.sum_axis0({self.v(x)}, {self.v(n)})")
        else:
            self.lines.append(f"    K_ew.sum_axis1({self.v(x)}, {self.v(n)})")
        if mean:
            cnt = self._count(x, axis if len(xs) > 1 else None)
            self.lines.append(f"    K_ew.ew_scale({self.flat(n)}, 1.0 / {cnt} if {cnt} else "
                              f"np.nan, {self.flat(n)})")

    def op_sum(self, n, node, ins):
        self._reduce(n, node, ins, False)

    def op_mean(self, n, node, ins):
        self._reduce(n, node, ins, True)

    def op_sum_to(self, n, node, ins):
        self._buf(n)
        x = ins[0]
        xs = self.g.node(x).shape
        nd = node.get("ndim")
        if nd == len(xs):
            self.lines.append(f"    K_ew.copy({self.flat(x)}, {self.flat(n)})")
        elif nd == 0:
            self.lines.append(f"    {self.v(n)}[0] = K_ew.sum_all({self.flat(x)})")
        else:
            suffix = xs[len(xs) - nd:]
            self.lines.append(f"    K_ew.sum_axis0({self._rows(x, suffix)}, {self.flat(n)})")

    def op_expand_to(self, n, node, ins):
        self._buf(n)
        src = ins[0]
        ss = self.g.node(src).shape
        if ss == ():
            self.lines.append(f"    K_ew.broadcast_fill({self.flat(n)}, {self.v(src)}[0])")
        elif ss == node.shape:
            self.lines.append(f"    K_ew.copy({self.flat(src)}, {self.flat(n)})")
        else:
            self.lines.append(f"    K_ew.broadcast_rows({self.flat(src)}, {self._rows(n, ss)})")

    def op_expand(self, n, node, ins):
        self._buf(n)
        gsrc, like = ins
        axis = node.get("axis")
        ls = self.g.node(like).shape
        if axis is None or len(ls) <= 1:
            value = f"{self.v(gsrc)}[0]"
            if node.get("mean"):  # a mean of nothing has no elements to fill: no 1/0
                cnt = self._count(like, None)
                value = f"{value} / {cnt} if {cnt} else np.nan"
            self.lines.append(f"    K_ew.broadcast_fill({self.flat(n)}, {value})")
            return
        if axis == 0:
            self.lines.append(f"    K_ew.broadcast_rows({self.flat(gsrc)}, {self.v(n)})")
        else:
            self.lines.append(f"    K_ew.broadcast_cols({self.flat(gsrc)}, {self.v(n)})")
        if node.get("mean"):
            cnt = self._count(like, axis)
            self.lines.append(f"    K_ew.ew_scale({self.flat(n)}, 1.0 / {cnt} if {cnt} else "
                              f"np.nan, {self.flat(n)})")

    # activations
    def _act(self, n, node, ins, act, slope=None):
        self._buf(n)
        a = self.v(slope) if slope is not None else "E1"
        self.lines.append(f"    K_act.act_fwd({ACT_CODES[act]}, {_f(node.get('alpha'))}, {a}, "
                          f"{self.two_d(ins[0])}, {self.two_d(n)})")

    def op_relu(self, n, node, ins):
        self._act(n, node, ins, "relu")

    def op_sigmoid(self, n, node, ins):
        self._act(n, node, ins, "sigmoid")

    def op_tanh(self, n, node, ins):
        self._act(n, node, ins, "tanh")

    def op_leaky_relu(self, n, node, ins):
        self._act(n, node, ins, "leaky_relu")

    def op_elu(self, n, node, ins):
        self._act(n, node, ins, "elu")

    def op_softplus(self, n, node, ins):
        self._act(n, node, ins, "softplus")

    def op_prelu(self, n, node, ins):
        self._act(n, node, ins, "prelu", slope=ins[1])

    def op_act_grad(self, n, node, ins):
        self._buf(n)
        a = self.v(ins[2]) if len(ins) == 3 else "E1"
        self.lines.append(f"    K_act.act_bwd({ACT_CODES[node.get('act')]}, {_f(node.get('alpha'))}, "
                          f"{a}, {node.get('from_y')}, {self.two_d(ins[0])}, {self.two_d(ins[1])}, "
                          f"{self.two_d(n)})")

    def op_prelu_da(self, n, node, ins):
        self._buf(n)
        z, gz = ins
        m = self.g.node(z).shape[-1]
        self.lines.append(f"    K_act.prelu_da({self._rows(z, (m,))}, {self._rows(gz, (m,))}, "
                          f"{self.v(n)})")

    def op_softmax(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    K_act.softmax_fwd({self.two_d(ins[0])}, {self.two_d(n)})")

    def op_log_softmax(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    K_act.log_softmax_fwd({self.two_d(ins[0])}, {self.two_d(n)})")

    def op_softmax_grad(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    K_act.softmax_bwd({self.two_d(ins[0])}, {self.two_d(ins[1])}, "
                          f"{self.two_d(n)})")

    def op_log_softmax_grad(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    K_act.log_softmax_bwd({self.two_d(ins[0])}, {self.two_d(ins[1])}, "
                          f"{self.two_d(n)})")

    # losses
    def _int_labels(self, y: int) -> bool:
        return self.g.node(y).dtype == INT

    def op_softmax_cross_entropy(self, n, node, ins):
        self._buf(n)
        z, y = ins
        p = self._scratch(("p", n), [self._dim0(z), str(self.g.node(z).shape[1])])
        fn = "sce_fwd" if self._int_labels(y) else "sce_onehot_fwd"
        self.lines.append(f"    {self.v(n)}[0] = K_loss.{fn}({self.v(z)}, {self.v(y)}, {p})")

    def _dim0(self, n: int) -> str:
        d = self.g.node(n).shape[0]
        return "n" if d is None else str(d)

    def op_sce_grad(self, n, node, ins):
        self._buf(n)
        z, y, gr = ins
        self.lines.append(f"    K_act.softmax_fwd({self.v(z)}, {self.v(n)})")
        fn = "sce_bwd" if self._int_labels(y) else "sce_onehot_bwd"
        self.lines.append(f"    K_loss.{fn}({self.v(n)}, {self.v(y)}, {self.v(gr)}[0], {self.v(n)})")

    def op_sce_fused(self, n, node, ins):
        z, y = ins
        loss, p = self._tuple_bufs(n, 2)
        fn = "sce_fwd" if self._int_labels(y) else "sce_onehot_fwd"
        self.lines.append(f"    {loss}[0] = K_loss.{fn}({self.v(z)}, {self.v(y)}, {p})")

    def op_sce_bwd(self, n, node, ins):
        self._buf(n)
        p, y, gr = ins
        fn = "sce_bwd" if self._int_labels(y) else "sce_onehot_bwd"
        self.lines.append(f"    K_loss.{fn}({self.v(p)}, {self.v(y)}, {self.v(gr)}[0], {self.v(n)})")

    def op_bce_fused(self, n, node, ins):
        z, t = ins
        loss, s = self._tuple_bufs(n, 2)
        self.lines.append(f"    {loss}[0] = K_loss.bce_fwd({self.flat(z)}, {self.flat(t)})")
        if s != "None":  # sigmoid(z), both viewed as one row (act_fwd loops over z's shape)
            size = _size(self.g.node(z).shape)
            self.lines.append(f"    K_act.act_fwd(2, 0.0, E1, K_view.carve({self.v(z)}, 0, (1, {size})), "
                              f"K_view.carve({s}, 0, (1, {size})))")

    def op_bce_bwd(self, n, node, ins):
        self._buf(n)
        s, t, gr = ins
        cnt = _size(self.g.node(s).shape)
        self.lines.append(f"    K_ew.ew_sub({self.flat(s)}, {self.flat(t)}, {self.flat(n)})")
        self.lines.append(f"    K_ew.ew_scale({self.flat(n)}, {self.v(gr)}[0] / max({cnt}, 1), "
                          f"{self.flat(n)})")

    def _simple_loss(self, n, ins, fn, *extra):
        self._buf(n)
        p, t = ins
        args = ", ".join([self.flat(p), self.flat(t), *extra])
        self.lines.append(f"    {self.v(n)}[0] = K_loss.{fn}({args})")

    def op_binary_cross_entropy(self, n, node, ins):
        self._simple_loss(n, ins, "bce_fwd")

    def op_mse(self, n, node, ins):
        self._simple_loss(n, ins, "mse_fwd")

    def op_mae(self, n, node, ins):
        self._simple_loss(n, ins, "mae_fwd")

    def op_quantile(self, n, node, ins):
        self._simple_loss(n, ins, "quantile_fwd", _f(node.get("q")))

    def op_l2(self, n, node, ins):
        self._buf(n)
        self.lines.append(f"    {self.v(n)}[0] = K_loss.l2_fwd({self.flat(ins[0])})")

    def op_loss_grad(self, n, node, ins):
        self._buf(n)
        p, t, gr = ins
        kind, wrt = node.get("kind"), node.get("wrt")
        out, gv = self.flat(n), f"{self.v(gr)}[0]"
        if kind == "sce":  # w.r.t. soft targets: -log_softmax(z) * g / n
            self.lines.append(f"    K_act.log_softmax_fwd({self.v(p)}, {self.v(n)})")
            self.lines.append(f"    K_ew.ew_scale({out}, -{gv} / max({self._dim0(p)}, 1), {out})")
            return
        cnt = _size(self.g.node(p).shape)
        if kind == "binary_cross_entropy" and wrt == "target":
            self.lines.append(f"    K_ew.ew_scale({self.flat(p)}, -{gv} / max({cnt}, 1), {out})")
            return
        fn = {"binary_cross_entropy": "bce_bwd", "mse": "mse_bwd", "mae": "mae_bwd",
              "quantile": "quantile_bwd"}[kind]
        q = f"{_f(node.get('q'))}, " if kind == "quantile" else ""
        self.lines.append(f"    K_loss.{fn}({self.flat(p)}, {self.flat(t)}, {q}{gv}, {out})")
        if wrt == "target":  # every such loss is a function of p - t
            self.lines.append(f"    K_ew.ew_neg({out}, {out})")

    # fused dense layers
    def _tuple_bufs(self, n: int, count: int) -> list[str]:
        """Buffers of a tuple's elements: its getitem users (None where unused)."""
        items = {self.g.node(u).get("index"): u for u in self._users(n)
                 if self.g.node(u).op == "getitem"}
        out = []
        for i in range(count):
            u = items.get(i)
            if u is None or u in self.skip:
                out.append("None")
            else:
                out.append(self._buf(u))
        return out

    def _small(self, act: str, W: int) -> str:
        """``"_small"`` for a layer whose k*m is at most ``SMALL_MAX_KM`` (the inlined loop
        kernels, where a BLAS call costs more than the arithmetic), else ``""``."""
        k, m = self.g.node(W).shape
        return "_small" if act != "prelu" and k * m <= SMALL_MAX_KM else ""

    def op_dense(self, n, node, ins):
        x, W = ins[0], ins[1]
        b = self.v(ins[2]) if node.get("has_bias") else "E1"
        a = self.v(ins[-1]) if node.get("act") == "prelu" else "E1"
        if node.get("save_z"):
            y, z = self._tuple_bufs(n, 2)
            y = y if y != "None" else self._scratch(("y", n), _dims(node.shape[0]))
            z = z if z != "None" else "E2"
        else:
            y, z = self._buf(n), "E2"
        fn = "dense_fwd" + self._small(node.get("act"), W)
        self.lines.append(f"    K_dense.{fn}({self.v(x)}, {self.v(W)}, {b}, "
                          f"{ACT_CODES[node.get('act')]}, {_f(node.get('alpha'))}, {a}, {z}, {y})")

    def op_dense_bwd(self, n, node, ins):
        x, W, saved, gr = ins[:4]
        a = self.v(ins[4]) if node.get("act") == "prelu" else "E1"
        outs = node.get("outs")
        bufs = dict(zip(outs, self._tuple_bufs(n, len(outs)), strict=True))
        m = self.g.node(W).shape[1]
        dz = self._scratch(("dz", n), [self._dim0(x), str(m)])
        code, alpha, from_y = ACT_CODES[node.get("act")], _f(node.get("alpha")), node.get("from_y")
        dx = bufs.get("dx", "None")
        dx = dx if dx != "None" else "E2"
        if n in self.folded:
            ups = self.folded[n]
            up = self.g.node(ups[0])
            fwd_b = "E1"
            if "db" in outs and bufs.get("db") == "None":
                fwd_b = self.v(self.g.inputs(ups[1])[0])
            tmp = self._scratch(("tmp", n), [str(2 * m)])
            self.lines.append(
                f"    K_dense.dense_bwd_sgd{self._small(node.get('act'), W)}({self.v(x)}, "
                f"{self.v(W)}, {fwd_b}, {self.v(saved)}, "
                f"{self.v(gr)}, {code}, {alpha}, {a}, {from_y}, {dz}, {dx}, {tmp}, lr, "
                f"{_f(up.get('wd'))})")
            return
        dW = bufs.get("dW", "None")
        dW = dW if dW != "None" else self._scratch(("dW", n), _dims(self.g.node(W).shape))
        db = bufs.get("db", "None")
        da = bufs.get("da", "None")
        self.lines.append(
            f"    K_dense.dense_bwd{self._small(node.get('act'), W)}({self.v(x)}, {self.v(W)}, "
            f"{self.v(saved)}, {self.v(gr)}, "
            f"{code}, {alpha}, {a}, {from_y}, {dz}, {dx}, {dW}, "
            f"{db if db != 'None' else 'E1'}, {da if da != 'None' else 'E1'})")

    # optimizer
    def op_clip_scale(self, n, node, ins):
        self._buf(n)
        terms = " + ".join(f"K_opt.sum_sq({self.flat(i)})" for i in ins)
        self.lines.append(f"    _norm = np.sqrt({terms})")
        self.lines.append(f"    {self.v(n)}[0] = min(1.0, {_f(node.get('max_norm'))} / (_norm + 1e-6))")

    def op_update(self, n, node, ins):
        p, gr = ins[0], ins[1]
        name = node.get("param")
        pf, gf = self.flat(p), self.flat(gr)
        if len(ins) == 3:
            self.lines.append(f"    K_opt.scale_({gf}, {self.v(ins[2])}[0])")
        state = {}
        for slot in state_slots(node.attr):
            off, shape = self.layout.arena[f"{name}:{slot}"]
            size = math.prod(shape) if shape else 1
            state[slot] = f"K_view.carve(arena, {off}, {size})"
        opt, wd = node.get("opt"), _f(node.get("wd"))
        if opt == "sgd":
            buf = state.get("momentum", "E1")
            self.lines.append(
                f"    K_opt.sgd({pf}, {gf}, {buf}, lr, {_f(node.get('momentum'))}, "
                f"{_f(node.get('dampening'))}, {node.get('nesterov')}, {wd}, step == 1)")
        elif opt == "adam":
            self.lines.append(
                f"    K_opt.adam({pf}, {gf}, {state['exp_avg']}, {state['exp_avg_sq']}, lr, "
                f"{_f(node.get('beta1'))}, {_f(node.get('beta2'))}, {_f(node.get('eps'))}, {wd}, "
                f"step, {node.get('decoupled')})")
        else:
            self.lines.append(
                f"    K_opt.rmsprop({pf}, {gf}, {state['square_avg']}, "
                f"{state.get('momentum', 'E1')}, {state.get('grad_avg', 'E1')}, lr, "
                f"{_f(node.get('alpha'))}, {_f(node.get('eps'))}, {_f(node.get('momentum'))}, "
                f"{node.get('centered')}, {wd})")


def g_op(g: Graph, n: int) -> str:
    return g.node(n).op


def _flatten(v) -> list:
    if isinstance(v, tuple):
        return [y for x in v for y in _flatten(x)]
    return [v]


def scratch_needs(g: Graph, n: int) -> list[tuple[tuple, tuple[int, int]]]:
    """Workspace a node's kernel needs beyond its outputs: [(key, (a, b) elements)]."""
    node = g.node(n)
    ins = g.inputs(n)
    if node.op == "dense_bwd":
        x, W = g.node(ins[0]), g.node(ins[1])
        m = W.shape[1]
        a, b = linear_size((x.shape[0], m))
        need = [(("dz", n), (a, b)), (("tmp", n), (0, 2 * m)), (("dW", n), (0, math.prod(W.shape)))]
        return need
    if node.op == "softmax_cross_entropy":
        return [(("p", n), linear_size(g.node(ins[0]).shape))]
    if node.op == "dense" and node.get("save_z"):
        return [(("y", n), linear_size(node.shape[0]))]
    return []
