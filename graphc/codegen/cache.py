"""The on-disk cache of generated modules, and loading them so Numba's cache works.

Each module is written as ``g_<sha256>.py`` in the cache directory
(``$GRAPHC_CACHE_DIR`` or ``~/.cache/graphc``), atomically (temp file +
rename, so concurrent processes never see half a file), and registered in
``sys.modules`` before it runs, which is what lets ``@njit(cache=True)`` find
and reuse its compiled code in the next process.

Numba's cache files are pickles, so the directory is trusted only when it is
owned by this user and not writable by group or others (it is created 0700).
Otherwise -- or when writing to it fails, even if it looks writable (a read-only
file system, a full disk) -- graphc compiles in memory (a private temporary
directory, no Numba cache) and warns once.  A cached module whose text differs
from what graphc generates for the key is rewritten, never run.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
import stat
import sys
import tempfile
import threading
import warnings
from pathlib import Path
from types import ModuleType

from graphc.errors import CacheError

_lock = threading.Lock()
_warned: set[str] = set()
_mem_dir: Path | None = None


def cache_dir() -> Path:
    return Path(os.environ.get("GRAPHC_CACHE_DIR") or Path.home() / ".cache" / "graphc")


def _warn_once(msg: str) -> None:
    if msg not in _warned:
        _warned.add(msg)
        warnings.warn(msg, RuntimeWarning, stacklevel=4)


def warn_once(msg: str) -> None:
    """A RuntimeWarning, given once per process for each distinct message."""
    _warn_once(msg)


def purge_native(key: str, fn=None) -> int:
    """Delete Numba's cache files (index and data) of module ``g_<key>``; returns how many.

    They live in ``__pycache__`` next to the module, or wherever Numba's locator
    put them (``NUMBA_CACHE_DIR``, the user-wide cache): ``fn``'s cache says where.
    """
    dirs = {cache_dir() / "__pycache__"}
    path = getattr(getattr(fn, "_cache", None), "_cache_path", None)
    if path:
        dirs.add(Path(path))
    n = 0
    for d in dirs:
        if d.is_dir():
            for f in d.glob(f"g_{key}.*"):
                with contextlib.suppress(OSError):
                    f.unlink()
                    n += 1
    return n


def trusted_dir() -> Path | None:
    """The cache directory if it is safe and writable, else None (with one warning)."""
    d = cache_dir()
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = d.stat()
    except OSError as e:
        _warn_once(f"graphc: cache directory {d} unusable ({e}); compiling in memory")
        return None
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        _warn_once(f"graphc: cache directory {d} is not owned by you; compiling in memory")
        return None
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "its group and others" if st.st_mode & stat.S_IWGRP and st.st_mode & stat.S_IWOTH \
            else "its group" if st.st_mode & stat.S_IWGRP else "others"
        _warn_once(f"graphc: cache directory {d} is writable by {who} (mode "
                   f"{stat.S_IMODE(st.st_mode):#o}; Numba's cache files are pickles, so it must be "
                   "yours alone, e.g. chmod 700); compiling in memory")
        return None
    if not os.access(d, os.W_OK | os.X_OK):
        _warn_once(f"graphc: cache directory {d} is read-only; compiling in memory")
        return None
    return d


def _memory_dir() -> Path:
    global _mem_dir
    if _mem_dir is None:
        _mem_dir = Path(tempfile.mkdtemp(prefix="graphc-mem-"))
    return _mem_dir


def load(source: str, key: str) -> tuple[ModuleType, Path, bool]:
    """Import the module for ``key`` (writing it if needed): (module, path, on_disk)."""
    name = f"graphc_generated_{key[:24]}"
    with _lock:
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "__graphc_source__", None) == source:
            return mod, Path(mod.__file__), True
        d = trusted_dir()
        path = None
        if d is not None:
            try:
                path = _write(d, key, source)
            except OSError as e:  # a read-only file system, a full disk, permissions
                _warn_once(f"graphc: cannot write to cache directory {d} ({e.strerror or e}); "
                           "compiling in memory")
        on_disk = path is not None
        if path is None:
            source = source.replace("cache=True", "cache=False")
            try:
                path = _write(_memory_dir(), key, source)
            except OSError as e:
                raise CacheError(f"cannot write the generated module to a temporary "
                                 f"directory ({e})") from None
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        mod.__graphc_source__ = source
        sys.modules[name] = mod
        try:
            spec.loader.exec_module(mod)
        except BaseException:
            sys.modules.pop(name, None)
            raise
        return mod, path, on_disk


def _write(d: Path, key: str, source: str) -> Path:
    """``d/g_<key>.py`` holding exactly ``source`` (rewritten if it holds anything else)."""
    path = d / f"g_{key}.py"
    with _file_lock(d / f".g_{key}.lock"):
        if not _same(path, source):
            _atomic_write(path, source)
    return path


def _same(path: Path, source: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == source
    except (OSError, UnicodeDecodeError):
        return False


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive lock between processes writing the same module."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def entries() -> list[dict]:
    """What the cache holds: one record per generated module."""
    d = cache_dir()
    out = []
    if not d.is_dir():
        return out
    for p in sorted(d.glob("g_*.py")):
        key = p.stem[2:]
        numba_files = list((d / "__pycache__").glob(f"g_{key}.*")) if (d / "__pycache__").is_dir() else []
        size = p.stat().st_size + sum(f.stat().st_size for f in numba_files)
        out.append({"key": key, "path": str(p), "bytes": size, "native_files": len(numba_files),
                    "mtime": p.stat().st_mtime})
    return out


def clear() -> int:
    """Delete every cached module and its Numba files; returns how many modules."""
    d = cache_dir()
    n = 0
    for rec in entries():
        key = rec["key"]
        for f in [Path(rec["path"]), *d.glob(f".g_{key}.lock"),
                  *((d / "__pycache__").glob(f"g_{key}.*") if (d / "__pycache__").is_dir() else [])]:
            with contextlib.suppress(OSError):
                f.unlink()
        n += 1
    return n
