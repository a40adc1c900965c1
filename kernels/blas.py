"""GEMM for row-major C-contiguous arrays: direct sgemm/dgemm calls, and a loop kernel.

How BLAS is reached
-------------------
SciPy exports the Fortran BLAS through ``scipy.linalg.cython_blas``; each
routine's address sits in a PyCapsule in ``__pyx_capi__``.  We register those
addresses with LLVM under private symbol names (``graphc_sgemm`` /
``graphc_dgemm``) and emit a direct call from an intrinsic.  A ctypes function
pointer would also work in nopython mode, but Numba bakes its address into the
code as a "dynamic global", which makes every caller (including the generated
``train_step``) uncacheable.  A named symbol is resolved again by the JIT
linker whenever a cached function is loaded, so ``cache=True`` keeps working;
the only requirement is that this module is imported before such a function
is loaded, which holds because the caller's module imports it.

The scalar arguments BLAS takes by pointer are ``alloca``s in the caller's
entry block, so a call allocates nothing on the heap.

Which BLAS: Intel MKL when it is installed (the ``mkl`` extra, x86-64 Linux), because
at the small and mid-sized GEMMs of MLP training it is 1.3-1.9x faster than OpenBLAS
on the machines here; otherwise SciPy's OpenBLAS.  ``GRAPHC_BLAS`` overrides the
choice and ``BLAS`` names the library in use (see ``_register_blas_symbols``).

Threads: MKL runs a GEMM on its OpenMP team when it judges it big enough.
Inside a training step that is a loss for mid-sized GEMMs: on the 2-core
Xeon, the MNIST-1D-sized step (40-100-100-10, batch 100, GEMMs of 1e5-1e6
m*n*k) took 126 us on two threads and 99 us with ``MKL_NUM_THREADS=1``, although
the same 100x100x100 GEMM timed alone in a loop is 1.35x faster on two threads
(there its operands stay in both cores' caches).  From m*n*k = 4e6 up (the
mnist and deep steps) two threads win (118 vs 174 us, 1.1 vs 1.3 ms).  So a
GEMM in ``GEMM_ONE_THREAD_MNK`` is run with MKL's per-thread setting at one
thread and the caller's setting restored after; below the band MKL uses one
thread anyway, and the two calls would only cost.  The step went to 97 us;
small, mnist, mnist_wide, deep and large were unchanged within noise.

Row-major trick: a row-major (r, c) array is the column-major (c, r) array of
its transpose.  So C = op(A) op(B) in row-major is C^T = op(B)^T op(A)^T in
column-major, i.e. ``xgemm(tb, ta, n, m, k, alpha, B, ldb, A, lda, beta, C, n)``
with the transpose flags passed through unchanged and the leading dimensions
equal to each array's row length.

Measurement (2 cores Intel Xeon with AVX-512, shared machine, SciPy's
OpenBLAS 0.3.31; C = op(A)@op(B) with beta=0, ns per call inside an @njit
loop, best of 9; shapes m,k,n; float64 within 20% of these except where BLAS
is compute bound):

    float32 NN       mnk    loops   blas   np.dot(a,b,out)
    4,2,8             64       47     57     64
    4,8,1             32       83     51     61
    8,8,8            512      122     64     71
    16,16,16        4096      656    113    118
    32,64,64      131072     7248   1474   1493
    64,128,10      81920    17833   2098   2115
    64,784,128   6422528   365000  78000  95000
    128,512,512 33554432      --  280000 283000

    by transpose flags (loops / blas):  NN          NT          TN         TT
    4,2,8                               47/47       74/113      47/80      96/113
    4,1,8                               43/48       62/110      43/78      85/110
    4,8,8                               74/51       91/125      78/87     163/63
    8,8,8                              122/55      149/154     133/88     320/65
    4,16,16                            178/60      203/166     187/54     468/114

The direct call is never slower than np.dot(a, b, out) (which adds ~10 ns of
checks and goes through cblas), so ``gemm`` is the BLAS path.  BLAS costs
~50 ns per call for NN, ~100 ns for NT (OpenBLAS's small-matrix path covers
fewer cases there); the loop kernel costs ~45 ns at the smallest sizes and
loses to BLAS quickly because its trip counts are run-time values.  Loops
therefore win only on tiny products: m*n*k <= 64 for NN/TN, <= 512 for NT
(dx = dz @ W.T), never for TT (unused by the dense kernels).  These are the
thresholds in ``choose_gemm``/``gemm_auto``.
"""

import os

import numpy as np
from graphc.kernels._util import FASTMATH, like
from llvmlite import binding as llvm_binding
from llvmlite import ir as llvm_ir
from numba import njit
from numba.core import cgutils, types
from numba.extending import intrinsic, overload

