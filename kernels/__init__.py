"""The Numba kernels generated code calls (the only package that imports numba).

Numba invalidates a cached function only when its own source file changes, but
kernels inline helpers from other files (``mathfn``, ``_util``, ``blas``): after
an edit there, a caller's cached machine code would keep the old helper.  So
the package hashes all of its sources at import and, when the hash differs from
the one recorded beside Numba's cache files, drops those files first.
``SOURCE_HASH`` also enters the key of every generated module.

Debug mode (``GRAPHC_DEBUG=1`` when this package is first imported, ``DEBUG``):
every kernel and generated function is compiled with Numba's bounds checking,
into a Numba cache of its own.  Numba's cache index keys a function by its
bytecode, signature and CPU but not by its flags, so with one cache a kernel
compiled with ``boundscheck`` was served to normal runs (slow) and a normal one
to debug runs (which then checked nothing) -- both seen.  So debug mode points
``NUMBA_CACHE_DIR`` at ``<graphc cache>/numba-debug`` (or ``$NUMBA_CACHE_DIR/
graphc-debug``) before any kernel is decorated, since Numba picks a function's
cache location then, and sets ``NUMBA_BOUNDSCHECK=1``; both are process-wide
Numba settings, for a debugging session only.  The generated module's source --
and so its key -- says ``boundscheck=True`` too.
"""

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _source_hash() -> str:
    h = hashlib.sha256()
    for p in sorted(_HERE.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


SOURCE_HASH = _source_hash()


def _drop_stale_cache(cache: Path = _HERE / "__pycache__", pattern: str = "*") -> None:
    stamp = cache / "graphc_kernels.sha256"
    with contextlib.suppress(OSError):
        if stamp.read_text() == SOURCE_HASH:
            return
    with contextlib.suppress(OSError):  # a read-only install simply keeps its cache
        for f in [*cache.glob(f"{pattern}.nbi"), *cache.glob(f"{pattern}.nbc")]:
            f.unlink()
        cache.mkdir(exist_ok=True)
        tmp = cache / f".graphc_kernels.{os.getpid()}.tmp"
        tmp.write_text(SOURCE_HASH)
        os.replace(tmp, stamp)


DEBUG = os.environ.get("GRAPHC_DEBUG", "").strip().lower() in ("1", "true", "yes", "on")


def _debug_cache_dir() -> Path:
    """A private directory for debug builds' Numba cache (pickles: owned by the user,
    not writable by others), else a fresh temporary one."""
    base = os.environ.get("NUMBA_CACHE_DIR")
    if base:
        d = Path(base) / "graphc-debug"
    else:
        d = Path(os.environ.get("GRAPHC_CACHE_DIR") or Path.home() / ".cache" / "graphc")
        d = d / "numba-debug"
    try:
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = d.stat()
        if ((hasattr(os, "getuid") and st.st_uid != os.getuid()) or st.st_mode & 0o022
                or not os.access(d, os.W_OK | os.X_OK)):
            raise OSError(f"{d} is not private")
        return d
    except OSError:
        return Path(tempfile.mkdtemp(prefix="graphc-debug-numba-"))


DEBUG_CACHE_DIR: Path | None = None
if DEBUG:
    DEBUG_CACHE_DIR = _debug_cache_dir()
    os.environ["NUMBA_CACHE_DIR"] = str(DEBUG_CACHE_DIR)
    os.environ["NUMBA_BOUNDSCHECK"] = "1"
    from numba.core import config as _numba_config

    _numba_config.reload_config()
    _drop_stale_cache(DEBUG_CACHE_DIR, "**/*")
else:
    _drop_stale_cache()
