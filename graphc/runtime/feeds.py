"""Feed validation: everything checked before any native call.

Numba does not bound-check, so a wrong shape or an out-of-range label must
never reach a kernel.  Rules (documented in the README):

* every declared input must be fed, and nothing else;
* ndim and every fixed dimension must match; all ``None`` (batch) dimensions
  must agree across feeds;
* float inputs accept any real float or integer array and are cast to the
  program's dtype (a float64 array into a float32 program is cast, like
  ``torch.as_tensor(x, dtype=torch.float32)``); bool, complex, object and
  string arrays are refused;
* integer (label) inputs accept integer arrays only (float labels are refused,
  since 2.7 is no class) and must lie in [0, classes) when they feed a
  classification loss;
* non-contiguous and Fortran-order arrays are copied to C order.
* a batch of 0 rows is valid for ``run``, ``step`` and ``evaluate``: outputs are
  empty, a loss is NaN (the mean of nothing) and ``step`` updates as with a zero
  gradient (see ``Program.step``); ``fit`` refuses empty training data.
* a copy (or, in the compiled backend, a workspace) larger than the machine's
  physical memory is refused with a FeedError before anything is allocated
  (:func:`check_allocation`), so a huge batch never reaches native code.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np

from graphc.errors import FeedError
from graphc.ir.node import INT, shape_str


class FeedSpec:
    """What a program expects of its feeds: name -> (shape, kind), plus label ranges."""

    def __init__(self, inputs: Mapping[str, tuple[tuple, str]], label_classes: Mapping[str, int]):
        self.inputs = dict(inputs)
        self.label_classes = dict(label_classes)

    def validate(self, feeds: Mapping[str, object], dtype: np.dtype,
                 required: set[str] | None = None) -> tuple[dict[str, np.ndarray], int]:
        """Checked, C-contiguous, correctly typed feeds and the batch size (0 if none)."""
        if not isinstance(feeds, Mapping):
            raise FeedError(f"feeds must be a dict of name -> array, got {type(feeds).__name__}")
        required = set(self.inputs) if required is None else required
        unknown = sorted(set(feeds) - set(self.inputs))
        if unknown:
            raise FeedError(f"unknown feed {unknown[0]!r}; this program takes "
                            f"{', '.join(sorted(self.inputs)) or 'no feeds'}")
        missing = sorted(required - set(feeds))
        if missing:
            shape, _ = self.inputs[missing[0]]
            raise FeedError(f"missing feed {missing[0]!r} (shape {shape_str(shape)})")
        out: dict[str, np.ndarray] = {}
        batch: int | None = None
        batch_from = ""
        for name, value in feeds.items():
            shape, kind = self.inputs[name]
            arr = _as_array(name, value)
            if arr.ndim != len(shape):
                raise FeedError(f"feed {name!r}: expected {len(shape)}-D array of shape "
                                f"{shape_str(shape)}, got {arr.ndim}-D {shape_str(arr.shape)}")
            for axis, (want, got) in enumerate(zip(shape, arr.shape, strict=True)):
                if want is None:
                    if batch is None:
                        batch, batch_from = got, name
                    elif got != batch:
                        raise FeedError(f"feed {name!r} has batch size {got} but feed "
                                        f"{batch_from!r} has {batch}: batch sizes must agree")
                elif want != got:
                    raise FeedError(f"feed {name!r}: expected shape {shape_str(shape)}, got "
                                    f"{shape_str(arr.shape)} (axis {axis}: {got} != {want})")
            out[name] = self._convert(name, arr, kind, dtype)
        return out, batch or 0

    def _convert(self, name: str, arr: np.ndarray, kind: str, dtype: np.dtype) -> np.ndarray:
        if kind == INT:
            if arr.dtype.kind not in "iu":
                raise FeedError(f"feed {name!r}: expected integer labels (int64), got "
                                f"{arr.dtype} (cast with .astype(np.int64) if they are whole)")
            classes = self.label_classes.get(name)
            if arr.size and (classes is not None or arr.dtype == np.uint64):
                # On the caller's array, before the cast: a uint64 label above
                # 2**63 - 1 would otherwise wrap to a negative int64.
                lo, hi = int(arr.min()), int(arr.max())
                top = classes if classes is not None else 2**63
                if lo < 0 or hi >= top:
                    bad = lo if lo < 0 else hi
                    where = f"[0, {classes})" if classes is not None else "of int64"
                    raise FeedError(f"feed {name!r}: label {bad} out of range {where}")
            return _c_array(name, arr, np.dtype(np.int64))
        if arr.dtype.kind not in "fiu":
            raise FeedError(f"feed {name!r}: expected a real float array, got {arr.dtype}")
        return _c_array(name, arr, np.dtype(dtype))


def check_allocation(nbytes: int, what: str) -> None:
    """Refuse an allocation larger than the machine's physical memory, before trying it.

    Where the OS overcommits, ``np.empty`` of such a size succeeds lazily and
    the process is killed once the memory is touched; refusing up front gives
    the same clear :class:`FeedError` on every system.
    """
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not POSIX: MemoryError still applies
        return
    if ram > 0 and nbytes > ram:
        raise FeedError(f"{what} needs {gib(nbytes)}, more than this machine's {gib(ram)} "
                        "of memory: use a smaller batch")


def gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:,.1f} GiB"


def _c_array(name: str, arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``arr`` as a C-ordered array of ``dtype`` (0-D stays 0-D), copied only if needed."""
    if arr.dtype == dtype and arr.flags.c_contiguous:
        return arr
    what = f"feed {name!r}: the C-ordered {dtype} copy of its {shape_str(arr.shape)} array"
    nbytes = arr.size * dtype.itemsize
    check_allocation(nbytes, what)
    try:
        return np.asarray(arr, dtype=dtype, order="C")
    except MemoryError:
        raise FeedError(f"{what} ({gib(nbytes)}) cannot be allocated") from None


def _as_array(name: str, value: object) -> np.ndarray:
    if isinstance(value, np.ndarray):
        arr = value
    else:
        try:
            arr = np.asarray(value)
        except Exception as e:  # ragged lists and the like
            raise FeedError(f"feed {name!r}: cannot be read as an array ({e})") from None
    if arr.dtype.kind in "OSUVbcmM":
        raise FeedError(f"feed {name!r}: expected a numeric array, got dtype {arr.dtype}")
    return arr


def label_classes(graph) -> dict[str, int]:
    """Integer inputs that feed a classification loss, with their number of classes."""
    out: dict[str, int] = {}
    for n in graph.toposort():
        node = graph.node(n)
        if node.op in ("softmax_cross_entropy", "sce_grad", "sce_fused", "sce_bwd"):
            logits, labels = graph.inputs(n)[:2]
            lab = graph.node(labels)
            if lab.op == "input" and lab.dtype == INT:
                out[lab.get("name")] = graph.node(logits).shape[1]
    return out