# Loop kernel when m*n*k <= this (see the measurement above); TT never.
GEMM_LOOPS_MAX_MNK = 64
GEMM_LOOPS_MAX_MNK_NT = 512
# MKL runs GEMMs in this size band on the calling thread alone (see ``_blas_gemm``).
GEMM_ONE_THREAD_MNK = (1 << 18, 1 << 21)


def _cython_blas():
    """SciPy's cython_blas extension, loaded without ``scipy.linalg``'s ``__init__``.

    That package import pulls in most of SciPy (~0.3 s, every process); the BLAS
    capsules need only the extension itself.  Registered under its usual name, so
    a later ``import scipy.linalg`` reuses it; any surprise falls back to the import.
    """
    import importlib.machinery
    import importlib.util
    import sys
    from pathlib import Path

    name = "scipy.linalg.cython_blas"
    if name in sys.modules:
        return sys.modules[name]
    try:
        spec = importlib.util.find_spec("scipy")
        folder = Path(spec.origin).parent / "linalg"
        path = next(str(p) for suffix in importlib.machinery.EXTENSION_SUFFIXES
                    for p in folder.glob("cython_blas" + suffix))
        loader = importlib.machinery.ExtensionFileLoader(name, path)
        module = importlib.util.module_from_spec(
            importlib.util.spec_from_file_location(name, path, loader=loader))
        loader.exec_module(module)
        sys.modules[name] = module
        return module
    except Exception:  # noqa: BLE001 -- any layout surprise: the ordinary import
        from scipy.linalg import cython_blas

        return cython_blas


def _mkl():
    """Intel MKL's runtime library (the ``mkl`` wheel: ``pip install graphc[mkl]``), or None.

    On x86-64 its sgemm is much faster than OpenBLAS at the shapes of small MLPs (measured
    on the 2-core Xeon of BENCHMARKS.md, GFLOP/s, MKL vs SciPy's OpenBLAS: 64x784x128
    214 vs 139, 128x512x512 303 vs 221; whole train steps 1.5-2x faster at mnist and deep).
    MKL runs its threads on Intel's OpenMP (``libiomp5``, shipped beside it), not GNU's:
    a forked child calling MKL on GNU OpenMP hangs (seen here), on Intel's it does not,
    unless ``KMP_INIT_AT_FORK`` is false (see ``_mkl_after_fork``).
    ``MKL_THREADING_LAYER`` set by the user wins.
    """
    import ctypes
    import ctypes.util
    import glob
    import sys

    names = sorted(glob.glob(os.path.join(sys.prefix, "lib", "libmkl_rt.so*")))
    names += [n for n in [ctypes.util.find_library("mkl_rt")] if n]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            if "MKL_THREADING_LAYER" not in os.environ:
                lib.MKL_Set_Threading_Layer.argtypes = [ctypes.c_int]
                lib.MKL_Set_Threading_Layer(0)  # MKL_THREADING_INTEL
            buf = ctypes.create_string_buffer(256)
            lib.mkl_get_version_string(buf, 256)
            return lib, buf.value.decode(errors="replace").strip()
        except (OSError, AttributeError):
            continue
    return None


#: How Intel's OpenMP reads a false ``KMP_INIT_AT_FORK`` (its boolean spellings).
_FALSE_WORDS = ("0", "f", "false", "n", "no", "off")


def _mkl_after_fork() -> None:
    """In a forked child, run MKL on one thread when Intel's OpenMP will not rebuild its team.

    ``KMP_INIT_AT_FORK=false`` tells libiomp5 not to re-initialise in a child, and
    scikit-learn sets it on import (``os.environ.setdefault``), so ``import sklearn`` then a
    ``fork`` (multiprocessing's default on Linux) left the child's first threaded GEMM
    waiting forever for the parent's threads, which a child does not have (seen on an AMD
    EPYC, where MKL threads GEMMs this small).  One thread is slower, never stuck; with the
    variable unset or true the child keeps MKL's own setting.
    """
    if os.environ.get("KMP_INIT_AT_FORK", "").strip().lower() in _FALSE_WORDS:
        MKL_LIB.MKL_Set_Num_Threads(1)  # registered only once MKL_LIB is set


