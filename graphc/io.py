"""The ``.gcm`` model file: save and load a model's metadata and arrays.

Layout
------
A ``.gcm`` file is a zip archive (ZIP_DEFLATED) with exactly these members::

    model.json        UTF-8 JSON header (see below), always the first member
    arrays/0.npy      one .npy file (format 1.0/2.0, C order, little-endian) per array,
    arrays/1.npy      numbered in the order of the header's "arrays" object
    ...

``model.json``::

    {"format": "graphc-model",
     "schema_version": 1,
     "meta": {...},                       # the caller's JSON-able dict
     "arrays": {"fc1/W": {"member": "arrays/0.npy", "shape": [784, 128],
                          "dtype": "float32", "sha256": "<hex of raw C-order bytes>"},
                ...},
     "payload_sha256": "<hex>"}

``payload_sha256`` is the sha256 of the canonical JSON (sorted keys, no spaces) of
the header without that field. Since the header holds every array's shape, dtype
and sha256, it covers the metadata and, transitively, every byte of every array.

Security model
--------------
A model file is untrusted input. :func:`load_model` never unpickles (object dtypes
are refused, ``.npy`` headers are parsed with ``allow_pickle`` off), checks every
size it is told before it reads, reads with bounded reads so that a member larger
than it claims cannot grow memory, and only returns once every check has passed.
The checksums detect corruption, not a forger who recomputes them.
"""

from __future__ import annotations

import collections
import hashlib
import io
import json
import math
import os
import re
import struct
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from graphc.errors import ModelFileError

__all__ = ["FORMAT", "SCHEMA_VERSION", "save_model", "load_model"]

FORMAT = "graphc-model"
SCHEMA_VERSION = 1

HEADER_MEMBER = "model.json"
DEFAULT_MAX_JSON_BYTES = 16 * 1024 * 1024

# Dtypes a model can hold. Everything else (object, structured, strings,
# datetimes) is refused: object arrays would need pickle, and the rest has no use
# in a model and widens the attack surface of the .npy header parser.
_DTYPES = frozenset(
    [
        "bool",
        "int8", "int16", "int32", "int64",
        "uint8", "uint16", "uint32", "uint64",
        "float16", "float32", "float64",
        "complex64", "complex128",
    ]
)  # fmt: skip

# Bounds that make a hostile header harmless: no real model has an array of more
# than 32 dims or 2**40 elements, and our own .npy headers are a few hundred bytes.
_MAX_NDIM = 32
_MAX_ELEMENTS = 2**40
_MAX_NPY_HEADER = 4096
_NPY_MAGIC = b"\x93NUMPY"
_MEMBER_RE = re.compile(r"arrays/(0|[1-9][0-9]{0,8})\.npy")
_HEX64_RE = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20  # bounded reads/writes: peak memory ~ model size + 1 MiB
_EOCD = struct.Struct("<4s4H2LH")  # zip end-of-central-directory record, 22 bytes
_EOCD_SIG = b"PK\x05\x06"


# ---------------------------------------------------------------------------- save


