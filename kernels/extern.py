"""Kernels called from generated code as separately compiled native functions.

Numba compiles a call from one jitted function to another by linking the
callee's LLVM IR into the caller's module, which LLVM then optimises and
turns into machine code again.  Generated entry points call 20-30 kernel
specialisations, so almost all of an entry point's compile time went into
re-optimising and re-emitting kernels that were already compiled (a
3-layer ``train_step`` module: 18,300 lines of IR, 560 of them its own; of a
fuzz case's 7.5 s, 4.5 s were LLVM).

So the generated module calls each kernel through :func:`module`'s
intrinsics instead.  Typing is the dispatcher's own (same specialisations,
literal arguments included); the call goes to the kernel's compiled machine
code under a stable symbol name, ``graphc_k_<kernel>_<hash>``, registered
with LLVM's symbol table (as ``blas`` does for BLAS), so the caller's module
holds only a declaration.  The hash covers the kernel, its argument types,
the kernels' sources, debug mode and the Numba version, so one name always
means the same code.

Numba's cache: a cached entry point is machine code with the kernel symbols
unresolved.  Each call site adds ``_reload(kernel, argtypes, restype)`` to the
library's ``reload_init``, which Numba pickles with the cached function and
runs before it loads the machine code, so every symbol is registered (the
kernel compiled or loaded from its own cache) before the JIT linker needs it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import types as pytypes

import numba
from graphc.kernels import DEBUG, SOURCE_HASH
from llvmlite import binding as llvm_binding
from numba.core import cgutils, imputils
from numba.core.compiler_lock import global_compiler_lock
from numba.core.registry import CPUDispatcher
from numba.extending import intrinsic

_registered: dict[str, int] = {}


def _find(module: str, qualname: str) -> CPUDispatcher:
    disp = getattr(importlib.import_module(module), qualname)
    if not isinstance(disp, CPUDispatcher):
        raise TypeError(f"graphc: {module}.{qualname} is not a compiled kernel")
    return disp


def _symbol(disp: CPUDispatcher, argtypes: tuple) -> str:
    fn = disp.py_func
    what = "\0".join([fn.__module__, fn.__qualname__, repr(argtypes), SOURCE_HASH,
                      str(DEBUG), numba.__version__])
    return f"graphc_k_{fn.__name__}_{hashlib.sha256(what.encode()).hexdigest()[:24]}"


def register(disp: CPUDispatcher, argtypes: tuple):
    """Compile ``disp`` for ``argtypes`` (or load it from Numba's cache) and register its
    native function under its stable symbol; returns (symbol, compile result)."""
    with global_compiler_lock:  # reentrant; callers already hold it while compiling
        disp.compile(argtypes)
        cres = disp.overloads[argtypes]
        name = _symbol(disp, argtypes)
        if name not in _registered:
            addr = cres.library.get_pointer_to_function(cres.fndesc.mangled_name)
            if not addr:
                raise RuntimeError(f"graphc: no native code for kernel {name}")
            llvm_binding.add_symbol(name, addr)
            _registered[name] = addr
        return name, cres


def _reload(module: str, qualname: str, argtypes: tuple, restype) -> None:
    """Numba's ``reload_init`` hook: run before a cached caller's machine code is linked.

    The caller was compiled against ``restype``; a kernel that now returns something
    else would be called with the wrong ABI, so that raises (and the caller's cache
    files are then dropped and it is compiled again, see ``Compiled._first_call``)."""
    _, cres = register(_find(module, qualname), argtypes)
    if cres.signature.return_type != restype:
        raise RuntimeError(f"graphc: {module}.{qualname}{argtypes} now returns "
                           f"{cres.signature.return_type}, not {restype}")


def _call(disp: CPUDispatcher):
    """An intrinsic calling ``disp``'s native code (positional arguments only)."""
    fn = disp.py_func

    def type_call(typingctx, args):
        template, pysig, folded, kws = disp.get_call_template(args, {})
        if len(folded) != len(args):  # defaults filled in: call sites pass every argument
            return None
        sig = template(typingctx).apply(folded, kws)
        if sig is None:
            return None

        def codegen(context, builder, signature, cargs):
            name, cres = register(disp, signature.args)
            fndesc = cres.fndesc
            fnty = context.call_conv.get_function_type(fndesc.restype, fndesc.argtypes)
            callee = cgutils.get_or_insert_function(builder.module, fnty, name)
            context.call_conv.decorate_function(callee, fndesc.args, fndesc.argtypes,
                                                noalias=fndesc.noalias)
            context.active_code_library._reload_init.add(
                functools.partial(_reload, fn.__module__, fn.__qualname__, signature.args,
                                  signature.return_type))
            status, res = context.call_conv.call_function(
                builder, callee, fndesc.restype, fndesc.argtypes, cargs)
            with cgutils.if_unlikely(builder, status.is_error):
                context.call_conv.return_status_propagate(builder, status)
            return imputils.fix_returning_optional(context, builder, signature, status, res)

        return sig, codegen

    # Numba reads an intrinsic's parameters from its Python signature (a ``*args``
    # typer would receive the arguments as one star-tuple), so spell them out.
    params = ", ".join(inspect.signature(fn).parameters)
    ns = {"type_call": type_call}
    exec(f"def {fn.__name__}(typingctx, {params}):\n"  # noqa: S102 -- names of our own kernel
         f"    return type_call(typingctx, ({params}{',' if params else ''}))\n", ns)
    return intrinsic(prefer_literal=True)(ns[fn.__name__])


def call(fn):
    """``fn`` (a jitted function of a generated module) as its callers in that module
    should call it: through its symbol, like a kernel, when it is compiled code.

    ``fit_loop`` calls ``train_step``.  Linked in the usual way, a ``train_step``
    loaded from Numba's cache would bring its machine code into ``fit_loop`` but not
    its reload hooks (Numba keeps them on the compile result, not on the library a
    caller links), so a ``fit_loop`` compiled in such a process was cached without
    them, and the next process whose first call was ``fit`` crashed in the JIT linker
    on the unresolved kernel symbols.  Through a symbol, ``fit_loop``'s own hook loads
    ``train_step``, whose hooks register the kernels."""
    return _call(fn) if isinstance(fn, CPUDispatcher) else fn


@functools.cache
def module(name: str) -> pytypes.ModuleType:
    """``graphc.kernels.<name>`` as generated code sees it: every kernel it defines
    replaced by an intrinsic calling the kernel's separately compiled code; anything
    else (helpers, overloads, and every function when the JIT is disabled) as is."""
    mod = importlib.import_module(f"graphc.kernels.{name}")
    view = pytypes.ModuleType(f"graphc.kernels.extern.{name}")
    for attr, obj in vars(mod).items():
        if isinstance(obj, CPUDispatcher) and obj.py_func.__module__ == mod.__name__:
            obj = _call(obj)
        setattr(view, attr, obj)
    return view