def _register_blas_symbols() -> str:
    """Point the symbols the kernels call (``graphc_sgemm``/``graphc_dgemm``) at a BLAS;
    returns which.  ``GRAPHC_BLAS``: ``auto`` (default: MKL when installed, else SciPy's
    OpenBLAS), ``mkl`` or ``openblas``.  The machine code is the same for both (the symbol
    is resolved when a module is loaded), so the choice never invalidates a cache."""
    import ctypes
    import warnings

    want = os.environ.get("GRAPHC_BLAS", "auto").lower()
    if want not in ("auto", "mkl", "openblas"):
        warnings.warn(f"GRAPHC_BLAS={want!r} is not one of auto, mkl, openblas: using auto",
                      stacklevel=2)
        want = "auto"
    mkl = _mkl() if want in ("auto", "mkl") else None
    if mkl is not None:
        lib, version = mkl
        for name in ("sgemm", "dgemm"):
            llvm_binding.add_symbol("graphc_" + name, ctypes.cast(getattr(lib, name),
                                                                  ctypes.c_void_p).value)
        llvm_binding.add_symbol("graphc_threads_local", ctypes.cast(
            lib.MKL_Set_Num_Threads_Local, ctypes.c_void_p).value)
        global MKL_LIB
        MKL_LIB = lib
        os.register_at_fork(after_in_child=_mkl_after_fork)
        return version
    # OpenBLAS has no per-call thread count (its setter is global and slow): the
    # symbol gets a side-effect-free int(int), libc's abs, so the call is a no-op.
    llvm_binding.add_symbol("graphc_threads_local",
                            ctypes.cast(ctypes.CDLL(None).abs, ctypes.c_void_p).value)
    if want == "mkl":
        warnings.warn("GRAPHC_BLAS=mkl but MKL is not installed (pip install graphc[mkl]): "
                      "using SciPy's OpenBLAS", stacklevel=2)
    cython_blas = _cython_blas()
    get_ptr = ctypes.pythonapi.PyCapsule_GetPointer
    get_ptr.restype = ctypes.c_void_p
    get_ptr.argtypes = [ctypes.py_object, ctypes.c_char_p]
    get_name = ctypes.pythonapi.PyCapsule_GetName
    get_name.restype = ctypes.c_char_p
    get_name.argtypes = [ctypes.py_object]
    for name in ("sgemm", "dgemm"):
        cap = cython_blas.__pyx_capi__[name]
        llvm_binding.add_symbol("graphc_" + name, get_ptr(cap, get_name(cap)))
    return "OpenBLAS (SciPy's cython_blas)"


#: MKL's runtime library (ctypes) when the GEMMs call MKL, else None.
MKL_LIB = None
#: The BLAS every GEMM of the generated code calls (see ``_register_blas_symbols``).
BLAS = _register_blas_symbols()


