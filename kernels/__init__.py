"""The Numba kernels generated code calls (the only package that imports numba).

Numba invalidates a cached function only when its own source file changes, but
kernels inline helpers from other files (``mathfn``, ``_util``, ``blas``): after
an edit there, a caller's cached machine code would keep the old helper.  So
the package hashes all of its sources at import and, when the hash differs from
the one recorded beside Numba's cache files, drops those files first.
``SOURCE_HASH`` also enters the key of every generated module.
"""

import contextlib
import hashlib
import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def _source_hash() -> str:
    h = hashlib.sha256()
    for p in sorted(_HERE.glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


SOURCE_HASH = _source_hash()


def _drop_stale_cache() -> None:
    cache = _HERE / "__pycache__"
    stamp = cache / "graphc_kernels.sha256"
    with contextlib.suppress(OSError):
        if stamp.read_text() == SOURCE_HASH:
            return
    with contextlib.suppress(OSError):  # a read-only install simply keeps its cache
        for f in [*cache.glob("*.nbi"), *cache.glob("*.nbc")]:
            f.unlink()
        cache.mkdir(exist_ok=True)
        tmp = cache / f".graphc_kernels.{os.getpid()}.tmp"
        tmp.write_text(SOURCE_HASH)
        os.replace(tmp, stamp)


_drop_stale_cache()