def save_model(path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict[str, Any]) -> None:
    """Write ``meta`` and ``arrays`` to the ``.gcm`` file ``path``, atomically.

    ``meta`` must be JSON-serialisable (strict JSON: no NaN/inf; tuples come back as
    lists). ``arrays`` maps names to arrays of a numeric or bool dtype; they are
    stored C-ordered and little-endian, so they load back bit-exactly (same dtype,
    shape and bytes, NaN payloads and -0.0 included). Object arrays are refused.

    The file is written to a temporary file in the same directory, flushed and
    fsynced, then renamed over ``path`` and the directory fsynced: a crash at any
    point leaves either the previous file or the new one, never a mix.
    """
    path = Path(path)
    if not isinstance(meta, dict):
        raise ModelFileError(f"cannot save {path}: meta must be a dict, got {type(meta).__name__}")
    if not isinstance(arrays, dict):
        raise ModelFileError(f"cannot save {path}: arrays must be a dict, got {type(arrays).__name__}")

    prepared: list[tuple[str, np.ndarray]] = []
    entries: dict[str, dict[str, Any]] = {}
    for i, (name, value) in enumerate(arrays.items()):
        if not isinstance(name, str) or not name:
            raise ModelFileError(f"cannot save {path}: array names must be non-empty strings, got {name!r}")
        arr = _prepare_array(path, name, value)
        member = f"arrays/{i}.npy"
        prepared.append((member, arr))
        entries[name] = {
            "member": member,
            "shape": list(arr.shape),
            "dtype": arr.dtype.name,
            "sha256": _sha256_array(arr),
        }

    header: dict[str, Any] = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "meta": meta,
        "arrays": entries,
    }
    try:
        header["payload_sha256"] = _payload_sha256(header)
        header_bytes = json.dumps(header, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8"
        )
    except (TypeError, ValueError, UnicodeError) as e:
        raise ModelFileError(f"cannot save {path}: meta is not JSON-serialisable: {e}") from None

    _atomic_write(path, lambda f: _write_zip(f, header_bytes, prepared))


