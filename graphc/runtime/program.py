"""Programs: a compiled (or interpreted) graph with its parameters and optimizer state.

All parameters and optimizer state live in one contiguous *arena* array (in
the program's float dtype); ``params`` are views into it.  The compiled
backend passes the arena to native code as a single argument and carves the
views there, because Numba unboxes every array argument on each call (~50 ns
each).  The reference backend updates the same views through NumPy, so both
backends share one storage and one save format.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence

import numpy as np

from graphc.autodiff import build_training
from graphc.errors import FeedError, GraphError, NumericsError
from graphc.ir.graph import Graph
from graphc.ir.node import shape_str
from graphc.ops.sources import init_param
from graphc.ops.update import reference_update, state_slots
from graphc.runtime import reference
from graphc.runtime.feeds import FeedSpec, label_classes

ALIGN = 16  # elements: keeps every view 64-byte aligned for float32 SIMD loads


class Arena:
    """Named views into one flat array, laid out in a fixed (sorted) order."""

    def __init__(self, shapes: Mapping[str, tuple], dtype: np.dtype) -> None:
        self.offsets: dict[str, tuple[int, tuple]] = {}
        pos = 0
        for name, shape in shapes.items():
            self.offsets[name] = (pos, tuple(shape))
            pos += -(-int(np.prod(shape, dtype=np.int64)) // ALIGN) * ALIGN
        self.size = pos
        self.data = np.zeros(max(pos, 1), dtype=dtype)
        self.views = {name: self.view(name) for name in self.offsets}

    def view(self, name: str) -> np.ndarray:
        off, shape = self.offsets[name]
        n = int(np.prod(shape, dtype=np.int64))
        return self.data[off:off + n].reshape(shape)


class Program:
    """A graph ready to run: ``run`` (forward), ``step`` (train), ``params``."""

    def __init__(self, graph: Graph, *, loss: str | None = None, optimizer=None,
                 weight_decay: float = 0.0, clip_norm: float | None = None,
                 dtype: str = "float32", seed: int = 0, backend: str = "compiled",
                 check_passes: bool = False, verify: bool = False,
                 check_numerics: bool | None = None) -> None:
        if dtype not in ("float32", "float64"):
            raise GraphError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        if backend not in ("compiled", "reference"):
            raise GraphError(f"backend must be 'compiled' or 'reference', got {backend!r}")
        if weight_decay < 0:
            raise GraphError(f"weight_decay must be >= 0, got {weight_decay}")
        self.dtype = np.dtype(dtype)
        self.backend = backend
        self.optimizer = optimizer
        self.seed = seed
        if check_numerics is None:  # numerics mode from the environment (default off)
            check_numerics = os.environ.get("GRAPHC_CHECK_NUMERICS", "").strip().lower() in (
                "1", "true", "yes", "on")
        self.options = dict(check_passes=check_passes, verify=verify,
                            check_numerics=check_numerics)
        self._lock = threading.RLock()
        self.forward_graph = graph.copy()
        self.forward_graph.outputs = {k: v for k, v in graph.outputs.items() if k != loss}
        self.forward_graph.prune()
        self.loss_name = loss
        self.train_graph: Graph | None = None
        if optimizer is not None:
            if loss is None:
                raise GraphError("training needs a loss: gc.compile(loss=..., optimizer=...)")
            self.train_graph = build_training(graph, graph.outputs[loss], optimizer,
                                              weight_decay, clip_norm)
            self.train_graph.outputs = {"loss": self.train_graph.outputs[loss]}
        self.eval_graph_user = graph
        self.eval_graph = graph.copy()
        self.task = None
        if loss is not None:
            lnode = graph.node(graph.outputs[loss])
            if lnode.op in ("softmax_cross_entropy", "binary_cross_entropy"):
                # Accuracy needs the logits and the labels the loss compares them with.
                logits, labels = graph.inputs(graph.outputs[loss])
                self.eval_graph.outputs["__logits"] = logits
                self.task = (lnode.op, graph.node(labels).get("name"),
                             graph.node(labels).dtype)
        self.weight_decay, self.clip_norm = weight_decay, clip_norm
        full = self.train_graph or graph

        params = {n: full.node(i) for n, i in sorted(full.by_name("parameter").items())}
        shapes = {n: node.shape for n, node in params.items()}
        self.update_attrs = {}
        if self.train_graph is not None:
            for name, uid in sorted(self.train_graph.updates.items()):
                attrs = self.train_graph.node(uid).attr
                self.update_attrs[name] = attrs
                for slot in state_slots(attrs):
                    shapes[f"{name}:{slot}"] = params[name].shape
        self.arena = Arena(shapes, self.dtype)
        self.param_names = list(params)
        for name, node in params.items():
            self.arena.views[name][...] = init_param(node, seed, dtype)
        self.step_count = 0
        self.epoch = 0

        inputs = {}
        for g in (graph, full):
            for name, i in g.by_name("input").items():
                node = g.node(i)
                inputs[name] = (node.shape, node.dtype)
        self.feed_spec = FeedSpec(inputs, label_classes(full))
        self._forward_inputs = set(self.forward_graph.by_name("input"))
        self._impl = None
        if backend == "compiled":
            from graphc.runtime.compiled import CompiledImpl

            self._impl = CompiledImpl(self)

    # --- parameters -----------------------------------------------------------------
    @property
    def params(self) -> dict[str, np.ndarray]:
        """Copies of the parameters, by name (one consistent snapshot, never mid-step)."""
        with self._lock:
            return {n: self.arena.views[n].copy() for n in self.param_names}

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        """Copy values in; every name must be a parameter and every shape must match."""
        for name, value in values.items():
            if name not in self.param_names:
                raise GraphError(f"unknown parameter {name!r}; parameters: "
                                 f"{', '.join(self.param_names)}")
            arr = np.asarray(value)
            view = self.arena.views[name]
            if arr.shape != view.shape:
                raise FeedError(f"parameter {name!r}: expected shape {shape_str(view.shape)}, "
                                f"got {shape_str(arr.shape)}")
            if arr.dtype.kind not in "fiu":
                raise FeedError(f"parameter {name!r}: expected a float array, got {arr.dtype}")
        with self._lock:
            for name, value in values.items():
                self.arena.views[name][...] = np.asarray(value)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """Copies of the optimizer state (``<param>:<slot>``) and the step counter."""
        with self._lock:
            return {n: v.copy() for n, v in self.arena.views.items() if n not in self.param_names}

    def lr(self, epoch: int | None = None) -> float:
        """The learning rate of ``epoch`` (default: the current one)."""
        epoch = self.epoch if epoch is None else epoch
        return self.optimizer.lr_at(epoch) if self.optimizer else 0.0

    # --- execution ------------------------------------------------------------------
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Forward pass only: the named outputs for ``feeds``."""
        checked, batch = self.feed_spec.validate(feeds, self.dtype, self._forward_inputs)
        with self._lock:
            if self._impl is not None:
                return self._impl.run(checked, batch)
            return reference.run(self.forward_graph, checked, self.arena.views, self.dtype.name)

    def step(self, feeds: Mapping[str, np.ndarray]) -> float:
        """One training step (forward, backward, update); returns the loss before the update.

        An empty batch (0 rows) returns NaN -- the mean of nothing, as PyTorch's
        ``reduction="mean"`` gives -- and updates as with a zero data gradient: plain
        SGD leaves the weights alone, momentum, Adam's moments and weight decay still
        move them (as ``optimizer.step()`` after such a batch does in PyTorch).  Both
        backends agree.
        """
        if self.train_graph is None:
            raise GraphError("this program has no optimizer: compile it with optimizer=...")
        impl = self._impl
        if impl is not None and impl.fast_step is not None and type(feeds) is dict:
            loss = impl.fast_step(feeds)
            if loss is not None:
                return loss
        checked, batch = self.feed_spec.validate(feeds, self.dtype)
        with self._lock:
            self.step_count += 1
            if self._impl is not None:
                try:
                    return self._impl.step(checked, batch, self.lr(), self.step_count)
                except (NumericsError, FeedError):
                    self.step_count -= 1
                    raise
            return self._reference_step(checked)

    def run_epochs(self, feeds: dict[str, np.ndarray], perm: np.ndarray, batch_size: int,
                   losses: np.ndarray, stop_on_nan: bool = True, epochs: int = 1,
                   shuffle: bool = False, seed: int = 0, in_order: bool = False) -> int:
        """``epochs`` passes over ``feeds`` in minibatches, from epoch ``self.epoch`` on
        (each at its scheduled learning rate); returns how many steps ran (up to and
        including the first non-finite loss when ``stop_on_nan``).

        The order is ``perm``, or with ``shuffle`` each epoch's ``epoch_order(seed,
        epoch, n)`` (written into ``perm``); ``in_order`` promises ``perm`` is
        ``arange(n)``.  ``losses`` gets every step's loss, epoch-major.
        ``self.epoch`` is left for the caller to advance.
        """
        lrs = np.array([self.lr(self.epoch + e) for e in range(epochs)], dtype=np.float64)
        with self._lock:
            step0 = self.step_count
            if self._impl is not None:
                try:
                    done = self._impl.fit_epochs(feeds, perm, batch_size, lrs, step0, losses,
                                                 stop_on_nan, shuffle, seed, self.epoch,
                                                 in_order)
                except NumericsError as err:
                    self.step_count = step0 + getattr(err, "steps_done", 0)
                    raise
                self.step_count = step0 + done
                return done
            from graphc.runtime.fit import drive_epochs

            def step(batch, n, lr, s):
                self.step_count = step0 + s + 1
                return self._reference_step(batch, lr)

            return drive_epochs(step, feeds, perm, batch_size, lrs, losses, stop_on_nan,
                                shuffle, seed, self.epoch)

    def fit(self, data, epochs: int = 1, batch_size: int = 32, validation=None,
            shuffle: bool = True, seed: int | None = None, patience: int | None = None,
            progress: bool = True, callbacks=None, on_nan: str = "stop"):
        """Train for ``epochs`` (one native call per epoch, or per several when nothing
        needs Python between epochs); returns a :class:`History`.

        ``data`` is a dict of feeds (or a Dataset with ``x``/``y``); ``validation``
        likewise.  With ``patience``, training stops when the validation loss has
        not improved for that many epochs and the best epoch's weights are restored.
        """
        from graphc.runtime.fit import fit

        return fit(self, data, epochs, batch_size, validation, shuffle, seed, patience,
                   progress, callbacks, on_nan)

    def evaluate_checked(self, feeds: dict[str, np.ndarray]) -> tuple[float, float]:
        """(loss, accuracy) on validated feeds; accuracy is NaN for regression losses."""
        batch = next((a.shape[0] for a in feeds.values() if a.ndim), 0)
        with self._lock:
            if self._impl is not None:
                loss, outs = self._impl.evaluate(feeds, batch)
            else:
                outs = reference.run(self.eval_graph, feeds, self.arena.views, self.dtype.name)
                loss = float(outs[self.loss_name])
        acc = float("nan")
        if self.task is not None and batch:
            kind, labels, ldtype = self.task
            logits, y = outs["__logits"], feeds[labels]
            if kind == "softmax_cross_entropy":
                truth = y if y.ndim == 1 else y.argmax(axis=1)
                acc = float((logits.argmax(axis=1) == truth).mean())
            else:
                acc = float(((logits > 0) == (y > 0.5)).mean())
        return loss, acc

    def evaluate(self, data) -> dict[str, float]:
        """Loss (and accuracy for classification losses) on ``data``, without training."""
        from graphc.runtime.fit import _data_dict

        if self.loss_name is None:
            raise GraphError("evaluate needs a program compiled with a loss")
        feeds, _ = self.feed_spec.validate(_data_dict(data), self.dtype,
                                           set(self.eval_graph.by_name("input")))
        loss, acc = self.evaluate_checked(feeds)
        return {"loss": loss} if np.isnan(acc) else {"loss": loss, "accuracy": acc}

    def predict(self, x, output: str | None = None, batch_size: int = 4096) -> np.ndarray:
        """The (first, or named) output for input array ``x``, in batches."""
        outs = list(self.forward_graph.outputs)
        if not outs:
            raise GraphError("this program has no outputs to predict: pass outputs={...}")
        name = output or outs[0]
        feeds = x if isinstance(x, Mapping) else {self._single_input(): x}
        first = next(iter(feeds.values()))
        n = len(first)
        parts = [self.run({k: v[i:i + batch_size] for k, v in feeds.items()})[name]
                 for i in range(0, max(n, 1), batch_size)]
        return np.concatenate(parts) if len(parts) > 1 else parts[0]

    def _single_input(self) -> str:
        names = sorted(self._forward_inputs)
        if len(names) != 1:
            raise FeedError(f"this program takes several inputs ({', '.join(names)}): pass a dict")
        return names[0]

    def save(self, path) -> None:
        """Write the model (graph, parameters, optimizer state) to one ``.gcm`` file."""
        from graphc.io import save_program

        save_program(self, path)

    def profile(self, feeds: Mapping[str, np.ndarray], repeat: int = 50):
        """Per-kernel timing of the compiled step (on a copy of the parameters)."""
        from graphc.runtime.profile import profile

        with self._lock:
            return profile(self, feeds, repeat)

    def summary(self) -> str:
        from graphc.runtime.summary import summary

        text = summary(self)
        print(text)
        return text

    def _reference_step(self, feeds: dict[str, np.ndarray], lr: float | None = None) -> float:
        g = self.train_graph
        lr = self.lr() if lr is None else lr
        values = reference.evaluate(g, feeds, self.arena.views, self.dtype.name)
        for name, uid in g.updates.items():
            ins = g.inputs(uid)
            grad = values[ins[1]]
            if len(ins) == 3:
                grad = grad * values[ins[2]]
            state = {s: self.arena.views[f"{name}:{s}"] for s in state_slots(self.update_attrs[name])}
            reference_update(self.arena.views[name], grad, state, self.update_attrs[name],
                             lr, self.step_count)
        return float(values[g.outputs["loss"]])


class Function:
    """``gc.function``: a program called with positional arrays, returning a list."""

    def __init__(self, graph: Graph, inputs: Sequence[str], outputs: Sequence[str],
                 **options) -> None:
        self.input_names = list(inputs)
        self.output_names = list(outputs)
        self.program = Program(graph, **options)
        needed = set(self.program.forward_graph.by_name("input"))
        missing = needed - set(self.input_names)
        if missing:
            raise GraphError(f"the outputs depend on input {sorted(missing)[0]!r}, which is not "
                             "in inputs=[...]")

    def __call__(self, *arrays: np.ndarray) -> list[np.ndarray]:
        if len(arrays) != len(self.input_names):
            raise FeedError(f"this function takes {len(self.input_names)} arrays "
                            f"({', '.join(self.input_names)}), got {len(arrays)}")
        feeds = {n: a for n, a in zip(self.input_names, arrays, strict=True)
                 if n in self.program._forward_inputs}
        out = self.program.run(feeds)
        return [out[n] for n in self.output_names]

    @property
    def params(self) -> dict[str, np.ndarray]:
        return self.program.params

    def set_params(self, values: Mapping[str, np.ndarray]) -> None:
        self.program.set_params(values)
