"""Saving and loading *programs* (``net.save`` / ``gc.load``): bit-exact round trips, resuming
training exactly, and every kind of corrupted file refused with ``ModelFileError``.

The .gcm container itself (zip layout, bounds, zip bombs, atomic writes, a killed save) is
tested in tests/io/test_model_file.py; here everything goes through the program API.
"""

from __future__ import annotations

import builtins
import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.io import save_model
from graphc.optim import to_config

from .helpers import BACKENDS, make_data, shared_adam, shared_net

DATA, VAL = make_data(60, seed=8), make_data(20, seed=9)


def _schedule():
    return gc.optim.ExponentialLR(0.02, gamma=0.8)


def _trained(backend="compiled", epochs=2):
    net = shared_net(backend, lr=_schedule(), seed=4)
    net.fit(DATA, epochs=epochs, batch_size=16, validation=VAL, progress=False)
    return net


def _bits(a: np.ndarray) -> bytes:
    return a.dtype.str.encode() + repr(a.shape).encode() + a.tobytes()


def _assert_same_program(a, b) -> None:
    assert a.param_names == b.param_names
    assert {k: _bits(v) for k, v in a.params.items()} == {k: _bits(v) for k, v in b.params.items()}
    assert {k: _bits(v) for k, v in a.state.items()} == {k: _bits(v) for k, v in b.state.items()}
    assert a.arena.data.tobytes() == b.arena.data.tobytes()
    assert (a.step_count, a.epoch, a.seed, a.dtype) == (b.step_count, b.epoch, b.seed, b.dtype)
    assert to_config(a.optimizer) == to_config(b.optimizer)
    assert (a.weight_decay, a.clip_norm, a.loss_name) == (b.weight_decay, b.clip_norm,
                                                          b.loss_name)
    assert a.update_attrs == b.update_attrs


@pytest.mark.parametrize("backend", BACKENDS)
def test_round_trip_is_bit_exact(tmp_path, backend):
    net = _trained(backend)
    # Values that only a bit-exact format keeps: -0.0, a subnormal, the largest double.
    b = net.params["fc2/b"]
    b[:3] = [-0.0, 5e-324, np.finfo(np.float64).max]
    net.set_params({"fc2/b": b})
    path = tmp_path / "net.gcm"
    net.save(path)
    loaded = gc.load(path, backend=backend)
    assert loaded.backend == backend
    _assert_same_program(net, loaded)
    assert np.signbit(loaded.params["fc2/b"][0])
    np.testing.assert_array_equal(loaded.predict(VAL["x"]), net.predict(VAL["x"]))
    assert loaded.evaluate(VAL) == net.evaluate(VAL)
    # Saving the loaded program writes the same arrays and metadata again.
    loaded.save(tmp_path / "again.gcm")
    again = gc.load(tmp_path / "again.gcm", backend="reference")
    _assert_same_program(net, again)


def test_round_trip_float32_and_across_backends(tmp_path):
    x = gc.input("x", (None, 4))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 6, activation="prelu", name="h")
    logits = gc.dense(h, 3, name="o")
    net = gc.compile(loss=gc.softmax_cross_entropy(logits, y), outputs={"logits": logits},
                     optimizer=gc.optim.RMSprop(lr=gc.optim.CosineLR(0.01, t_max=5),
                                                momentum=0.3, centered=True),
                     weight_decay=1e-3, clip_norm=1.0, dtype="float32", backend="reference")
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((32, 4)), "y": rng.integers(0, 3, 32)}
    net.fit(feeds, epochs=2, batch_size=8, progress=False)
    net.save(tmp_path / "f32.gcm")
    loaded = gc.load(tmp_path / "f32.gcm", backend="reference")
    _assert_same_program(net, loaded)
    assert loaded.params["h/alpha"].dtype == np.float32
    for p in (net, loaded):
        p.fit(feeds, epochs=1, batch_size=8, progress=False)
    _assert_same_program(net, loaded)


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_equals_uninterrupted_training(tmp_path, backend):
    """Adam with an exponential schedule, shuffled batches with the program's own seed and
    validation: 2 epochs, save, load, 2 more == 4 epochs straight, bit for bit."""
    straight = _trained(backend, epochs=4)

    first = _trained(backend, epochs=2)
    first.save(tmp_path / "half.gcm")
    del first
    resumed = gc.load(tmp_path / "half.gcm", backend=backend)
    assert (resumed.epoch, resumed.step_count) == (2, 8)
    assert resumed.lr() == pytest.approx(0.02 * 0.8 ** 2)
    hist = resumed.fit(DATA, epochs=2, batch_size=16, validation=VAL, progress=False)
    assert hist.epochs == [2, 3]
    _assert_same_program(straight, resumed)

    # The per-epoch losses of the second half are those of the straight run too.
    again = _trained(backend, epochs=2)
    rest = again.fit(DATA, epochs=2, batch_size=16, validation=VAL, progress=False)
    assert rest.loss == hist.loss and rest.val_loss == hist.val_loss


