"""Data sets: loaders, IDX files, Dataset.split/standardize/batches. All local files."""

from __future__ import annotations

import builtins
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from graphc import data
from graphc.data import Dataset, load, read_idx, write_idx
from graphc.errors import DataError

# ---------------------------------------------------------------------- digits


def test_digits() -> None:
    pytest.importorskip("sklearn")
    ds = load("digits")
    assert ds.x.shape == (1797, 64) and ds.y.shape == (1797,)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    assert ds.x.flags.c_contiguous and ds.y.flags.c_contiguous
    assert ds.n_classes == 10 and set(np.unique(ds.y)) == set(range(10))
    assert 0.0 <= ds.x.min() and ds.x.max() == 1.0
    assert load("digits", scale=False).x.max() == 16.0


def test_digits_without_sklearn_gives_install_hint(monkeypatch) -> None:
    real_import = builtins.__import__

    def no_sklearn(name, *args, **kw):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(DataError, match=r'pip install "graphc\[datasets\]"'):
        load("digits")


def test_unknown_name() -> None:
    with pytest.raises(DataError, match="unknown data set 'cifar'"):
        load("cifar")


# ------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-128, 0, 127], dtype=np.int8),
        np.array([[-3, 300], [7, -32768]], dtype=np.int16),
        np.array([2**31 - 1, -(2**31)], dtype=np.int32),
        np.array([[0.5, -0.0, np.inf]], dtype=np.float32),
        np.array([np.nan, 1e300], dtype=np.float64),
        np.zeros((0, 28, 28), dtype=np.uint8),
    ],
    ids=["u8_3d", "i8", "i16", "i32", "f32", "f64", "empty"],
)
def test_idx_round_trip(tmp_path: Path, array: np.ndarray, gz: bool) -> None:
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, array)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    got = read_idx(path)
    assert got.shape == array.shape and got.dtype == array.dtype
    assert got.tobytes() == array.tobytes()


def test_idx_layout_is_big_endian(tmp_path: Path) -> None:
    path = tmp_path / "a.idx"
    write_idx(path, np.array([[1, 2, 3]], dtype=np.int32))
    assert path.read_bytes() == (b"\x00\x00\x0c\x02" + struct.pack(">II", 1, 3) + struct.pack(">3i", 1, 2, 3))


