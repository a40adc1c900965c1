"""The .gcm model file: bit-exact round trips, one table of corrupt files, crash safety.

The corrupt files are built here from their parts (members, header, .npy bytes), with
checksums recomputed by an independent implementation where a case needs them valid,
so each case reaches the one check it is about.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

from graphc.errors import ModelFileError
from graphc.io import FORMAT, SCHEMA_VERSION, load_model, save_model

# ----------------------------------------------------------------------- helpers


def sha(arr: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()


def payload_sha(header: dict) -> str:
    body = {k: v for k, v in header.items() if k != "payload_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def npy_bytes(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


W = np.arange(12, dtype=np.float32).reshape(3, 4)
B = np.array([0.5, -0.0, np.inf, -1e-300], dtype=np.float64)


def header_for(arrays: dict, meta: dict | None = None, **override) -> dict:
    h = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "meta": meta if meta is not None else {"note": "test"},
        "arrays": {
            name: {
                "member": f"arrays/{i}.npy",
                "shape": list(a.shape),
                "dtype": a.dtype.name,
                "sha256": sha(a),
            }
            for i, (name, a) in enumerate(arrays.items())
        },
    }
    h.update(override)
    h["payload_sha256"] = payload_sha(h)
    return h


def write_zip(path: Path, members: list[tuple[str, bytes]]) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about duplicate names
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members:
                zf.writestr(name, data)
    return path


def good_members(header: dict | None = None, arrays: dict | None = None) -> list:
    arrays = arrays if arrays is not None else {"W": W, "b": B}
    header = header if header is not None else header_for(arrays)
    return [("model.json", json.dumps(header).encode())] + [
        (f"arrays/{i}.npy", npy_bytes(a)) for i, a in enumerate(arrays.values())
    ]


def with_header(mutate) -> list:
    """Good members, with the header changed by ``mutate`` and its checksum recomputed."""
    h = header_for({"W": W, "b": B})
    mutate(h)
    h["payload_sha256"] = payload_sha(h)
    return good_members(header=h)


def with_member(i: int, data: bytes, header: dict | None = None) -> list:
    members = good_members(header=header)
    members[1 + i] = (members[1 + i][0], data)
    return members


# ------------------------------------------------------------------ round trips


ROUND_TRIP = {
    "f32_matrix": np.random.default_rng(0).standard_normal((7, 5)).astype(np.float32),
    "f64_vector": np.array([np.nan, -0.0, 0.0, np.inf, -np.inf, 5e-324]),
    "nan_payload": np.array([0x7FF8_0000_DEAD_BEEF, 0xFFF0_0000_0000_0001], dtype=np.uint64).view(np.float64),
    "f32_nan_payload": np.array([0x7FC0_1234, 0xFF80_0001], dtype=np.uint32).view(np.float32),
    "f16": np.array([1.5, -0.0, 65504], dtype=np.float16),
    "i64": np.array([[-(2**63), 2**63 - 1]], dtype=np.int64),
    "i8_3d": np.arange(-12, 12, dtype=np.int8).reshape(2, 3, 4),
    "u8": np.arange(256, dtype=np.uint8),
    "bool": np.array([True, False, True]),
    "c128": np.array([1 + 2j, -0.0 - 0.0j]),
    "scalar_f64": np.float64(-0.0),
    "scalar_0d_i32": np.array(7, dtype=np.int32),
    "empty_0x5": np.zeros((0, 5), dtype=np.float32),
    "empty_1d": np.zeros((0,), dtype=np.int64),
    "fortran_input": np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)),
    "big_endian_input": np.arange(4, dtype=">f8"),
    "strided_input": np.arange(20, dtype=np.float32)[::3],
    "unicode/name é": np.ones((1, 1, 1, 1), dtype=np.float32),
}


def test_round_trip_bit_exact(tmp_path: Path) -> None:
    path = tmp_path / "m.gcm"
    meta = {"graph": {"nodes": [{"op": "dense", "units": 3}]}, "lr": 0.1, "name": "é", "n": None}
    save_model(path, meta, ROUND_TRIP)
    meta2, arrays = load_model(path)
    assert meta2 == meta
    assert list(arrays) == list(ROUND_TRIP)
    for name, original in ROUND_TRIP.items():
        expected = np.asarray(original)
        got = arrays[name]
        assert got.shape == expected.shape, name
        assert got.dtype == expected.dtype.newbyteorder("="), name
        assert got.flags.c_contiguous, name
        assert got.tobytes() == np.ascontiguousarray(expected, dtype=got.dtype).tobytes(), name


def test_layout_is_documented_one(tmp_path: Path) -> None:
    path = tmp_path / "m.gcm"
    save_model(path, {"k": [1, 2]}, {"W": W, "b": B})
    with zipfile.ZipFile(path) as zf:
        assert zf.namelist() == ["model.json", "arrays/0.npy", "arrays/1.npy"]
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in zf.infolist())
        header = json.loads(zf.read("model.json").decode("utf-8"))
        assert np.load(io.BytesIO(zf.read("arrays/1.npy")), allow_pickle=False).tobytes() == (B.tobytes())
    assert header == header_for({"W": W, "b": B}, meta={"k": [1, 2]})


def test_overwrite_replaces_and_empty_model(tmp_path: Path) -> None:
    path = tmp_path / "m.gcm"
    save_model(path, {"v": 1}, {"W": W})
    save_model(path, {"v": 2}, {})
    assert load_model(path) == ({"v": 2}, {})
    assert [p.name for p in tmp_path.iterdir()] == ["m.gcm"]  # no temp file left behind


@pytest.mark.parametrize(
    "meta, arrays, words",
    [
        ({}, {"o": np.array([1, "a"], dtype=object)}, ["object", "pickle"]),
        ({}, {"s": np.array(["abc"])}, ["unsupported dtype"]),
        ({"x": float("nan")}, {}, ["JSON"]),
        ({"x": object()}, {}, ["JSON"]),
        ([], {}, ["meta must be a dict"]),
        ({}, {"": W}, ["non-empty"]),
    ],
)
def test_save_refuses(tmp_path: Path, meta, arrays, words) -> None:
    path = tmp_path / "m.gcm"
    with pytest.raises(ModelFileError) as e:
        save_model(path, meta, arrays)
    for w in words:
        assert w in str(e.value)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------ corruption table


def good_file(d: Path) -> Path:
    path = d / "good.gcm"
    save_model(path, {"note": "good"}, {"W": W, "b": B})
    return path


def corrupt_bytes(fn):
    """A case that rewrites the good file's bytes."""

    def make(d: Path) -> Path:
        p = good_file(d)
        p.write_bytes(fn(p.read_bytes()))
        return p

    return make