def _prepare_array(path: Path, name: str, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.hasobject:
        raise ModelFileError(
            f"cannot save {path}: array {name!r} has dtype object; object arrays would need "
            "pickle and are refused"
        )
    if arr.dtype.name not in _DTYPES or arr.dtype.fields is not None:
        raise ModelFileError(
            f"cannot save {path}: array {name!r} has unsupported dtype {arr.dtype}; "
            f"supported: {', '.join(sorted(_DTYPES))}"
        )
    if arr.ndim > _MAX_NDIM:
        raise ModelFileError(f"cannot save {path}: array {name!r} has {arr.ndim} dims (max {_MAX_NDIM})")
    # Little-endian C order is the on-disk layout the checksum is defined over.
    le = arr.dtype.newbyteorder("<")
    # (np.asarray, not np.ascontiguousarray, which turns 0-d scalars into 1-d.)
    return np.asarray(arr, dtype=le, order="C")


def _write_zip(f: BinaryIO, header_bytes: bytes, prepared: list[tuple[str, np.ndarray]]) -> None:
    # compresslevel 1: float weights barely compress at any level, and level 1 is
    # several times faster than the default on a large model.
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr(HEADER_MEMBER, header_bytes)
        for member, arr in prepared:
            # force_zip64 must be decided before writing when the size may pass 4 GiB.
            with zf.open(member, "w", force_zip64=arr.nbytes > (1 << 31)) as out:
                np.lib.format.write_array(out, arr, allow_pickle=False)


def _atomic_write(path: Path, write: Any) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ModelFileError(f"cannot save {path}: it is a directory")
    try:
        # The temp name is hidden and does not end in .gcm, so a leftover from a
        # killed save is never picked up as a model.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise ModelFileError(f"cannot save {path}: {_os_problem(e, directory)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; keep the mode of the file being replaced, else 0644.
        try:
            mode = path.stat().st_mode & 0o777
        except OSError:
            mode = 0o644
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise ModelFileError(f"cannot save {path}: {_os_problem(e, directory)}") from None
        raise
    _fsync_dir(directory)


def _os_problem(e: OSError, directory: Path) -> str:
    # e.filename would be the hidden temp file, which the user never named.
    if not directory.is_dir():
        return f"directory {directory} does not exist"
    return f"{e.strerror or e} (writing a temporary file in {directory})"


def _fsync_dir(directory: Path) -> None:
    # Makes the rename itself durable. Not possible on Windows; harmless to skip.
    try:
        dfd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def _sha256_array(arr: np.ndarray) -> str:
    # reshape(-1) of a C-contiguous array is a view; .view(uint8) exposes its bytes.
    return hashlib.sha256(arr.reshape(-1).view(np.uint8)).hexdigest()


def _payload_sha256(header: dict[str, Any]) -> str:
    body = {k: v for k, v in header.items() if k != "payload_sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- load


def load_model(
    path: str | os.PathLike[str], max_json_bytes: int = DEFAULT_MAX_JSON_BYTES
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Read a ``.gcm`` file written by :func:`save_model`; return ``(meta, arrays)``.

    Every check (container, header, versions, member names, sizes, shapes, dtypes,
    checksums) passes before anything is returned; any failure raises
    :class:`~graphc.errors.ModelFileError` naming the file and the problem.
    """
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist")
    if path.is_dir():
        raise ModelFileError(f"model file {path} is a directory, not a file")
    try:
        with open(path, "rb") as f:
            return _load(path, f, max_json_bytes)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as e:
        # zipfile reports CRC errors, bad local headers and truncated streams this way.
        raise ModelFileError(f"model file {path} is corrupt: {e}") from None


def _load(path: Path, f: BinaryIO, max_json_bytes: int) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    def fail(problem: str) -> ModelFileError:
        return ModelFileError(f"model file {path}: {problem}")

    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise fail("the file is empty (0 bytes)")
    _check_zip_end(f, size, fail)
    f.seek(0)
    try:
        zf = zipfile.ZipFile(f)
    except zipfile.BadZipFile as e:
        raise fail(f"not a valid zip archive ({e}); the file is truncated or corrupt") from None

    with zf:
        infos = zf.infolist()
        _check_member_names(infos, fail)
        by_name = {i.filename: i for i in infos}
        if infos and infos[0].header_offset != 0:
            raise fail(f"{infos[0].header_offset} unexpected bytes before the zip archive")

        header = _read_header(zf, by_name, max_json_bytes, fail)
        entries = _check_header(header, fail)

        expected = {HEADER_MEMBER} | {e["member"] for e in entries.values()}
        missing = sorted(expected - by_name.keys())
        extra = sorted(by_name.keys() - expected)
        if missing:
            raise fail(f"missing member(s) {missing}")
        if extra:
            raise fail(f"unexpected extra member(s) {extra}; a .gcm file holds only {sorted(expected)}")

        # Refuse every oversized or undersized member before decompressing any of
        # them: a zip bomb is stopped by its declared size, for free.
        for name, e in entries.items():
            _check_member_size(by_name[e["member"]], name, e, fail)

        arrays = {name: _read_array(zf, by_name[e["member"]], name, e, fail) for name, e in entries.items()}
    return header["meta"], arrays


def _check_zip_end(f: BinaryIO, size: int, fail: Any) -> None:
    """Require the file to end exactly with a comment-less end-of-central-directory record.

    zipfile accepts trailing bytes (it searches for the record), so without this a
    file with garbage appended would load silently.
    """
    tail_len = min(size, 65536 + _EOCD.size)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    if len(tail) >= _EOCD.size and tail[-_EOCD.size :][:4] == _EOCD_SIG:
        comment_len = _EOCD.unpack(tail[-_EOCD.size :])[-1]
        if comment_len == 0:
            return
    pos = tail.rfind(_EOCD_SIG)
    while pos >= 0:
        # A plausible record (its comment fits in the file) means data was appended.
        if pos + _EOCD.size <= len(tail):
            comment_len = _EOCD.unpack(tail[pos : pos + _EOCD.size])[-1]
            end = size - tail_len + pos + _EOCD.size + comment_len
            if end == size:
                raise fail("the zip archive has a comment; .gcm files have none")
            if end < size:
                raise fail(
                    f"{size - end} trailing byte(s) after the end of the zip archive "
                    "(appended garbage or a concatenated file)"
                )
        pos = tail.rfind(_EOCD_SIG, 0, pos)
    raise fail(
        f"not a valid .gcm file: no zip end record in its {size} bytes "
        "(the file is truncated, or it is not a zip archive)"
    )


def _check_member_names(infos: list[zipfile.ZipInfo], fail: Any) -> None:
    counts = collections.Counter(i.filename for i in infos)
    dups = sorted(n for n, c in counts.items() if c > 1)
    if dups:
        raise fail(f"duplicate member name(s) {dups}")
    for info in infos:
        name = info.filename
        parts = name.replace("\\", "/").split("/")
        if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
            raise fail(f"member {name!r} has an absolute path")
        if ".." in parts or "\\" in name:
            raise fail(f"member {name!r} has an unsafe path ('..' or backslash)")
        if info.flag_bits & 0x1:
            raise fail(f"member {name!r} is encrypted")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise fail(f"member {name!r} uses unsupported compression method {info.compress_type}")


def _read_header(
    zf: zipfile.ZipFile, by_name: dict[str, zipfile.ZipInfo], max_json_bytes: int, fail: Any
) -> Any:
    info = by_name.get(HEADER_MEMBER)
    if info is None:
        raise fail(f"missing member {HEADER_MEMBER!r}; not a graphc model file")
    if info.file_size > max_json_bytes:
        raise fail(
            f"{HEADER_MEMBER} declares {info.file_size} bytes, over the header size limit "
            f"of {max_json_bytes} bytes (max_json_bytes)"
        )
    with zf.open(info) as m:
        raw = m.read(max_json_bytes + 1)  # bounded even if the declared size lies
    if len(raw) > max_json_bytes:
        raise fail(f"{HEADER_MEMBER} is over the header size limit of {max_json_bytes} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(f"{HEADER_MEMBER} is not valid UTF-8 ({e})") from None
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except _DuplicateKey as e:
        raise fail(f"{HEADER_MEMBER} has duplicate key {e.args[0]!r} in one JSON object") from None
    except (ValueError, RecursionError) as e:
        raise fail(f"{HEADER_MEMBER} is not valid JSON ({e})") from None


class _DuplicateKey(Exception):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two readers could resolve a duplicate key differently; refuse it outright.
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def _check_header(header: Any, fail: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(header, dict):
        raise fail(f"{HEADER_MEMBER} must hold a JSON object, found {type(header).__name__}")
    fmt = header.get("format")
    if fmt != FORMAT:
        raise fail(f"wrong format: found {fmt!r}, supported {FORMAT!r}")
    version = header.get("schema_version")
    if version != SCHEMA_VERSION or isinstance(version, bool):
        raise fail(
            f"unsupported schema_version: found {version!r}, supported {SCHEMA_VERSION} "
            "(written by another graphc version?)"
        )
    keys = {"format", "schema_version", "meta", "arrays", "payload_sha256"}
    if set(header) != keys:
        raise fail(f"{HEADER_MEMBER} has keys {sorted(header)}, expected {sorted(keys)}")
    if not isinstance(header["meta"], dict):
        raise fail("'meta' must be a JSON object")
    entries = header["arrays"]
    if not isinstance(entries, dict):
        raise fail("'arrays' must be a JSON object")
    digest = header["payload_sha256"]
    if not isinstance(digest, str) or not _HEX64_RE.fullmatch(digest):
        raise fail(f"payload_sha256 is not a sha256 hex digest: {digest!r}")
    actual = _payload_sha256(header)
    if actual != digest:
        raise fail(
            f"payload checksum mismatch: header says payload_sha256 {digest}, content hashes "
            f"to {actual} (the header was modified or corrupted)"
        )

    members: set[str] = set()
    for name, e in entries.items():
        where = f"array {name!r}"
        if not isinstance(e, dict) or set(e) != {"member", "shape", "dtype", "sha256"}:
            raise fail(f"{where}: entry must have exactly member, shape, dtype, sha256")
        member = e["member"]
        if not isinstance(member, str) or not _MEMBER_RE.fullmatch(member):
            raise fail(f"{where}: bad member name {member!r} (expected arrays/<n>.npy)")
        if member in members:
            raise fail(f"{where}: member {member!r} used by two arrays")
        members.add(member)
        if not isinstance(e["dtype"], str) or e["dtype"] not in _DTYPES:
            what = "object arrays are refused" if e["dtype"] == "object" else "unsupported dtype"
            raise fail(f"{where}: {what}: {e['dtype']!r}")
        _check_shape(e["shape"], where, fail)
        if not isinstance(e["sha256"], str) or not _HEX64_RE.fullmatch(e["sha256"]):
            raise fail(f"{where}: sha256 is not a hex digest: {e['sha256']!r}")
    return entries


def _check_shape(shape: Any, where: str, fail: Any) -> None:
    if not isinstance(shape, list) or len(shape) > _MAX_NDIM:
        raise fail(f"{where}: shape must be a list of at most {_MAX_NDIM} dims, found {shape!r}")
    for d in shape:
        if not isinstance(d, int) or isinstance(d, bool) or d < 0:
            raise fail(f"{where}: shape {shape} has a negative or non-integer dim {d!r}")
    # Python ints do not overflow, so the product is exact; the limit stops a
    # header from making us plan for an absurd allocation.
    if math.prod(shape) > _MAX_ELEMENTS:
        raise fail(
            f"{where}: shape {shape} has {math.prod(shape)} elements, over the limit of "
            f"{_MAX_ELEMENTS} (overflowing or tampered shape)"
        )


def _check_member_size(info: zipfile.ZipInfo, name: str, e: dict[str, Any], fail: Any) -> None:
    nbytes = math.prod(e["shape"]) * np.dtype(e["dtype"]).itemsize
    lo, hi = nbytes + 10, nbytes + _MAX_NPY_HEADER  # 10 = smallest .npy preamble
    if info.file_size > hi:
        raise fail(
            f"array {name!r}: member {info.filename!r} declares {info.file_size} uncompressed "
            f"bytes but shape {e['shape']} x {e['dtype']} allows at most {hi}; refusing to "
            "decompress it (zip bomb or tampered shape)"
        )
    if info.file_size < lo:
        raise fail(
            f"array {name!r}: member {info.filename!r} holds {info.file_size} bytes, too few "
            f"for shape {e['shape']} x itemsize {np.dtype(e['dtype']).itemsize} = {nbytes} "
            "data bytes (shape x itemsize does not match the stored byte count)"
        )


def _read_exact(m: BinaryIO, n: int) -> bytes:
    data = m.read(n)
    if len(data) != n:
        raise EOFError(f"member ends after {len(data)} of {n} expected bytes")
    return data


def _read_array(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, name: str, e: dict[str, Any], fail: Any
) -> np.ndarray:
    where = f"array {name!r} ({info.filename})"
    declared_shape = tuple(e["shape"])
    declared_dtype = np.dtype(e["dtype"]).newbyteorder("<")
    with zf.open(info) as m:
        # Read the .npy preamble ourselves, with bounds, and let numpy parse only
        # the (small, bounded) header dict; never np.load with pickle.
        magic = m.read(8)
        if len(magic) != 8 or magic[:6] != _NPY_MAGIC:
            raise fail(f"{where} is not a .npy array (bad magic {magic[:6]!r}; a pickle?)")
        major = magic[6]
        if major == 1:
            len_bytes = _read_exact(m, 2)
            hlen = struct.unpack("<H", len_bytes)[0]
        elif major == 2:
            len_bytes = _read_exact(m, 4)
            hlen = struct.unpack("<I", len_bytes)[0]
        else:
            raise fail(f"{where}: unsupported .npy version {major}.{magic[7]}")
        if hlen > _MAX_NPY_HEADER:
            raise fail(f"{where}: .npy header of {hlen} bytes is over the {_MAX_NPY_HEADER} limit")
        hdr = _read_exact(m, hlen)
        reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        try:
            shape, fortran, dtype = reader(io.BytesIO(len_bytes + hdr))
        except (ValueError, SyntaxError, TypeError) as err:
            raise fail(f"{where}: bad .npy header ({err})") from None
        if dtype.hasobject:
            raise fail(f"{where}: stored array has dtype object (pickled data); refused")
        if dtype.str != declared_dtype.str:
            raise fail(f"{where}: stored dtype {dtype} does not match declared dtype {e['dtype']}")
        if tuple(shape) != declared_shape:
            raise fail(f"{where}: stored shape {tuple(shape)} does not match declared shape {declared_shape}")
        if fortran:
            raise fail(f"{where}: stored in Fortran order; .gcm arrays are C order")
        nbytes = math.prod(declared_shape) * dtype.itemsize
        stored = info.file_size - (8 + len(len_bytes) + hlen)
        if stored != nbytes:
            raise fail(
                f"{where}: stored byte count {stored} does not match shape "
                f"{list(declared_shape)} x itemsize {dtype.itemsize} = {nbytes} bytes"
            )
        arr = np.empty(declared_shape, dtype=dtype)
        buf = memoryview(arr.reshape(-1).view(np.uint8))
        pos = 0
        while pos < nbytes:
            # Chunked so no second full-size copy exists; zipfile stops at the
            # declared size, so a member that is secretly larger cannot grow memory.
            n = m.readinto(buf[pos : pos + _CHUNK])
            if not n:
                raise fail(f"{where}: truncated, {pos} of {nbytes} data bytes present")
            pos += n
        if m.read(1):
            raise fail(f"{where}: more data than shape {list(declared_shape)} allows")
    actual = _sha256_array(arr)
    if actual != e["sha256"]:
        raise fail(f"{where}: checksum mismatch: declared sha256 {e['sha256']}, data hashes to {actual}")
    return arr


# --- programs ---------------------------------------------------------------------------

PROGRAM_KIND = "graphc-program"


def save_program(program: Any, path: str | os.PathLike[str]) -> None:
    """Save a Program: its input graph, options, parameters, optimizer state and step."""
    with program._lock:  # one consistent snapshot, even while other threads train
        meta, arrays = _program_snapshot(program)
    save_model(path, meta, arrays)


def _program_snapshot(program: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from graphc.ir.printer import to_json_data
    from graphc.optim import to_config

    meta = {
        "kind": PROGRAM_KIND,
        "graph": to_json_data(program.eval_graph_user),
        "loss": program.loss_name,
        "optimizer": to_config(program.optimizer) if program.optimizer is not None else None,
        "weight_decay": program.weight_decay,
        "clip_norm": program.clip_norm,
        "dtype": program.dtype.name,
        "seed": program.seed,
        "step_count": program.step_count,
        "epoch": program.epoch,
    }
    arrays = {name: view.copy() for name, view in program.arena.views.items()}
    return meta, arrays


def graph_from_meta(meta: dict[str, Any], path: Any) -> Any:
    """The graph a model file describes, checked like the verifier checks a pass's output.

    The header's checksum only proves the file was not corrupted, not that its
    writer was honest or bug-free: a graph whose recorded shapes disagree with
    its ops' shape rules would make the generated code index past its buffers.
    Every node is re-derived from its inputs (and every leaf from its attributes)
    before the graph is used; any failure is a :class:`ModelFileError`.
    """
    from graphc.ir.printer import from_json
    from graphc.ir.verify import verify
    from graphc.ops import build_node

    if not isinstance(meta.get("graph"), dict):
        raise ModelFileError(f"{path}: the model file holds no graph (found "
                             f"{type(meta.get('graph')).__name__})")
    try:
        graph = from_json(meta["graph"])
        for n in graph.toposort():
            node = graph.node(n)
            if not graph.inputs(n):  # leaves: the recorded shape must be the attributes' one
                again = build_node(node.op, [], node.attr)
                if (again.shape, again.dtype) != (node.shape, node.dtype):
                    raise ModelFileError(f"node %{n} {node.op} records {node.shape} {node.dtype} "
                                         f"but its attributes give {again.shape} {again.dtype}")
        verify(graph, "loading")
    except ModelFileError as e:
        raise ModelFileError(f"{path}: invalid graph: {e}") from None
    except RecursionError:
        raise ModelFileError(f"{path}: invalid graph: nested too deeply") from None
    except Exception as e:  # noqa: BLE001 -- untrusted input: every failure is the file's
        raise ModelFileError(f"{path}: invalid graph ({type(e).__name__}: {e})") from None
    return graph


def _meta_field(meta: dict[str, Any], key: str, ok: Any, want: str, path: Any) -> Any:
    if key not in meta:
        raise ModelFileError(f"{path}: invalid program description: no {key!r}")
    value = meta[key]
    if not ok(value):
        raise ModelFileError(f"{path}: invalid program description: {key} must be {want}, "
                             f"found {value!r}")
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return (isinstance(v, int | float) and not isinstance(v, bool)) and math.isfinite(v)


def load_program(path: str | os.PathLike[str], backend: str = "compiled") -> Any:
    """Load a model saved by ``Program.save``; it resumes training exactly where it stopped."""
    from graphc.errors import GraphcError
    from graphc.optim import from_config
    from graphc.runtime.program import Program

    meta, arrays = load_model(path)
    p = Path(path)
    if meta.get("kind") != PROGRAM_KIND:
        raise ModelFileError(f"{p}: not a graphc program file (kind {meta.get('kind')!r}, "
                             f"expected {PROGRAM_KIND!r}); load_model reads any .gcm file")
    graph = graph_from_meta(meta, p)
    loss = _meta_field(meta, "loss", lambda v: v is None or v in graph.outputs,
                       f"null or one of the graph's outputs {sorted(graph.outputs)}", p)
    wd = _meta_field(meta, "weight_decay", lambda v: _is_real(v) and v >= 0,
                     "a number >= 0", p)
    clip = _meta_field(meta, "clip_norm", lambda v: v is None or (_is_real(v) and v > 0),
                       "null or a number > 0", p)
    dtype = _meta_field(meta, "dtype", lambda v: v in ("float32", "float64"),
                        "'float32' or 'float64'", p)
    seed = _meta_field(meta, "seed", _is_int, "an integer", p)
    steps = _meta_field(meta, "step_count", lambda v: _is_int(v) and v >= 0, "an integer >= 0", p)
    epoch = _meta_field(meta, "epoch", lambda v: _is_int(v) and v >= 0, "an integer >= 0", p)
    opt_cfg = _meta_field(meta, "optimizer", lambda v: v is None or isinstance(v, dict),
                          "null or an object", p)
    try:
        program = Program(
            graph, loss=loss, optimizer=from_config(opt_cfg) if opt_cfg else None,
            weight_decay=wd, clip_norm=clip, dtype=dtype, seed=seed, backend=backend)
    except GraphcError as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(f"{p}: invalid program description ({type(e).__name__}: {e})") from None
    expected = {n: v.shape for n, v in program.arena.views.items()}
    if set(arrays) != set(expected):
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        raise ModelFileError(f"{p}: arrays do not match the graph (missing {missing}, "
                             f"unexpected {extra})")
    for name, shape in expected.items():
        arr = arrays[name]
        if arr.shape != shape or arr.dtype != program.dtype:
            raise ModelFileError(f"{p}: array {name!r} is {arr.dtype}{list(arr.shape)}, the graph "
                                 f"needs {program.dtype}{list(shape)}")
        program.arena.views[name][...] = arr
    program.step_count = steps
    program.epoch = epoch
    return program