def test_write_idx_refuses_unsupported_dtype(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot store dtype int64"):
        write_idx(tmp_path / "a.idx", np.arange(3))


GOOD = b"\x00\x00\x08\x02" + struct.pack(">II", 2, 3) + bytes(range(6))

MALFORMED = {
    "empty": (b"", ["truncated", "header"]),
    "short header": (b"\x00\x00", ["truncated", "header"]),
    "wrong magic": (b"\x12\x34" + GOOD[2:], ["wrong magic number"]),
    "unknown dtype code": (b"\x00\x00\x07\x02" + GOOD[4:], ["unknown IDX dtype code 0x07"]),
    "zero dims": (b"\x00\x00\x08\x00", ["0 dims"]),
    "truncated dims": (GOOD[:8], ["truncated", "2 dims"]),
    "truncated data": (GOOD[:-2], ["truncated", "need 6 data bytes", "found 4"]),
    "extra data": (GOOD + b"\x00", ["more data than"]),
    "huge dims": (b"\x00\x00\x0e\x02" + struct.pack(">II", 2**32 - 1, 2**32 - 1), ["over the limit"]),
}


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_idx(tmp_path: Path, case: str, gz: bool) -> None:
    content, words = MALFORMED[case]
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(DataError) as e:
        read_idx(path)
    msg = str(e.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


def test_corrupt_gzip_idx(tmp_path: Path) -> None:
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(GOOD)[:-6])  # cut inside the gzip trailer
    with pytest.raises(DataError, match="bad.gz"):
        read_idx(path)


def test_missing_idx(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such IDX file"):
        read_idx(tmp_path / "nope")


# ----------------------------------------------------------------------- MNIST


def write_mnist(d: Path, n_train=20, n_test=10, gz=False, n_train_labels=None, rng_seed=0) -> None:
    rng = np.random.default_rng(rng_seed)
    ext = ".gz" if gz else ""
    d.mkdir(exist_ok=True)
    write_idx(d / f"train-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_train, 28, 28), np.uint8))
    n_lab = n_train if n_train_labels is None else n_train_labels
    write_idx(d / f"train-labels-idx1-ubyte{ext}", rng.integers(0, 10, n_lab, np.uint8))
    if n_test:
        write_idx(d / f"t10k-images-idx3-ubyte{ext}", rng.integers(0, 256, (n_test, 28, 28), np.uint8))
        write_idx(d / f"t10k-labels-idx1-ubyte{ext}", rng.integers(0, 10, n_test, np.uint8))


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_dir(tmp_path: Path, gz: bool) -> None:
    write_mnist(tmp_path / "m", gz=gz)
    ds = load(f"mnist:{tmp_path / 'm'}")
    assert ds.x.shape == (20, 784) and ds.x_test.shape == (10, 784)
    assert ds.x.dtype == np.float32 and ds.y.dtype == np.int64 and ds.n_classes == 10
    raw = read_idx(tmp_path / "m" / f"train-images-idx3-ubyte{'.gz' if gz else ''}")
    np.testing.assert_array_equal(ds.x, raw.reshape(20, -1) / np.float32(255))


def test_mnist_without_test_files(tmp_path: Path) -> None:
    write_mnist(tmp_path / "m", n_test=0)
    ds = load(f"mnist:{tmp_path / 'm'}", scale=False)
    assert ds.x_test is None and ds.x.max() > 1


def test_mnist_count_mismatch(tmp_path: Path) -> None:
    write_mnist(tmp_path / "m", n_train=20, n_train_labels=19)
    with pytest.raises(DataError, match="count mismatch.*20 images.*19 labels"):
        load(f"mnist:{tmp_path / 'm'}")


def test_mnist_missing_files(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no train-images-idx3-ubyte"):
        load(f"mnist:{tmp_path / 'empty'}")
    with pytest.raises(DataError, match="not a directory"):
        load(f"mnist:{tmp_path / 'nope'}")


# ------------------------------------------------------------------ npz / csv


def test_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((30, 4)), rng.integers(0, 3, 30)
    np.savez(tmp_path / "a.npz", X=x, Y=y, X_test=x[:5], Y_test=np.full(5, 4))
    ds = load(tmp_path / "a.npz")
    assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous
    np.testing.assert_array_equal(ds.x, x.astype(np.float32))
    assert ds.y.dtype == np.int64 and ds.n_classes == 5  # test labels count too
    assert ds.x_test.shape == (5, 4)

    np.savez(tmp_path / "r.npz", x=x, y=rng.standard_normal(30))
    reg = load(tmp_path / "r.npz")
    assert reg.n_classes is None and reg.y.dtype == np.float32

    np.savez(tmp_path / "img.npz", x=rng.integers(0, 255, (6, 8, 8), dtype=np.uint8), y=np.arange(6))
    assert load(tmp_path / "img.npz").x.shape == (6, 64)


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"a": np.zeros((3, 2)), "b": np.zeros(3)}, ["expected arrays 'x' and 'y'", "['a', 'b']"]),
        ({"x": np.zeros((3, 2)), "y": np.zeros(4)}, ["one target per row"]),
        ({"x": np.zeros((3, 2)), "y": np.zeros(3), "x_test": np.zeros((1, 2))}, ["x_test/y_test"]),
        ({"x": np.zeros((3, 2)), "y": np.array([0, -1, 2])}, ["negative class label"]),
        ({"x": np.zeros((3, 2)), "y": np.array([1, None, 2], dtype=object)}, ["without pickle"]),
    ],
)
def test_bad_npz(tmp_path: Path, arrays, words) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as e:
        load(path)
    for w in words:
        assert w in str(e.value)


def test_npz_not_a_zip(tmp_path: Path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"not a zip at all")
    with pytest.raises(DataError, match="junk.npz"):
        load(tmp_path / "junk.npz")