# --- corrupted files -----------------------------------------------------------------------

def _payload_sha256(header: dict) -> str:
    """As documented in graphc/io.py: sha256 of the canonical JSON without that field."""
    body = {k: v for k, v in header.items() if k != "payload_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _npy(arr: np.ndarray, allow_pickle: bool = False) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def _rewrite(path: Path, header_fn=None, member_fn=None, recompute=True, drop=()) -> None:
    """Rewrite a .gcm: edit the parsed header and/or members, optionally re-sign the header
    (so that the check under test is not just the payload checksum)."""
    with zipfile.ZipFile(path) as zf:
        members = {i.filename: zf.read(i) for i in zf.infolist()}
    header = json.loads(members["model.json"])
    if header_fn:
        header_fn(header)
    for name in drop:
        members.pop(header["arrays"].pop(name)["member"])
    if member_fn:
        member_fn(header, members)
    if recompute:
        header["payload_sha256"] = _payload_sha256(header)
    members["model.json"] = json.dumps(header, separators=(",", ":")).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("model.json", members.pop("model.json"))
        for name, data in members.items():
            zf.writestr(name, data)


class _Evil:
    """Unpickling this creates a file: proof that a loader unpickled."""

    path = ""

    def __reduce__(self):
        return builtins.open, (self.path, "w")


def _truncated(p, sentinel):
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def _random_bytes(p, sentinel):
    p.write_bytes(np.random.default_rng(0).integers(0, 256, p.stat().st_size, np.uint8).tobytes())


def _empty(p, sentinel):
    p.write_bytes(b"")


def _wrong_version(p, sentinel):
    _rewrite(p, lambda h: h.update(schema_version=99))


def _wrong_format(p, sentinel):
    _rewrite(p, lambda h: h.update(format="keras-model"))


def _tampered_shape_header(p, sentinel):
    # (8, 6) -> (6, 8): same byte count, re-signed header; the stored .npy still says (8, 6).
    _rewrite(p, lambda h: h["arrays"]["fc2/W"].update(shape=[6, 8]))


def _tampered_shape_consistent(p, sentinel):
    # A self-consistent file whose array no longer fits the graph (checked by gc.load).
    def member(h, m):
        arr = np.zeros((6, 8))
        e = h["arrays"]["fc2/W"]
        e["shape"] = [6, 8]
        e["sha256"] = hashlib.sha256(arr.tobytes()).hexdigest()
        m[e["member"]] = _npy(arr)
    _rewrite(p, member_fn=member)


def _array_checksum_mismatch(p, sentinel):
    def member(h, m):
        e = h["arrays"]["fc1/W"]
        data = bytearray(m[e["member"]])
        data[-1] ^= 0x01  # one flipped bit in the last float
        m[e["member"]] = bytes(data)
    _rewrite(p, member_fn=member)


def _header_checksum_mismatch(p, sentinel):
    _rewrite(p, lambda h: h["meta"].update(step_count=0), recompute=False)


def _state_checksum_mismatch(p, sentinel):
    def member(h, m):
        e = h["arrays"]["fc1/b:exp_avg_sq"]
        arr = np.ones(e["shape"])  # well-formed .npy, wrong contents
        m[e["member"]] = _npy(arr)
    _rewrite(p, member_fn=member)


def _pickle_member(p, sentinel):
    _Evil.path = str(sentinel)

    def member(h, m):
        # Padded to the member's true size (unpickling stops at STOP), so that the size
        # check passes and the .npy parser is what meets the pickle.
        name = h["arrays"]["fc1/W"]["member"]
        payload = pickle.dumps(_Evil())
        m[name] = payload + b"\0" * (len(m[name]) - len(payload))
    _rewrite(p, member_fn=member)


def _pickled_object_npy(p, sentinel):
    _Evil.path = str(sentinel)

    def member(h, m):
        arr = np.empty(1, dtype=object)
        arr[0] = _Evil()
        m[h["arrays"]["fc1/b"]["member"]] = _npy(arr, allow_pickle=True)
    _rewrite(p, member_fn=member)


def _object_dtype_declared(p, sentinel):
    _Evil.path = str(sentinel)

    def member(h, m):
        arr = np.empty(8, dtype=object)
        arr[:] = [_Evil()] * 8
        e = h["arrays"]["fc1/b"]
        e["dtype"] = "object"
        m[e["member"]] = _npy(arr, allow_pickle=True)
    _rewrite(p, member_fn=member)


def _missing_state_array(p, sentinel):
    _rewrite(p, drop=["fc1/W:exp_avg"])


def _not_a_program(p, sentinel):
    save_model(p, {"kind": "something-else"}, {"a": np.zeros(3)})


def _bad_optimizer(p, sentinel):
    _rewrite(p, lambda h: h["meta"].update(optimizer={"class": "Adagrad", "args": {}}))


def _bad_graph(p, sentinel):
    _rewrite(p, lambda h: h["meta"].update(graph={"nodes": "nonsense"}))


def _wrong_dtype(p, sentinel):
    # float32 arrays in a float64 program (file self-consistent).
    def member(h, m):
        for e in h["arrays"].values():
            arr = np.zeros(e["shape"], np.float32)
            e["dtype"] = "float32"
            e["sha256"] = hashlib.sha256(arr.tobytes()).hexdigest()
            m[e["member"]] = _npy(arr)
    _rewrite(p, member_fn=member)


CORRUPTIONS = {
    "truncated": (_truncated, "truncated|not a valid"),
    "random_bytes": (_random_bytes, "not a valid|zip"),
    "empty": (_empty, "truncated|not a valid|empty"),
    "wrong_version": (_wrong_version, "schema_version.*99"),
    "wrong_format": (_wrong_format, "format"),
    "tampered_shape_header": (_tampered_shape_header, "shape"),
    "tampered_shape_consistent": (_tampered_shape_consistent, r"fc2/W.*\[6, 8\].*\[8, 6\]"),
    "array_checksum_mismatch": (_array_checksum_mismatch, "fc1/W.*checksum mismatch"),
    "header_checksum_mismatch": (_header_checksum_mismatch, "payload checksum mismatch"),
    "state_checksum_mismatch": (_state_checksum_mismatch, "fc1/b:exp_avg_sq.*checksum"),
    "pickle_member": (_pickle_member, r"fc1/W.*not a \.npy array.*a pickle"),
    "pickled_object_npy": (_pickled_object_npy, "object"),
    "object_dtype_declared": (_object_dtype_declared, "object"),
    "missing_state_array": (_missing_state_array, r"missing \['fc1/W:exp_avg'\]"),
    "not_a_program": (_not_a_program, "not a graphc program"),
    "bad_optimizer": (_bad_optimizer, "invalid (program description|optimizer)|Adagrad"),
    "bad_graph": (_bad_graph, "invalid (program description|graph)"),
    "wrong_dtype": (_wrong_dtype, "float32.*needs float64"),
}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("good") / "net.gcm"
    _trained("reference").save(path)
    return path.read_bytes()


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupt_program_file_raises_model_file_error(tmp_path, saved, case):
    corrupt, pattern = CORRUPTIONS[case]
    path = tmp_path / "model.gcm"
    path.write_bytes(saved)
    gc.load(path, backend="reference")  # the pristine file loads
    sentinel = tmp_path / "unpickled"
    corrupt(path, sentinel)
    with pytest.raises(gc.ModelFileError, match=pattern) as info:
        gc.load(path)
    assert str(path) in str(info.value) or path.name in str(info.value)
    assert not sentinel.exists(), "the loader unpickled something"
    assert isinstance(info.value, gc.GraphcError)


def test_saving_over_a_model_replaces_it_and_a_failed_save_keeps_it(tmp_path):
    path = tmp_path / "net.gcm"
    net = shared_net("reference")
    net.save(path)
    first = path.read_bytes()
    net.fit(DATA, epochs=1, batch_size=16, progress=False)
    net.save(path)
    assert path.read_bytes() != first
    assert gc.load(path, backend="reference").step_count == net.step_count
    # A save that fails (the directory is gone) raises ModelFileError and leaves no file.
    with pytest.raises(gc.ModelFileError, match="cannot save"):
        net.save(tmp_path / "missing" / "net.gcm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net.gcm"]


def test_a_loaded_program_keeps_its_optimizer_and_schedule(tmp_path):
    net = shared_net("reference", lr=gc.optim.StepLR(0.02, step_size=2, gamma=0.1))
    net.save(tmp_path / "s.gcm")
    loaded = gc.load(tmp_path / "s.gcm", backend="reference")
    assert isinstance(loaded.optimizer, gc.optim.Adam)
    assert loaded.optimizer.lr == gc.optim.StepLR(0.02, step_size=2, gamma=0.1)
    assert loaded.optimizer.betas == shared_adam().betas
    loaded.epoch = 2
    assert loaded.lr() == pytest.approx(0.002)
