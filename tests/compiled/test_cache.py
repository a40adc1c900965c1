"""The on-disk cache of generated modules (``graphc/codegen/cache.py``).

* A second process loads the module's native code from Numba's cache: its
  ``train_step`` dispatcher records a cache hit and no miss (``Dispatcher.stats``
  in Numba 0.68), and computes the same step.
* A corrupt or truncated ``g_<key>.py`` (or one holding other code) is
  detected by comparing it with the generated text, rewritten, and never run.
* Corrupt Numba index (``.nbi``) or data (``.nbc``) files -- random bytes,
  truncated, empty: Numba itself raises UnpicklingError/EOFError on them -- cost
  one warning and a recompile, and the next process hits the rewritten cache.
* An untrusted cache directory (read-only, owned by someone else, writable by
  group or others) compiles in memory with exactly one RuntimeWarning and
  writes nothing there.
* Eight processes compiling the same graph into one empty directory at the same
  moment all succeed, agree bit for bit, and leave one complete module.
* The key covers the generated source and every version the machine code depends
  on (graphc, numba, llvmlite, the CPU's name and features, the kernels' sources):
  changing any one gives the same graph a new module file.

Every test uses its own directory (``tmp_path``), never ``~/.cache``.
"""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import graphc as gc
from graphc.codegen import cache

CHILD = str(Path(__file__).with_name("cache_child.py"))


def child_env(cache_dir: Path) -> dict:
    """The environment of a child: ``cache_dir`` as the cache, and Numba's files next to
    the module (its default), even when the tests run with NUMBA_CACHE_DIR set."""
    env = {**os.environ, "GRAPHC_CACHE_DIR": str(cache_dir)}
    env.pop("NUMBA_CACHE_DIR", None)
    return env