def zip_of(members_fn):
    def make(d: Path) -> Path:
        return write_zip(d / "bad.gcm", members_fn())

    return make


def non_utf8_members() -> list:
    h = header_for({"W": W, "b": B}, meta={"note": "caf\u00e9"})
    text = json.dumps(h, ensure_ascii=False).encode("latin-1")
    return [("model.json", text)] + good_members()[1:]


def duplicate_key_members() -> list:
    text = json.dumps(header_for({"W": W, "b": B}))
    text = text.replace('"meta": {', '"meta": {"note": 1, ', 1)  # "note" twice
    return [("model.json", text.encode())] + good_members()[1:]


def huge_header_members() -> list:
    h = header_for({"W": W, "b": B})
    text = json.dumps(h) + " " * (17 * 1024 * 1024)  # valid JSON, 17 MiB, compresses to ~17 KiB
    return [("model.json", text.encode())] + good_members()[1:]


def short_data_npy() -> bytes:
    # A header honestly saying (3, 4) float32 but only 40 of the 48 data bytes.
    return npy_bytes(W)[:-8]


def set_shape(shape):
    def mutate(h):
        h["arrays"]["W"]["shape"] = shape

    return mutate


CASES = {
    "missing file": (lambda d: d / "nope.gcm", ["does not exist"]),
    "a directory": (lambda d: (d / "dir.gcm").mkdir() or d / "dir.gcm", ["is a directory"]),
    "empty file": (corrupt_bytes(lambda b: b""), ["empty"]),
    "truncated": (corrupt_bytes(lambda b: b[: len(b) // 2]), ["truncated"]),
    "truncated by one byte": (corrupt_bytes(lambda b: b[:-1]), ["truncated"]),
    "random bytes": (corrupt_bytes(lambda b: os.urandom(4096)), ["not a zip archive"]),
    "trailing bytes": (corrupt_bytes(lambda b: b + b"garbage!"), ["8 trailing byte"]),
    "prepended bytes": (corrupt_bytes(lambda b: b"MZ" * 8 + b), ["before the zip"]),
    "wrong schema version": (
        zip_of(lambda: with_header(lambda h: h.update(schema_version=2))),
        ["schema_version", "found 2", "supported 1"],
    ),
    "wrong format": (
        zip_of(lambda: with_header(lambda h: h.update(format="onnx"))),
        ["wrong format", "found 'onnx'", "'graphc-model'"],
    ),
    "not a model header": (zip_of(lambda: [("model.json", b"[1, 2]")]), ["JSON object"]),
    "tampered shape": (
        zip_of(lambda: with_header(set_shape([4, 3]))),
        ["stored shape (3, 4)", "declared shape (4, 3)"],
    ),
    "tampered dtype": (
        zip_of(lambda: with_header(lambda h: h["arrays"]["W"].update(dtype="int32"))),
        ["stored dtype float32", "declared dtype int32"],
    ),
    "shape x itemsize != stored bytes": (
        zip_of(lambda: with_member(0, short_data_npy())),
        ["stored byte count 40", "itemsize 4 = 48"],
    ),
    "negative dim": (zip_of(lambda: with_header(set_shape([-1, 12]))), ["negative"]),
    "overflowing shape": (
        zip_of(lambda: with_header(set_shape([2**62, 2**62, 16]))),
        ["over the limit", "overflowing"],
    ),
    "too many dims": (zip_of(lambda: with_header(set_shape([1] * 40))), ["at most 32 dims"]),
    "huge JSON header": (zip_of(huge_header_members), ["header size limit"]),
    "non-UTF-8 JSON": (zip_of(non_utf8_members), ["not valid UTF-8"]),
    "duplicate JSON keys": (zip_of(duplicate_key_members), ["duplicate key 'note'"]),
    "invalid JSON": (
        zip_of(lambda: [("model.json", b"{nope")] + good_members()[1:]),
        ["not valid JSON"],
    ),
    "array checksum mismatch": (
        zip_of(lambda: with_member(0, npy_bytes(W + 1))),
        ["array 'W'", "checksum mismatch"],
    ),
    "payload checksum mismatch": (
        zip_of(
            lambda: (
                [
                    (
                        "model.json",
                        json.dumps(header_for({"W": W, "b": B})).replace("test", "evil").encode(),
                    )
                ]
                + good_members()[1:]
            )
        ),
        ["payload checksum mismatch"],
    ),
    "pickle payload": (
        zip_of(lambda: with_member(0, pickle.dumps(W))),
        ["not a .npy array", "pickle"],
    ),
    "object array in .npy": (
        zip_of(lambda: with_member(1, npy_bytes(np.array([1.0, None, 2, 3]), allow_pickle=True))),
        ["dtype object", "refused"],
    ),
    "object dtype in header": (
        zip_of(lambda: with_header(lambda h: h["arrays"]["b"].update(dtype="object"))),
        ["object arrays are refused"],
    ),
    "member with ../": (
        zip_of(lambda: good_members() + [("../evil.npy", b"x")]),
        ["'../evil.npy'", "unsafe path"],
    ),
    "absolute member": (
        zip_of(lambda: good_members() + [("/etc/evil", b"x")]),
        ["'/etc/evil'", "absolute path"],
    ),
    "duplicate member names": (
        zip_of(lambda: good_members() + [("arrays/0.npy", npy_bytes(W))]),
        ["duplicate member", "arrays/0.npy"],
    ),
    "unexpected extra member": (
        zip_of(lambda: good_members() + [("arrays/2.npy", npy_bytes(W))]),
        ["unexpected extra member", "arrays/2.npy"],
    ),
    "missing array member": (
        zip_of(lambda: good_members()[:2]),
        ["missing member", "arrays/1.npy"],
    ),
    "missing header": (zip_of(lambda: good_members()[1:]), ["missing member 'model.json'"]),
    "member name pointing outside": (
        zip_of(lambda: with_header(lambda h: h["arrays"]["W"].update(member="../x.npy"))),
        ["bad member name"],
    ),
    "zip bomb (declared size)": (
        lambda d: make_bomb(d, 64 << 20),
        ["zip bomb", "refusing to decompress"],
    ),
    "zip bomb (size lies)": (lambda d: make_lying_bomb(d), ["corrupt", "CRC"]),
}


def make_bomb(d: Path, size: int) -> Path:
    """A valid-looking model whose array member inflates to ``size`` bytes of zeros."""
    path = d / "bomb.gcm"
    members = good_members()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for name, data in members:
            if name != "arrays/0.npy":
                zf.writestr(name, data)
                continue
            with zf.open(name, "w", force_zip64=True) as out:
                out.write(data)
                zeros = bytes(1 << 20)
                for _ in range(size >> 20):
                    out.write(zeros)
    return path


def make_lying_bomb(d: Path) -> Path:
    """A member that inflates to 16 MiB while its zip headers claim the honest size."""
    path = d / "liar.gcm"
    members = good_members()
    honest = len(members[1][1])
    members[1] = (members[1][0], members[1][1] + bytes(16 << 20))
    write_zip(path, members)
    raw = bytearray(path.read_bytes())
    big = struct.pack("<I", len(members[1][1]))
    # Patch the uncompressed size in the local header (offset 22) and the central
    # directory entry (offset 24) of that member.
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while (start := raw.find(sig, start)) >= 0:
            if raw[start + off : start + off + 4] == big:
                raw[start + off : start + off + 4] = struct.pack("<I", honest)
            start += 4
    path.write_bytes(bytes(raw))
    with zipfile.ZipFile(path) as zf:
        assert zf.getinfo("arrays/0.npy").file_size == honest
    return path


@pytest.mark.parametrize("case", list(CASES))
def test_corrupt_file_is_refused(tmp_path: Path, case: str) -> None:
    make, words = CASES[case]
    path = make(tmp_path)
    with pytest.raises(ModelFileError) as e:
        load_model(path)
    msg = str(e.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"


def test_good_file_passes_every_check(tmp_path: Path) -> None:
    # The table's builders start from files that are valid: the helpers agree with
    # the writer, so each case fails only because of its one defect.
    for members in (good_members(), with_header(lambda h: None)):
        meta, arrays = load_model(write_zip(tmp_path / "ok.gcm", members))
        assert meta == {"note": "test"}
        assert arrays["W"].tobytes() == W.tobytes() and arrays["b"].tobytes() == B.tobytes()


def test_header_limit_is_configurable(tmp_path: Path) -> None:
    path = good_file(tmp_path)
    with pytest.raises(ModelFileError, match="header size limit of 100 bytes"):
        load_model(path, max_json_bytes=100)


def test_zip_bomb_refused_with_bounded_memory(tmp_path: Path) -> None:
    size = 1 << 30  # 1 GiB of zeros, about 1 MiB on disk
    path = make_bomb(tmp_path, size)
    assert path.stat().st_size < size // 100
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match="zip bomb"):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # RELIABILITY.md promises the model plus 1 MiB; the model here is a few bytes
    # (measured: 0.13 MiB, against the 1 GiB the member would inflate to).
    assert peak < 1 << 20, peak


def test_lying_bomb_read_is_bounded(tmp_path: Path) -> None:
    path = make_lying_bomb(tmp_path)
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The model plus 1 MiB, far below the 16 MiB the member inflates to (measured 0.08 MiB).
    assert peak < 1 << 20, peak


# ------------------------------------------------------------------ crash safety


SAVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from graphc.io import save_model
    big = np.random.default_rng(1).standard_normal(25_000_000)  # 200 MB
    print("ready", flush=True)
    save_model(sys.argv[1], {"version": "new"}, {"W": big})
    print("done", flush=True)
    """
)


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_killed_save_leaves_previous_file_intact(tmp_path: Path) -> None:
    path = tmp_path / "model.gcm"
    save_model(path, {"version": "old"}, {"W": W, "b": B})
    before = path.read_bytes()

    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        temps: list[Path] = []
        # Kill once the temp file exists and has data in it: mid-save.
        while time.monotonic() < deadline:
            temps = [p for p in tmp_path.iterdir() if p.name != "model.gcm"]
            if temps and temps[0].stat().st_size > 1 << 20:
                break
            assert proc.poll() is None, "save finished before it could be interrupted"
            time.sleep(0.005)
        else:
            pytest.fail("temp file never appeared")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL

    assert path.read_bytes() == before
    meta, arrays = load_model(path)
    assert meta == {"version": "old"}
    assert arrays["W"].tobytes() == W.tobytes() and arrays["b"].tobytes() == B.tobytes()

    # The leftover temp file is hidden, not a .gcm, and does not load as a model.
    leftovers = [p for p in tmp_path.iterdir() if p != path]
    assert leftovers
    for p in leftovers:
        assert p.name.startswith(".") and not p.name.endswith(".gcm")
        with pytest.raises(ModelFileError, match="truncated"):
            load_model(p)