@intrinsic
def _xgemm(typingctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major Fortran xgemm call; ta/tb are the ASCII codes of 'N'/'T'."""
    if not (isinstance(a, types.Array) and a.dtype in (types.float32, types.float64)):
        return None
    dtype = a.dtype
    sig = types.void(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        i8 = llvm_ir.IntType(8)
        i32 = llvm_ir.IntType(32)
        fp = context.get_value_type(dtype)
        c_p, i_p, f_p = i8.as_pointer(), i32.as_pointer(), fp.as_pointer()
        # transa transb m n k alpha A lda B ldb beta C ldc
        fnty = llvm_ir.FunctionType(
            llvm_ir.VoidType(), [c_p, c_p, i_p, i_p, i_p, f_p, f_p, i_p, f_p, i_p, f_p, f_p, i_p]
        )
        fname = "graphc_sgemm" if dtype == types.float32 else "graphc_dgemm"
        fn = cgutils.get_or_insert_function(builder.module, fnty, fname)
        argtys = signature.args

        def by_ref(idx, to_type, lltype):
            val = context.cast(builder, args[idx], argtys[idx], to_type)
            if to_type == types.int8:
                val = builder.trunc(val, i8) if val.type != i8 else val
            slot = cgutils.alloca_once(builder, lltype)
            builder.store(val, slot)
            return slot

        def data(idx):
            return context.make_array(argtys[idx])(context, builder, value=args[idx]).data

        builder.call(
            fn,
            [
                by_ref(0, types.int8, i8),
                by_ref(1, types.int8, i8),
                by_ref(2, types.int32, i32),
                by_ref(3, types.int32, i32),
                by_ref(4, types.int32, i32),
                by_ref(5, dtype, fp),
                data(6),
                by_ref(7, types.int32, i32),
                data(8),
                by_ref(9, types.int32, i32),
                by_ref(10, dtype, fp),
                data(11),
                by_ref(12, types.int32, i32),
            ],
        )
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def _threads_local(typingctx, n):
    """MKL's ``MKL_Set_Num_Threads_Local(n)`` (returns the previous value; 0 means the
    global setting); a no-op on OpenBLAS (see ``_register_blas_symbols``)."""
    sig = types.int32(types.int32)

    def codegen(context, builder, signature, args):
        i32 = llvm_ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(i32, [i32]),
                                            "graphc_threads_local")
        return builder.call(fn, [args[0]])

    return sig, codegen


def _blas_gemm(transa, transb, alpha, A, B, beta, C, m, n, k):
    """NumPy stand-in, used only when NUMBA_DISABLE_JIT=1 (BLAS beta=0: C not read)."""
    opa = A.T if transa else A
    opb = B.T if transb else B
    prod = np.dot(opa, opb)
    if beta == 0:
        C[...] = alpha * prod
    else:
        C[...] = alpha * prod + beta * C


@overload(_blas_gemm)
def _blas_gemm_ol(transa, transb, alpha, A, B, beta, C, m, n, k):
    def impl(transa, transb, alpha, A, B, beta, C, m, n, k):
        ca = 84 if transa else 78  # ord("T"), ord("N")
        cb = 84 if transb else 78
        mnk = m * n * k
        if GEMM_ONE_THREAD_MNK[0] < mnk <= GEMM_ONE_THREAD_MNK[1]:
            prev = _threads_local(np.int32(1))
            _xgemm(cb, ca, n, m, k, alpha, B, B.shape[1], A, A.shape[1], beta, C, n)
            _threads_local(prev)
        else:
            _xgemm(cb, ca, n, m, k, alpha, B, B.shape[1], A, A.shape[1], beta, C, n)

    return impl


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def _scale_c(beta, C):
    # BLAS semantics: beta == 0 overwrites C without reading it (NaN/garbage ignored).
    if beta == 0:
        for i in range(C.shape[0]):
            for j in range(C.shape[1]):
                C[i, j] = 0
    elif beta != 1:
        bt = like(C, beta)
        for i in range(C.shape[0]):
            for j in range(C.shape[1]):
                C[i, j] = C[i, j] * bt


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def gemm(transa, transb, alpha, A, B, beta, C):
    """C = alpha*op(A)@op(B) + beta*C through sgemm/dgemm (all arrays C-contiguous)."""
    m = C.shape[0]
    n = C.shape[1]
    k = A.shape[0] if transa else A.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:
        _scale_c(beta, C)
        return
    _blas_gemm(transa, transb, alpha, A, B, beta, C, m, n, k)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def gemm_loops(transa, transb, alpha, A, B, beta, C):
    """Same contract as ``gemm`` with plain loops (tiny layers, where the BLAS call
    overhead dominates).  C is scaled row by row inside the product loop (one pass
    over C), and inner loops run along contiguous rows so LLVM vectorises them."""
    m = C.shape[0]
    n = C.shape[1]
    k = A.shape[0] if transa else A.shape[1]
    al = like(C, alpha)
    bt = like(C, beta)
    for i in range(m):
        # BLAS semantics: beta == 0 overwrites C without reading it.
        if beta == 0:
            for j in range(n):
                C[i, j] = 0
        elif beta != 1:
            for j in range(n):
                C[i, j] *= bt
        if k == 0:
            continue
        if not transb:
            # C[i, :] += (alpha*opA[i, p]) * B[p, :]
            for p in range(k):
                s = al * (A[p, i] if transa else A[i, p])
                for j in range(n):
                    C[i, j] += s * B[p, j]
        else:
            # C[i, j] += alpha * dot(opA[i, :], B[j, :])
            for j in range(n):
                acc = C[i, j] * 0
                if transa:
                    for p in range(k):
                        acc += A[p, i] * B[j, p]
                else:
                    for p in range(k):
                        acc += A[i, p] * B[j, p]
                C[i, j] += al * acc


def choose_gemm(m, n, k, transa=False, transb=False):
    """'loops' for tiny products (where the BLAS call overhead dominates), else 'blas'."""
    if transa and transb:
        return "blas"
    limit = GEMM_LOOPS_MAX_MNK_NT if transb else GEMM_LOOPS_MAX_MNK
    return "loops" if m * n * k <= limit else "blas"


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy")
def gemm_auto(transa, transb, alpha, A, B, beta, C):
    """``gemm`` or ``gemm_loops`` by the same rule as ``choose_gemm``, at run time."""
    m = C.shape[0]
    n = C.shape[1]
    k = A.shape[0] if transa else A.shape[1]
    mnk = m * n * k
    if transa and transb:
        small = False
    elif transb:
        small = mnk <= GEMM_LOOPS_MAX_MNK_NT
    else:
        small = mnk <= GEMM_LOOPS_MAX_MNK
    if small:
        gemm_loops(transa, transb, alpha, A, B, beta, C)
    else:
        gemm(transa, transb, alpha, A, B, beta, C)