def child(cache_dir: Path, timeout: float = 600) -> dict:
    """Run cache_child.py with ``cache_dir`` as the cache; its JSON report."""
    env = child_env(cache_dir)
    r = subprocess.run([sys.executable, CHILD], env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def native_files(d: Path, key: str, entry: str = "train_step") -> dict[str, Path]:
    files = sorted((d / "__pycache__").glob(f"g_{key}.{entry}-*"))
    return {"nbi": next(f for f in files if f.suffix == ".nbi"),
            "nbc": next(f for f in files if f.suffix == ".nbc")}


def same_result(a: dict, b: dict) -> None:
    assert a["loss"] == b["loss"]
    assert a["out"] == b["out"]
    assert a["params"] == b["params"]


@pytest.fixture(scope="module")
def warm_dir(tmp_path_factory):
    """A cache directory the child has compiled into once, and that first report."""
    d = tmp_path_factory.mktemp("graphc-cache") / "cache"
    first = child(d)
    assert first["misses"] == 1 and first["hits"] == 0 and first["on_disk"]
    assert first["warnings"] == []
    return d, first


def fresh_copy(warm_dir, tmp_path) -> tuple[Path, dict]:
    import shutil

    d, first = warm_dir
    copy = tmp_path / "cache"
    shutil.copytree(d, copy)
    os.chmod(copy, 0o700)
    return copy, first


def test_second_process_loads_without_recompiling(warm_dir):
    d, first = warm_dir
    second = child(d)
    assert second["hits"] == 1 and second["misses"] == 0
    assert second["warnings"] == []
    assert second["key"] == first["key"] and second["path"] == first["path"]
    same_result(first, second)
    assert Path(first["path"]).parent == d
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    # The index and data files of every entry that ran are there.
    assert set(native_files(d, first["key"])) == {"nbi", "nbc"}
    assert set(native_files(d, first["key"], "forward")) == {"nbi", "nbc"}


def test_kernels_that_cannot_be_registered_again_mean_a_recompile(warm_dir, tmp_path):
    """A cached entry point calls kernels by symbol; Numba's reload hook registers them
    before the machine code is linked (``kernels/extern.py``).  Were that to fail, an
    unresolved symbol would abort the process in the JIT linker, so the hook raises
    first, and the cache files are dropped and the module compiled afresh."""
    d, first = fresh_copy(warm_dir, tmp_path)
    code = ("import runpy\nimport graphc.kernels.extern as x\n"
            "def gone(*a):\n    raise RuntimeError('kernel gone')\n"
            f"x._reload = gone\nrunpy.run_path({CHILD!r}, run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", code], env=child_env(d), capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads(r.stdout.strip().splitlines()[-1])
    assert again["misses"] == 1 and again["hits"] == 0
    assert any("kernel gone" in w and "recompiled" in w for w in again["warnings"]), again
    same_result(first, again)


_FIT = f"""
import json, sys
sys.path.insert(0, {str(Path(CHILD).parent)!r})
import cache_child as c
net = c.build()
if sys.argv[1] == "fit":
    net.fit(c.feeds(), epochs=2, batch_size=4)
else:
    net.step(c.feeds())
print(json.dumps({{k: v.tolist() for k, v in net.params.items()}}))
"""


def test_fit_first_in_a_process_after_fit_was_cached_beside_a_cached_step(tmp_path):
    """Found in review: ``train_step`` loaded from the cache and linked into a freshly
    compiled ``fit_loop`` left ``fit_loop`` cached without the hooks that register the
    kernels, and the next process calling ``fit`` first died in the JIT linker
    (SIGSEGV).  ``fit_loop`` now calls ``train_step`` by symbol."""
    env = child_env(tmp_path / "cache")

    def run(mode: str) -> dict:
        r = subprocess.run([sys.executable, "-c", _FIT, mode], env=env, capture_output=True,
                           text=True, timeout=600)
        assert r.returncode == 0, (mode, r.returncode, r.stderr[-3000:])
        return json.loads(r.stdout.strip().splitlines()[-1])

    run("step")  # caches train_step (and forward) only
    compiled_fit = run("fit")  # fit_loop compiled here, train_step from the cache
    assert run("fit") == compiled_fit  # fit_loop and everything it calls from the cache


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty", "other code"])
def test_damaged_module_file_is_rewritten_and_never_run(warm_dir, tmp_path, damage):
    d, first = fresh_copy(warm_dir, tmp_path)
    path = d / Path(first["path"]).name
    text = path.read_text()
    marker = tmp_path / "stale-code-ran"
    path.write_bytes({
        "truncated": text[: len(text) // 2].encode(),
        "garbage": os.urandom(3000),
        "empty": b"",
        "other code": (text + f"\nopen({str(marker)!r}, 'w').close()\n").encode(),
    }[damage])
    again = child(d)
    assert path.read_text() == text, "the module file was not restored"
    assert not marker.exists(), "a cached module that differs from the generated text ran"
    same_result(first, again)
    assert again["warnings"] == []
    # Numba 0.68 stamps its cache with a hash of the module's text, so the native code
    # cached for the restored text is still valid and is reused.
    assert again["hits"] == 1 and again["misses"] == 0


@pytest.mark.parametrize("which,damage", [("nbi", "garbage"), ("nbi", "empty"),
                                          ("nbc", "truncated"), ("nbc", "garbage")])
def test_damaged_numba_cache_files_are_recompiled(warm_dir, tmp_path, which, damage):
    d, first = fresh_copy(warm_dir, tmp_path)
    f = native_files(d, first["key"])[which]
    data = f.read_bytes()
    f.write_bytes({"garbage": os.urandom(len(data)), "truncated": data[: len(data) // 3],
                   "empty": b""}[damage])
    again = child(d)
    same_result(first, again)
    assert again["misses"] == 1 and again["hits"] == 0
    assert len(again["warnings"]) == 1
    assert "unreadable Numba cache files" in again["warnings"][0]
    assert "recompiled" in again["warnings"][0]
    after = child(d)
    assert after["hits"] == 1 and after["misses"] == 0 and after["warnings"] == []
    same_result(first, after)


# --- untrusted directories: compile in memory, one warning ---------------------------------

def small_function(units: int):
    """A forward-only function; ``units`` makes each test's graph (and key) its own: a
    module already imported with the same source is reused without touching the cache
    directory, so two tests sharing a width would see each other's.  In use: 2, 3, 4,
    9 and 30-32 (untrusted directories), 21 and 22 (keys)."""
    x = gc.input("x", (None, 3))
    return gc.function([x], [gc.dense(x, units, activation="tanh", name="fc")],
                       dtype="float64")


def compile_in(d: Path, units: int, monkeypatch) -> tuple[list, list]:
    """Build and call the function twice with cache dir ``d``: (graphc warnings, impls)."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(d))
    impls = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            f = small_function(units)
            out = f(np.ones((2, 3)))[0]
            assert out.shape == (2, units) and np.isfinite(out).all()
            impls.append(f.program._impl)
    msgs = [str(w.message) for w in caught
            if issubclass(w.category, RuntimeWarning) and str(w.message).startswith("graphc")]
    return msgs, impls


def assert_in_memory(d: Path, impls) -> None:
    for impl in impls:
        assert not impl.on_disk
        assert d not in impl.path.parents
        assert "cache=True" not in impl.module.__graphc_source__
    assert not list(d.glob("g_*.py")) and not (d / "__pycache__").exists()


def test_read_only_directory(tmp_path, monkeypatch):
    d = tmp_path / "ro"
    d.mkdir(mode=0o700)
    d.chmod(0o500)
    if os.geteuid() == 0:  # root writes anyway: answer as the kernel would for a user
        real = os.access
        monkeypatch.setattr(os, "access",
                            lambda p, mode, **kw: False if Path(p) == d and mode & os.W_OK
                            else real(p, mode, **kw))
    try:
        msgs, impls = compile_in(d, 2, monkeypatch)
    finally:
        d.chmod(0o700)
    assert len(msgs) == 1 and "read-only" in msgs[0] and str(d) in msgs[0], msgs
    assert_in_memory(d, impls)


def test_directory_that_cannot_be_written(tmp_path, monkeypatch):
    """Looks writable, but writing fails (a read-only mount, a full disk)."""
    d = tmp_path / "rofs"
    d.mkdir(mode=0o700)
    real = cache._atomic_write

    def atomic_write(path, text):
        if Path(path).parent == d:
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real(path, text)

    monkeypatch.setattr(cache, "_atomic_write", atomic_write)
    msgs, impls = compile_in(d, 3, monkeypatch)
    assert len(msgs) == 1 and "cannot write" in msgs[0] and "Read-only file system" in msgs[0]
    assert_in_memory(d, impls)


def test_directory_owned_by_someone_else(tmp_path, monkeypatch):
    d = tmp_path / "theirs"
    d.mkdir(mode=0o700)
    uid = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: uid + 1)
    msgs, impls = compile_in(d, 4, monkeypatch)
    assert len(msgs) == 1 and "not owned by you" in msgs[0] and str(d) in msgs[0], msgs
    assert_in_memory(d, impls)


@pytest.mark.parametrize("mode,who", [(0o777, "its group and others"), (0o770, "its group"),
                                      (0o702, "others")])
def test_directory_writable_by_others(tmp_path, monkeypatch, mode, who):
    d = tmp_path / "shared"
    d.mkdir()
    d.chmod(mode)
    msgs, impls = compile_in(d, {0o777: 30, 0o770: 31, 0o702: 32}[mode], monkeypatch)
    assert len(msgs) == 1, msgs
    assert f"writable by {who}" in msgs[0] and str(d) in msgs[0] and "chmod 700" in msgs[0]
    assert_in_memory(d, impls)


def test_missing_directory_is_created_private(tmp_path, monkeypatch):
    d = tmp_path / "a" / "b" / "cache"
    msgs, impls = compile_in(d, 9, monkeypatch)
    assert msgs == []
    assert stat.S_IMODE(d.stat().st_mode) == 0o700
    assert all(impl.on_disk and impl.path.parent == d for impl in impls)
    assert impls[0].path.read_text() == impls[0].source


# --- many processes at once -----------------------------------------------------------------

def test_eight_processes_compile_into_one_empty_directory(tmp_path):
    d = tmp_path / "cache"
    go = tmp_path / "go"
    env = child_env(d)
    procs = [subprocess.Popen([sys.executable, CHILD, str(go)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(8)]
    try:
        for p in procs:  # every one has imported graphc and waits
            assert p.stdout.readline().strip() == "ready"
        go.touch()
        results = []
        for p in procs:
            out, err = p.communicate(timeout=900)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r in results[1:]:
        same_result(results[0], r)
        assert r["key"] == results[0]["key"] and r["path"] == results[0]["path"]
    assert all(r["on_disk"] and r["warnings"] == [] for r in results)
    modules = list(d.glob("g_*.py"))
    assert [m.name for m in modules] == [Path(results[0]["path"]).name]
    assert not [f for f in d.iterdir() if f.name.endswith(".tmp")], "a temp file was left"
    # The module is complete: a ninth process reads it and Numba's cache.
    late = child(d)
    same_result(results[0], late)
    assert late["hits"] == 1 and late["misses"] == 0 and late["warnings"] == []


@pytest.mark.parametrize("part", ["graphc", "numba", "llvmlite", "cpu name", "cpu features",
                                  "kernel sources"])
def test_every_version_the_machine_code_depends_on_is_in_the_key(tmp_path, monkeypatch, part):
    """A module cached under one numba/llvmlite/CPU/kernel version is never served to
    another: each enters the key, so the same graph gets a new module file (compiled
    afresh at its first call) instead of the old one's machine code."""
    import graphc.kernels
    import llvmlite
    import llvmlite.binding as llvm
    import numba

    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    before = small_function(21).program._impl
    other = {
        "graphc": (gc, "__version__", "0.0.0+other"),
        "numba": (numba, "__version__", "0.0.0+other"),
        "llvmlite": (llvmlite, "__version__", "0.0.0+other"),
        "cpu name": (llvm, "get_host_cpu_name", lambda: "other-cpu"),
        "cpu features": (llvm, "get_host_cpu_features",
                         lambda: type("F", (), {"flatten": lambda self: "+other"})()),
        "kernel sources": (graphc.kernels, "SOURCE_HASH", "0" * 64),
    }[part]
    monkeypatch.setattr(*other)
    after = small_function(21).program._impl
    assert after.key != before.key
    if part != "graphc":  # the version is also printed in the module's header
        assert after.source == before.source
    # (``before`` may be an earlier parametrization's module: same key, already imported.)
    assert after.on_disk and after.path == tmp_path / f"g_{after.key}.py"
    assert after.path.read_text(encoding="utf-8") == after.source


def test_the_key_covers_the_generated_source(tmp_path, monkeypatch):
    """A change of the generated code (here: numerics checks on) is a new key."""
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    x = gc.input("x", (None, 3))
    y = gc.dense(x, 22, activation="tanh", name="fc")
    plain = gc.function([x], [y], dtype="float64").program._impl
    checked = gc.function([x], [y], dtype="float64", check_numerics=True).program._impl
    assert plain.source != checked.source and plain.key != checked.key
