"""Data sets for training MLPs: loaders, a small Dataset record, IDX files.

Everything here reads local files only; nothing ever touches the network.

``load(name_or_path)`` understands:

- ``"digits"``: scikit-learn's bundled 8x8 digits (1797 x 64, 10 classes), from
  the optional ``datasets`` extra;
- ``"mnist:DIR"``: MNIST-format IDX files in ``DIR`` (``train-images-idx3-ubyte``,
  ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``,
  each optionally ``.gz``);
- a ``.npz`` file with arrays ``x``/``y`` (or ``X``/``Y``), optionally ``x_test``/``y_test``;
- a ``.csv`` file, label in the last column unless ``label_column=`` says otherwise.

Arrays are normalised once, here: ``x`` is C-contiguous float32 of shape (n, features);
class labels are C-contiguous int64 in ``[0, n_classes)``; regression targets float32.
"""

from __future__ import annotations

import csv
import gzip
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from graphc.errors import DataError

__all__ = ["Dataset", "load", "load_digits", "load_mnist", "load_npz", "load_csv", "read_idx", "write_idx"]

PathLike = str | os.PathLike[str]


# ---------------------------------------------------------------------- Dataset


@dataclass(eq=False)  # arrays have no single truth value; compare by identity
class Dataset:
    """Features and targets, with an optional held-out test part.

    ``n_classes`` is None for regression. ``x_test``/``y_test`` are carried
    through :meth:`split` and :meth:`standardize` unchanged in role: they are never
    used to fit anything.
    """

    x: np.ndarray
    y: np.ndarray
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    n_classes: int | None = None
    feature_names: list[str] | None = None
    class_names: list[str] | None = None
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if (self.x_test is None) != (self.y_test is None):
            raise DataError(f"data set {self.name!r}: x_test and y_test must be given together")
        self.x, self.y = self._normalise(self.x, self.y, "")
        if self.x_test is not None:
            self.x_test, self.y_test = self._normalise(self.x_test, self.y_test, "_test")
            if self.x_test.shape[1] != self.x.shape[1]:
                raise DataError(
                    f"data set {self.name!r}: x_test has {self.x_test.shape[1]} features, "
                    f"x has {self.x.shape[1]}"
                )
        if self.feature_names is not None and len(self.feature_names) != self.x.shape[1]:
            raise DataError(
                f"data set {self.name!r}: {len(self.feature_names)} feature names for "
                f"{self.x.shape[1]} features"
            )

    def _normalise(self, x: Any, y: Any, suffix: str) -> tuple[np.ndarray, np.ndarray]:
        where = f"data set {self.name!r}"
        x = np.asarray(x)
        if x.ndim != 2:
            raise DataError(f"{where}: x{suffix} must be 2-D (samples, features), got shape {x.shape}")
        if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
            raise DataError(f"{where}: x{suffix} must be numeric, got dtype {x.dtype}")
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != len(x):
            raise DataError(
                f"{where}: y{suffix} must be 1-D with one target per row of x{suffix} "
                f"({len(x)}), got shape {y.shape}"
            )
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.n_classes is None:
            return x, np.ascontiguousarray(y, dtype=np.float32)
        if y.dtype.kind == "f":
            if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
                raise DataError(f"{where}: y{suffix} holds non-integer class labels")
        elif y.dtype.kind not in "iub":
            raise DataError(f"{where}: y{suffix} has dtype {y.dtype}, expected integer labels")
        y = np.ascontiguousarray(y, dtype=np.int64)
        if len(y) and (y.min() < 0 or y.max() >= self.n_classes):
            raise DataError(
                f"{where}: y{suffix} labels span [{y.min()}, {y.max()}], expected [0, {self.n_classes})"
            )
        return x, y

    def __len__(self) -> int:
        return len(self.x)

    @property
    def n_features(self) -> int:
        """Number of input features (columns of ``x``)."""
        return int(self.x.shape[1])

    def test_set(self) -> Dataset:
        """The held-out ``x_test``/``y_test`` as a Dataset of its own."""
        if self.x_test is None:
            raise DataError(f"data set {self.name!r} has no test part")
        return replace(self, x=self.x_test, y=self.y_test, x_test=None, y_test=None)

    def split(
        self,
        validation: float = 0.1,
        test: float | None = None,
        seed: int = 0,
        stratify: bool = True,
    ) -> tuple[Dataset, ...]:
        """Split ``x``/``y`` into ``(train, val)``, or ``(train, val, test)`` if ``test`` is given.

        ``validation`` and ``test`` are fractions in [0, 1) (or ints: row counts).
        Classification splits are stratified by default: each class keeps its
        proportion in every part. Deterministic for a given ``seed``. The train part
        keeps this data set's ``x_test``/``y_test``; the other parts have none.
        """
        n = len(self)
        n_val = self._count(validation, "validation")
        n_test = self._count(test, "test") if test is not None else 0
        if n_val + n_test >= n:
            raise DataError(
                f"data set {self.name!r}: validation ({n_val}) + test ({n_test}) rows leave "
                f"no training rows out of {n}"
            )
        rng = np.random.default_rng(seed)
        if stratify and self.n_classes is not None:
            val_idx, test_idx = _stratified(self.y, n_val, n_test, rng)
        else:
            perm = rng.permutation(n)
            val_idx, test_idx = perm[:n_val], perm[n_val : n_val + n_test]
        held = np.zeros(n, dtype=bool)
        held[val_idx] = True
        held[test_idx] = True
        # Sorted indices keep each part in the original row order: easier to inspect
        # and no information about the seed leaks into the order.
        train_idx = np.flatnonzero(~held)
        parts = [self._take(train_idx, keep_test=True), self._take(np.sort(val_idx))]
        if test is not None:
            parts.append(self._take(np.sort(test_idx)))
        return tuple(parts)

    def _count(self, amount: float, what: str) -> int:
        if isinstance(amount, (int, np.integer)) and not isinstance(amount, bool):
            if not 0 <= amount < len(self):
                raise DataError(f"{what}={amount} rows is out of range for {len(self)} rows")
            return int(amount)
        if not 0.0 <= amount < 1.0:
            raise DataError(f"{what}={amount} must be a fraction in [0, 1) or a row count")
        return int(round(amount * len(self)))

    def _take(self, idx: np.ndarray, keep_test: bool = False) -> Dataset:
        return replace(
            self,
            x=self.x[idx],
            y=self.y[idx],
            x_test=self.x_test if keep_test else None,
            y_test=self.y_test if keep_test else None,
        )

    def standardize(self, stats: dict[str, np.ndarray] | None = None) -> tuple[Dataset, dict]:
        """Return ``(standardised copy, stats)`` with ``stats = {"mean": ..., "std": ...}``.

        Without ``stats`` they are computed from ``x`` only (the training rows), never
        from ``x_test``; pass the returned stats to standardise validation and test
        sets the same way. A constant feature (std 0) gets std 1, so it maps to 0
        instead of NaN.
        """
        if stats is None:
            x64 = self.x.astype(np.float64)
            mean = x64.mean(axis=0) if len(self) else np.zeros(self.n_features)
            std = x64.std(axis=0) if len(self) else np.ones(self.n_features)
            std[std == 0] = 1.0
            stats = {"mean": mean.astype(np.float32), "std": std.astype(np.float32)}
        else:
            stats = {k: np.asarray(stats[k], dtype=np.float32) for k in ("mean", "std")}
            for k, v in stats.items():
                if v.shape != (self.n_features,):
                    raise DataError(
                        f"standardize: stats[{k!r}] has shape {v.shape}, data has {self.n_features} features"
                    )
            if np.any(stats["std"] == 0):
                raise DataError("standardize: stats['std'] contains zeros")

        def apply(x: np.ndarray | None) -> np.ndarray | None:
            return None if x is None else (x - stats["mean"]) / stats["std"]

        return replace(self, x=apply(self.x), x_test=apply(self.x_test)), stats

    def batches(
        self, batch_size: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(x, y)`` mini-batches, C-contiguous, in a seed-determined order."""
        if batch_size < 1:
            raise DataError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = np.random.default_rng(seed).permutation(n) if shuffle else None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:  # slices of C-contiguous rows are contiguous views
                yield self.x[start : start + batch_size], self.y[start : start + batch_size]
            else:
                idx = order[start : start + batch_size]
                yield self.x[idx], self.y[idx]


def _stratified(
    y: np.ndarray, n_val: int, n_test: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Pick ``n_val``/``n_test`` rows keeping class proportions (largest remainder)."""
    n = len(y)
    classes, counts = np.unique(y, return_counts=True)

    def allot(total: int, avail: np.ndarray) -> np.ndarray:
        # Exact totals: floor the ideal share, then hand out the rest to the largest
        # remainders (ties broken by class order, so it is deterministic).
        ideal = total * counts / n
        k = np.minimum(np.floor(ideal).astype(np.int64), avail)
        rest = total - int(k.sum())
        for c in np.argsort(-(ideal - k), kind="stable"):
            if rest == 0:
                break
            if k[c] < avail[c]:
                k[c] += 1
                rest -= 1
        return k

    k_val = allot(n_val, counts)
    k_test = allot(n_test, counts - k_val)
    val, test = [], []
    for c, kv, kt in zip(classes, k_val, k_test, strict=True):
        idx = rng.permutation(np.flatnonzero(y == c))
        val.append(idx[:kv])
        test.append(idx[kv : kv + kt])
    return np.concatenate(val), np.concatenate(test)


# ---------------------------------------------------------------------- loaders


def load(name_or_path: PathLike, **kw: Any) -> Dataset:
    """Load a data set by name (``"digits"``, ``"mnist:DIR"``) or from a .npz/.csv file.

    Keyword arguments go to the specific loader (:func:`load_digits`,
    :func:`load_mnist`, :func:`load_npz`, :func:`load_csv`).
    """
    spec = os.fspath(name_or_path)
    if spec == "digits":
        return load_digits(**kw)
    if spec.startswith("mnist:"):
        return load_mnist(spec[len("mnist:") :], **kw)
    suffix = Path(spec).suffix.lower()
    if suffix == ".npz":
        return load_npz(spec, **kw)
    if suffix == ".csv":
        return load_csv(spec, **kw)
    raise DataError(
        f"unknown data set {spec!r}: expected 'digits', 'mnist:DIR', or a path to a .npz or .csv file"
    )


def load_digits(scale: bool = True) -> Dataset:
    """scikit-learn's bundled 8x8 digits: 1797 x 64, 10 classes. No download.

    ``scale`` divides the 0..16 pixel values by 16, into [0, 1].
    """
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:
        raise DataError(
            "the 'digits' data set needs scikit-learn: pip install \"graphc[datasets]\""
        ) from None
    bunch = sk_load_digits()
    x = bunch.data / 16.0 if scale else bunch.data
    return Dataset(
        x=x,
        y=bunch.target,
        n_classes=10,
        feature_names=list(bunch.feature_names),
        class_names=[str(c) for c in bunch.target_names],
        name="digits",
    )


_MNIST_FILES = {
    "train_images": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_labels": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_images": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_labels": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def load_mnist(directory: PathLike, scale: bool = True) -> Dataset:
    """MNIST (or Fashion-MNIST, or any MNIST-layout set) from IDX files in ``directory``.

    The train files are required, the t10k files optional (both or neither). Images
    are flattened to rows; ``scale`` divides pixels by 255, into [0, 1].
    """
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"mnist: {d} is not a directory")
    found = {key: _find_idx(d, names) for key, names in _MNIST_FILES.items()}
    for key in ("train_images", "train_labels"):
        if found[key] is None:
            raise DataError(
                f"mnist: no {_MNIST_FILES[key][0]}[.gz] in {d} (the data is read locally, never downloaded)"
            )
    if (found["test_images"] is None) != (found["test_labels"] is None):
        raise DataError(f"mnist: {d} has only one of the t10k images/labels files")

    def pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
        x, y = read_idx(images), read_idx(labels)
        if x.ndim != 3 or x.dtype != np.uint8:
            raise DataError(f"{images}: expected uint8 images (n, rows, cols), got {x.dtype} {x.shape}")
        if y.ndim != 1 or y.dtype != np.uint8:
            raise DataError(f"{labels}: expected uint8 labels (n,), got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise DataError(
                f"mnist: count mismatch: {images} has {len(x)} images but {labels} has {len(y)} labels"
            )
        if len(y) and y.max() > 9:
            raise DataError(f"{labels}: label {int(y.max())} is outside 0..9")
        flat = x.reshape(len(x), -1).astype(np.float32)
        return (flat / 255.0 if scale else flat), y

    x, y = pair(found["train_images"], found["train_labels"])
    x_test = y_test = None
    if found["test_images"] is not None:
        x_test, y_test = pair(found["test_images"], found["test_labels"])
    return Dataset(x=x, y=y, x_test=x_test, y_test=y_test, n_classes=10, name=f"mnist:{d}")


def _find_idx(d: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (d / name, d / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def load_npz(path: PathLike, task: str = "auto") -> Dataset:
    """A ``.npz`` with ``x``/``y`` (or ``X``/``Y``), optionally ``x_test``/``y_test``.

    ``task``: ``"classification"``, ``"regression"`` or ``"auto"`` (integer or bool
    labels mean classification). Never unpickles.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such file")
    try:
        with np.load(p, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zlib.error) as e:
        # ValueError is also what numpy raises for an object (pickled) array.
        raise DataError(f"{p}: not a readable .npz file without pickle ({e})") from None

    def get(*keys: str) -> np.ndarray | None:
        for k in keys:
            if k in arrays:
                return arrays[k]
        return None

    x, y = get("x", "X"), get("y", "Y")
    if x is None or y is None:
        raise DataError(f"{p}: expected arrays 'x' and 'y' (or 'X' and 'Y'), found {sorted(arrays)}")
    x_test, y_test = get("x_test", "X_test"), get("y_test", "Y_test")
    if (x_test is None) != (y_test is None):
        raise DataError(f"{p}: has only one of x_test/y_test")
    if x.ndim > 2:  # images: one row per sample
        x = x.reshape(len(x), -1)
        x_test = None if x_test is None else x_test.reshape(len(x_test), -1)
    ys = [y] if y_test is None else [y, y_test]
    n_classes = _n_classes(ys, task, str(p))
    return Dataset(x=x, y=y, x_test=x_test, y_test=y_test, n_classes=n_classes, name=str(p))


def _n_classes(ys: list[np.ndarray], task: str, where: str) -> int | None:
    if task not in ("auto", "classification", "regression"):
        raise DataError(f"task={task!r}: expected 'auto', 'classification' or 'regression'")
    if task == "regression" or (task == "auto" and ys[0].dtype.kind not in "iub"):
        return None
    top = -1
    for y in ys:
        if y.size:
            if y.dtype.kind not in "iubf" or (y.dtype.kind == "f" and np.any(y != np.round(y))):
                raise DataError(f"{where}: class labels must be integers, got dtype {y.dtype}")
            if y.min() < 0:
                raise DataError(f"{where}: negative class label {y.min()}")
            top = max(top, int(y.max()))
    return top + 1


def load_csv(
    path: PathLike,
    label_column: int | str = -1,
    header: bool | None = None,
    task: str = "auto",
    delimiter: str = ",",
) -> Dataset:
    """A ``.csv`` of numeric features and one label column (the last by default).

    ``label_column`` is an index (negative counts from the end) or, with a header,
    a column name. ``header=None`` autodetects: the first row is a header if one of
    its feature cells is not a number. With ``task="auto"`` integer labels are
    classes 0..max, non-numeric labels are classes named by their sorted values, and
    other numbers are regression targets.
    """
    p = Path(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f, delimiter=delimiter) if r]
    except FileNotFoundError:
        raise DataError(f"{p}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{p}: cannot read CSV ({e})") from None
    if not rows:
        raise DataError(f"{p}: the CSV file is empty")
    width = len(rows[0])
    if width < 2:
        raise DataError(f"{p}: need at least one feature column and a label column, got {width}")

    names: list[str] | None = None
    if isinstance(label_column, str):
        if header is False:
            raise DataError(f"{p}: label_column={label_column!r} needs a header row")
        header = True
    if header is None:
        header = any(not _is_number(c) for i, c in enumerate(rows[0]) if i != label_column % width)
    if header:
        names = [c.strip() for c in rows[0]]
        rows = rows[1:]
    if isinstance(label_column, str):
        if label_column not in names:
            raise DataError(f"{p}: no column named {label_column!r}; columns are {names}")
        label = names.index(label_column)
    else:
        if not -width <= label_column < width:
            raise DataError(f"{p}: label_column={label_column} out of range for {width} columns")
        label = label_column % width
    if not rows:
        raise DataError(f"{p}: no data rows")

    feature_cols = [i for i in range(width) if i != label]
    x = np.empty((len(rows), width - 1), dtype=np.float64)
    labels: list[str] = []
    first_line = 2 if header else 1
    for r, row in enumerate(rows):
        if len(row) != width:
            raise DataError(f"{p}: line {r + first_line} has {len(row)} fields, expected {width}")
        for j, c in enumerate(feature_cols):
            try:
                x[r, j] = float(row[c])
            except ValueError:
                col = names[c] if names else c
                raise DataError(
                    f"{p}: line {r + first_line}, column {col!r}: {row[c]!r} is not a number"
                ) from None
        labels.append(row[label].strip())

    class_names: list[str] | None = None
    if all(_is_number(v) for v in labels):
        y = np.array([float(v) for v in labels])
        if task == "classification" or (task == "auto" and np.all(y == np.round(y)) and y.min() >= 0):
            n_classes = _n_classes([y], "classification", str(p))
        else:
            n_classes = _n_classes([y], "regression" if task == "auto" else task, str(p))
    else:
        if task == "regression":
            raise DataError(f"{p}: task='regression' but labels are not numbers")
        class_names = sorted(set(labels))
        index = {c: i for i, c in enumerate(class_names)}
        y = np.array([index[v] for v in labels], dtype=np.int64)
        n_classes = len(class_names)
    feature_names = [names[c] for c in feature_cols] if names else None
    return Dataset(
        x=x,
        y=y,
        n_classes=n_classes,
        feature_names=feature_names,
        class_names=class_names,
        name=str(p),
    )


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


# -------------------------------------------------------------------- IDX files

# IDX (LeCun's MNIST format): two zero bytes, a dtype code, the number of dims,
# then each dim as a big-endian uint32, then the data, big-endian, C order.
_IDX_CODES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_BY_KIND = {(dt.kind, dt.itemsize): code for code, dt in _IDX_CODES.items()}
_MAX_IDX_BYTES = 1 << 34  # 16 GiB: refuse absurd headers before allocating


def _open_idx(path: Path) -> BinaryIO:
    f = open(path, "rb")
    # Sniff gzip by its magic bytes, not the name, so a renamed file still works.
    if f.read(2) == b"\x1f\x8b":
        f.close()
        return gzip.open(path, "rb")  # type: ignore[return-value]
    f.seek(0)
    return f


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a native-endian array of its dims."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: no such IDX file")
    try:
        with _open_idx(p) as f:
            head = f.read(4)
            if len(head) < 4:
                raise DataError(f"{p}: truncated IDX file: {len(head)}-byte header, need 4")
            if head[:2] != b"\x00\x00":
                raise DataError(
                    f"{p}: wrong magic number {head.hex()}: an IDX file starts with two zero "
                    "bytes, a dtype code and the number of dims"
                )
            code, ndim = head[2], head[3]
            if code not in _IDX_CODES:
                raise DataError(
                    f"{p}: unknown IDX dtype code 0x{code:02x}; known: "
                    + ", ".join(f"0x{c:02x}" for c in _IDX_CODES)
                )
            if ndim == 0:
                raise DataError(f"{p}: IDX file with 0 dims")
            raw_dims = f.read(4 * ndim)
            if len(raw_dims) < 4 * ndim:
                raise DataError(f"{p}: truncated IDX file: header declares {ndim} dims")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            dtype = _IDX_CODES[code]
            nbytes = math.prod(dims) * dtype.itemsize
            if nbytes > _MAX_IDX_BYTES:
                raise DataError(f"{p}: IDX dims {dims} declare {nbytes} bytes, over the limit")
            # Bounded read: a file (or gzip stream) longer than declared is caught
            # without reading all of it.
            data = f.read(nbytes + 1)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{p}: cannot read IDX file ({e}); truncated or corrupt?") from None
    if len(data) < nbytes:
        raise DataError(
            f"{p}: truncated IDX file: dims {list(dims)} need {nbytes} data bytes, found {len(data)}"
        )
    if len(data) > nbytes:
        raise DataError(f"{p}: IDX file has more data than its dims {list(dims)} declare")
    arr = np.frombuffer(data, dtype=dtype, count=math.prod(dims)).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def write_idx(path: PathLike, array: Any) -> None:
    """Write ``array`` as an IDX file; gzip it if ``path`` ends in ``.gz``.

    Supported dtypes: uint8, int8, int16, int32, float32, float64.
    """
    p = Path(path)
    arr = np.asarray(array)
    code = _IDX_BY_KIND.get((arr.dtype.kind, arr.dtype.itemsize))
    if code is None:
        raise DataError(
            f"{p}: IDX cannot store dtype {arr.dtype}; use uint8, int8, int16, int32, float32 or float64"
        )
    if not 1 <= arr.ndim <= 255 or any(d >= 2**32 for d in arr.shape):
        raise DataError(f"{p}: IDX cannot store shape {arr.shape}")
    data = np.ascontiguousarray(arr, dtype=_IDX_CODES[code]).tobytes()
    head = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    opener = gzip.open if p.name.endswith(".gz") else open
    try:
        with opener(p, "wb") as f:
            f.write(head)
            f.write(data)
    except OSError as e:
        raise DataError(f"{p}: cannot write IDX file ({e})") from None