def test_csv_header_autodetect_and_label_column(tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("f1,f2,label\n1,2,0\n3.5,-4,2\n5,6e1,1\n")
    ds = load(p)
    assert ds.feature_names == ["f1", "f2"] and ds.n_classes == 3
    np.testing.assert_array_equal(ds.x, np.array([[1, 2], [3.5, -4], [5, 60]], np.float32))
    np.testing.assert_array_equal(ds.y, [0, 2, 1])

    by_name = load(p, label_column="f1", task="regression")
    assert by_name.feature_names == ["f2", "label"] and by_name.n_classes is None
    np.testing.assert_array_equal(by_name.y, np.array([1, 3.5, 5], np.float32))

    q = tmp_path / "b.csv"
    q.write_text("0,1,2\n3,4,5\n")  # no header: all numbers
    ds = load(q, label_column=0)
    assert ds.feature_names is None and len(ds) == 2
    np.testing.assert_array_equal(ds.x, [[1, 2], [4, 5]])
    np.testing.assert_array_equal(ds.y, [0, 3])


def test_csv_string_and_float_labels(tmp_path: Path) -> None:
    p = tmp_path / "iris.csv"
    p.write_text("1,2,setosa\n3,4,virginica\n5,6,setosa\n")
    ds = load(p)
    assert ds.class_names == ["setosa", "virginica"] and list(ds.y) == [0, 1, 0]
    p.write_text("1,2,0.5\n3,4,1.25\n")
    assert load(p).n_classes is None


@pytest.mark.parametrize(
    "text, kw, words",
    [
        ("", {}, ["empty"]),
        ("1\n2\n", {}, ["at least one feature column"]),
        ("a,b,y\n1,2,0\n3,4\n", {}, ["line 3 has 2 fields, expected 3"]),
        ("a,b,y\n1,x,0\n", {}, ["line 2, column 'b'", "'x' is not a number"]),
        ("a,b,y\n1,2,0\n", {"label_column": "z"}, ["no column named 'z'"]),
        ("1,2,0\n", {"label_column": 5}, ["out of range"]),
        ("a,b,y\n", {}, ["no data rows"]),
    ],
)
def test_bad_csv(tmp_path: Path, text, kw, words) -> None:
    p = tmp_path / "bad.csv"
    p.write_text(text)
    with pytest.raises(DataError) as e:
        load(p, **kw)
    assert "bad.csv" in str(e.value)
    for w in words:
        assert w in str(e.value)


def test_missing_files(tmp_path: Path) -> None:
    for name in ("nope.npz", "nope.csv"):
        with pytest.raises(DataError, match="no such file"):
            load(tmp_path / name)


# ------------------------------------------------------------------- Dataset


def toy(n=100, classes=(0.5, 0.3, 0.2), seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    counts = [int(round(p * n)) for p in classes]
    y = np.repeat(np.arange(len(classes)), counts)
    x = np.column_stack([np.arange(n), rng.standard_normal(n) * 3 + 7, np.full(n, 5.0)])
    return Dataset(x=x, y=y, x_test=x[:4] + 1, y_test=y[:4], n_classes=len(classes), name="toy")


def test_dataset_normalises_arrays() -> None:
    ds = Dataset(x=np.asfortranarray(np.ones((4, 2))), y=[0.0, 1.0, 1.0, 0.0], n_classes=2)
    assert ds.x.dtype == np.float32 and ds.x.flags.c_contiguous and ds.y.dtype == np.int64
    with pytest.raises(DataError, match=r"labels span \[0, 2\], expected \[0, 2\)"):
        Dataset(x=np.ones((2, 1)), y=[0, 2], n_classes=2)
    with pytest.raises(DataError, match="non-integer class labels"):
        Dataset(x=np.ones((2, 1)), y=[0.5, 1], n_classes=2)
    with pytest.raises(DataError, match="must be 2-D"):
        Dataset(x=np.ones(3), y=[0, 1, 2])


def test_split_stratified_partition() -> None:
    ds = toy()
    train, val, test = ds.split(validation=0.2, test=0.1, seed=3)
    assert (len(train), len(val), len(test)) == (70, 20, 10)
    # A partition of the rows: column 0 is the row id.
    ids = np.concatenate([train.x[:, 0], val.x[:, 0], test.x[:, 0]])
    assert sorted(ids.astype(int)) == list(range(100))
    # Stratified: class proportions 50/30/20 in every part.
    assert np.bincount(val.y).tolist() == [10, 6, 4]
    assert np.bincount(test.y).tolist() == [5, 3, 2]
    # Rows keep their labels, train keeps the held-out test arrays.
    np.testing.assert_array_equal(val.y, ds.y[val.x[:, 0].astype(int)])
    assert train.x_test is ds.x_test and val.x_test is None
    assert train.x.flags.c_contiguous and train.n_classes == 3


def test_split_is_deterministic_and_seed_dependent() -> None:
    ds = toy()
    a = ds.split(0.25, seed=1)
    b = ds.split(0.25, seed=1)
    c = ds.split(0.25, seed=2)
    np.testing.assert_array_equal(a[1].x, b[1].x)
    assert not np.array_equal(a[1].x, c[1].x)
    assert len(ds.split()) == 2 and len(ds.split()[1]) == 10


def test_split_unstratified_and_counts() -> None:
    ds = toy()
    train, val = ds.split(validation=7, stratify=False)
    assert len(val) == 7 and len(train) == 93
    reg = Dataset(x=ds.x, y=ds.x[:, 1])
    assert [len(p) for p in reg.split(0.3)] == [70, 30]
    with pytest.raises(DataError, match="no training rows"):
        ds.split(validation=0.6, test=0.4)
    with pytest.raises(DataError, match="fraction"):
        ds.split(validation=1.5)


def test_standardize_uses_train_only() -> None:
    train, val = toy().split(0.2)
    std_train, stats = train.standardize()
    x = train.x.astype(np.float64)
    np.testing.assert_allclose(stats["mean"], x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std_train.x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(std_train.x.std(0)[:2], 1, rtol=1e-5)
    # Constant column: std 1, maps to 0, no NaN.
    assert stats["std"][2] == 1 and np.all(std_train.x[:, 2] == 0)
    # x_test is transformed with the train stats, not its own.
    np.testing.assert_allclose(std_train.x_test, (train.x_test - stats["mean"]) / stats["std"], rtol=1e-6)
    std_val, stats2 = val.standardize(stats)
    assert stats2["mean"].tolist() == stats["mean"].tolist()
    np.testing.assert_allclose(std_val.x, (val.x - stats["mean"]) / stats["std"], rtol=1e-6)
    assert std_val.x.dtype == np.float32 and std_val.x.flags.c_contiguous
    # The original is untouched.
    assert train.x[:, 2].tolist() == [5.0] * len(train)
    with pytest.raises(DataError, match="features"):
        val.standardize({"mean": np.zeros(2), "std": np.ones(2)})


def test_batches() -> None:
    ds = toy(n=10, classes=(0.5, 0.5))
    plain = list(ds.batches(4, shuffle=False))
    assert [len(b[0]) for b in plain] == [4, 4, 2]
    np.testing.assert_array_equal(np.concatenate([b[0] for b in plain]), ds.x)
    shuffled = list(ds.batches(4, shuffle=True, seed=5))
    again = list(ds.batches(4, shuffle=True, seed=5))
    ids = np.concatenate([b[0][:, 0] for b in shuffled])
    assert sorted(ids.astype(int)) == list(range(10)) and ids.tolist() != list(range(10))
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(shuffled, again))
    for xb, yb in shuffled:
        assert xb.flags.c_contiguous and yb.flags.c_contiguous
        np.testing.assert_array_equal(yb, ds.y[xb[:, 0].astype(int)])
    assert [len(b[0]) for b in ds.batches(4, drop_last=True)] == [4, 4]
    with pytest.raises(DataError):
        next(ds.batches(0))


def test_module_has_no_network_or_heavy_imports() -> None:
    src = Path(data.__file__).read_text()
    for banned in ("urllib", "requests", "http", "socket", "numba", "torch", "fetch_openml"):
        assert banned not in src
