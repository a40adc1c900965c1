"""The ``graphc`` command line: ``graphc <command> ...``.

Structure (so other commands slot in without touching the rest):

* every command is a pair ``add_<name>(subparsers)`` (declares its parser and
  sets ``func``) and ``cmd_<name>(args) -> int``, decorated with
  :func:`cli_command`; :data:`COMMANDS` lists the ``add_*`` functions;
* :func:`cli_command` is the one place errors are handled: a mistake in the
  user's model or arguments prints ONE line ``graphc: error: ...`` (with the
  user's ``file:line`` when known) and exits 2; ``--debug`` (on every
  command, via :data:`COMMON`) also prints the traceback;
* ``graphc dump`` prints a graph at a stage in a format; extra dump outputs
  (``--source``, ``--profile``...) register through
  :func:`register_dump_extra` and receive a :class:`DumpContext`.

Model targets (:func:`load_target`): ``path/to/file.py:function`` -- the
function takes no arguments and returns the loss tensor or a dict of named
output tensors (which may include ``"loss"``) -- or a saved ``.gcm`` model.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_ERROR = 2  # a mistake in the user's model, files or arguments (argparse uses 2 too)
EXIT_INTERNAL = 1  # a bug in graphc
_PKG_DIR = str(Path(__file__).resolve().parent.parent)


class CLIError(Exception):
    """A user mistake reported as one line (no traceback unless --debug)."""


# --- error handling: one place for every command -----------------------------------------

def _user_frame(tb, prefer: str | None = None) -> str | None:
    """``file:line`` of the deepest traceback frame in the user's code (outside graphc)."""
    best = fallback = None
    for frame, line in traceback.walk_tb(tb):
        fn = frame.f_code.co_filename
        if prefer and os.path.abspath(fn) == os.path.abspath(prefer):
            best = f"{fn}:{line}"
        elif not os.path.abspath(fn).startswith(_PKG_DIR) and not fn.startswith("<"):
            fallback = f"{fn}:{line}"
    return best or fallback


class UserCodeError(CLIError):
    """An exception raised while loading or running the user's model code."""

    def __init__(self, exc: BaseException, path: str) -> None:
        from graphc.errors import GraphcError

        if isinstance(exc, SyntaxError):
            msg = f"SyntaxError: {exc.msg} (at {exc.filename}:{exc.lineno})"
        else:
            text = str(exc) or type(exc).__name__
            msg = text if isinstance(exc, GraphcError) else f"{type(exc).__name__}: {text}"
            where = _user_frame(exc.__traceback__, path)
            if where and "(at " not in msg:
                msg += f" (at {where})"
        super().__init__(msg)
        self.__cause__ = exc


def _one_line(e: BaseException) -> tuple[str, int]:
    """The message and exit code :func:`cli_command` reports for ``e``."""
    from graphc.errors import GraphcError, VerifyError

    if isinstance(e, VerifyError):
        return f"internal check failed: {e} (please report this graphc bug)", EXIT_INTERNAL
    if isinstance(e, CLIError | GraphcError):
        return str(e), EXIT_ERROR
    if isinstance(e, OSError):
        where = f"{e.filename}: " if e.filename else ""
        return f"{where}{e.strerror or e}", EXIT_ERROR
    return (f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
            EXIT_INTERNAL)


def cli_command(fn: Callable[[argparse.Namespace], int | None]) -> Callable[[argparse.Namespace], int]:
    """Run a command; turn exceptions into one ``graphc: error:`` line and an exit code."""

    @functools.wraps(fn)
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args) or 0
        except KeyboardInterrupt:
            print("graphc: interrupted", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # `graphc dump ... | head`: the reader left; stop quietly like other Unix tools.
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):
                pass
            return 0
        except Exception as e:  # noqa: BLE001 -- this is the CLI's single error boundary
            if getattr(args, "debug", False):
                traceback.print_exc()
            msg, code = _one_line(e)
            # One line, with paths under the working directory as the user typed them.
            msg = " ".join(msg.split()).replace(os.getcwd() + os.sep, "")
            print(f"graphc: error: {msg}", file=sys.stderr)
            return code

    return run


# --- loading models ------------------------------------------------------------------------

@dataclass
class Target:
    """A loaded model: its traced graph plus what a saved model knows about training."""

    source: str
    graph: Any  # graphc.ir.graph.Graph (imported lazily: the CLI starts fast)
    loss: str | None = "loss"
    optimizer: Any = None
    weight_decay: float = 0.0
    clip_norm: float | None = None


def _import_file(path: str):
    name = "graphc_user_" + "".join(c if c.isalnum() else "_" for c in Path(path).stem)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"cannot import {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    folder = str(Path(path).resolve().parent)
    sys.path.insert(0, folder)  # the model may import modules next to it
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 -- anything the user's file raises is theirs
        raise UserCodeError(e, path) from e
    finally:
        if sys.path and sys.path[0] == folder:
            sys.path.pop(0)
    return module


def _outputs_of(result: Any, where: str) -> dict:
    from graphc.ir.value import Value

    if isinstance(result, Value):
        return {"loss": result}
    if isinstance(result, Mapping) and result:
        bad = [k for k, v in result.items() if not isinstance(k, str) or not isinstance(v, Value)]
        if not bad:
            return dict(result)
        k = bad[0]
        raise CLIError(f"{where} returned a dict whose entry {k!r} is not a graphc tensor "
                       f"(got {type(result[k]).__name__})")
    raise CLIError(f"{where} must return the loss tensor or a dict of named tensors, "
                   f"got {type(result).__name__}")


def load_target(target: str) -> Target:
    """Load ``file.py:function`` or a ``.gcm`` model (see the module docstring)."""
    from graphc.frontends.symbolic import check_names
    from graphc.ir.graph import Graph

    if target.endswith(".gcm"):
        return _load_saved(target)
    path, sep, func = target.rpartition(":")
    if not sep or not path or not func:
        raise CLIError(f"target {target!r} must be path/to/file.py:function or a .gcm file")
    if not Path(path).exists():
        raise CLIError(f"{path}: no such file")
    if Path(path).is_dir():
        raise CLIError(f"{path} is a directory, expected a Python file")
    module = _import_file(path)
    fn = getattr(module, func, None)
    if fn is None:
        defined = sorted(k for k, v in vars(module).items()
                         if callable(v) and getattr(v, "__module__", None) == module.__name__)
        hint = f" (it defines {', '.join(defined)})" if defined else ""
        raise CLIError(f"{path} has no function {func!r}{hint}")
    if not callable(fn):
        raise CLIError(f"{path}: {func!r} is a {type(fn).__name__}, not a function")
    where = f"{path}:{func}()"
    try:
        result = fn()
        outputs = _outputs_of(result, where)
        graph, _ = Graph.from_values(outputs)
        check_names(graph)
    except CLIError:
        raise
    except Exception as e:  # noqa: BLE001
        raise UserCodeError(e, path) from e
    return Target(target, graph, "loss" if "loss" in outputs else None)


def _load_saved(path: str) -> Target:
    from graphc.errors import GraphcError, ModelFileError
    from graphc.io import graph_from_meta, load_model
    from graphc.optim import from_config

    meta, _ = load_model(path)
    graph = graph_from_meta(meta, path)  # verified: shapes, dtypes, arity, no cycle
    try:
        opt = from_config(meta["optimizer"]) if meta.get("optimizer") else None
    except (KeyError, TypeError, ValueError, AttributeError, GraphcError) as e:
        raise ModelFileError(f"{path}: invalid optimizer description ({type(e).__name__}: "
                             f"{e})") from None
    loss = meta.get("loss", "loss" if "loss" in graph.outputs else None)
    return Target(path, graph, loss if loss in graph.outputs else None, opt,
                  float(meta.get("weight_decay") or 0.0), meta.get("clip_norm"))


# --- graphc dump ---------------------------------------------------------------------------

STAGES = ("input", "grad", "optimized")
FORMATS = ("text", "dot", "json", "svg")
_SUFFIX_FORMAT = {".txt": "text", ".dot": "dot", ".gv": "dot", ".json": "json", ".svg": "svg"}


@dataclass
class DumpContext:
    """Everything a dump output may need, computed lazily and at most once."""

    args: argparse.Namespace
    target: Target
    emit: Callable[[str], None]
    _cache: dict = field(default_factory=dict)

    @property
    def input_graph(self):
        return self.target.graph

    @property
    def grad_graph(self):
        if "grad" not in self._cache:
            from graphc.autodiff import build_training
            from graphc.optim import SGD

            t = self.target
            if t.loss is None:
                names = ", ".join(t.graph.outputs) or "none"
                raise CLIError(f"--stage grad needs a loss: return the loss tensor, or a dict "
                               f"with a 'loss' entry (outputs: {names})")
            opt = t.optimizer if t.optimizer is not None else SGD(lr=0.01)
            self._cache["grad"] = build_training(t.graph, t.graph.outputs[t.loss], opt,
                                                 t.weight_decay, t.clip_norm)
        return self._cache["grad"]

    @property
    def optimized(self):
        """(optimised graph, PassReport) of the gradient graph (the input graph if no loss)."""
        if "optimized" not in self._cache:
            from graphc.passes import optimize

            base = self.grad_graph if self.target.loss is not None else self.input_graph
            self._cache["optimized"] = optimize(
                base, verify=True, guard=self.args.guard, print_after=self.args.print_after,
                emit=self.emit)
        return self._cache["optimized"]

    def graph(self, stage: str):
        if stage == "input":
            return self.input_graph
        if stage == "grad":
            return self.grad_graph
        return self.optimized[0]


@dataclass
class DumpExtra:
    """An extra output of ``graphc dump`` (e.g. ``--source``): a flag and its handler.

    The handler gets the :class:`DumpContext` and returns text to print (or None).
    """

    dest: str
    flags: tuple[str, ...]
    help: str
    handler: Callable[[DumpContext], str | None]
    argparse_kwargs: dict = field(default_factory=dict)


DUMP_EXTRAS: dict[str, DumpExtra] = {}


def register_dump_extra(dest: str, *flags: str, help: str,  # noqa: A002 (argparse's name)
                        handler: Callable[[DumpContext], str | None], **argparse_kwargs) -> None:
    """Add an output to ``graphc dump``; by default a boolean flag (``action="store_true"``)."""
    argparse_kwargs.setdefault("action", "store_true")
    DUMP_EXTRAS[dest] = DumpExtra(dest, flags, help, handler, argparse_kwargs)


def _passes_table(ctx: DumpContext) -> str:
    return ctx.optimized[1].to_text()


def _fusion_report(ctx: DumpContext) -> str:
    return ctx.optimized[1].fusion_text()


register_dump_extra("passes", "--passes", help="print the pass table (time, nodes, changes)",
                    handler=_passes_table)
register_dump_extra("fusion_report", "--fusion-report",
                    help="print what each fusion pass fused, and why it refused the rest",
                    handler=_fusion_report)


def render(graph, fmt: str, title: str = "graphc") -> str:
    """``graph`` as text, dot, json or svg (svg needs Graphviz's ``dot`` program)."""
    from graphc.ir import printer

    title = title.replace("\\", "/").replace('"', "'")  # it goes inside a DOT string
    if fmt == "text":
        return printer.to_text(graph)
    if fmt == "json":
        return printer.to_json(graph) + "\n"
    dot = printer.to_dot(graph, title)
    if fmt == "dot":
        return dot
    exe = shutil.which("dot")
    if exe is None:
        raise CLIError("--format svg needs Graphviz's `dot` program, which is not on PATH "
                       "(install it: apt-get install graphviz)")
    done = subprocess.run([exe, "-Tsvg"], input=dot, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        first = (done.stderr.strip().splitlines() or ["no message"])[0]
        raise CLIError(f"Graphviz dot failed (exit {done.returncode}): {first}")
    return done.stdout


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="on error, print the full traceback too")


def add_dump(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dump", help="print a model's graph at a compiler stage",
        description="Print a model's graph: as traced (input), with gradients and optimizer "
                    "updates (grad), or after the pass pipeline (optimized).",
        epilog="TARGET is path/to/file.py:function (the function returns the loss tensor or a "
               "dict of named tensors) or a saved .gcm model.")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--stage", choices=STAGES, default="optimized")
    p.add_argument("--format", choices=FORMATS, default=None,
                   help="output format (default: from -o's suffix, else text)")
    p.add_argument("-o", "--output", metavar="FILE", help="write the graph to FILE")
    p.add_argument("--print-after", metavar="PASS",
                   help="print the graph after pass PASS (or 'all') while optimizing")
    p.add_argument("--guard", action="store_true",
                   help="check every pass numerically against the reference interpreter")
    p.add_argument("--batch", type=int, default=32, help="batch size for --profile (32)")
    for extra in DUMP_EXTRAS.values():
        p.add_argument(*extra.flags, dest=extra.dest, help=extra.help, **extra.argparse_kwargs)
    add_common(p)
    p.set_defaults(func=cmd_dump)


@cli_command
def cmd_dump(args: argparse.Namespace) -> int:
    fmt = args.format or _SUFFIX_FORMAT.get(Path(args.output or "").suffix.lower(), "text")
    reports = [e for e in DUMP_EXTRAS.values() if getattr(args, e.dest, None)]
    if args.print_after and args.stage != "optimized":
        raise CLIError(f"--print-after needs --stage optimized (got --stage {args.stage})")
    if args.print_after not in (None, "all"):
        from graphc.passes import pass_names

        if args.print_after not in pass_names():
            raise CLIError(f"--print-after {args.print_after}: no such pass; passes are "
                           f"{', '.join(pass_names())} (or 'all')")
    target = load_target(args.target)
    ctx = DumpContext(args, target, emit=lambda s: print(s, end=""))
    text = render(ctx.graph(args.stage), fmt, title=f"{args.target} ({args.stage})")
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    for extra in reports:
        out = extra.handler(ctx)
        if out:
            sys.stdout.write(out if out.endswith("\n") else out + "\n")
    return 0


# --- compiled program for a target (dump --source / --profile, train) --------------------------

def _program_for(target: Target, backend: str = "compiled", dtype: str = "float32"):
    from graphc.optim import SGD
    from graphc.runtime.program import Program

    opt = None
    if target.loss is not None:
        opt = target.optimizer if target.optimizer is not None else SGD(lr=0.01)
    return Program(target.graph, loss=target.loss, optimizer=opt,
                   weight_decay=target.weight_decay, clip_norm=target.clip_norm,
                   dtype=dtype, backend=backend)


def random_feeds(program, batch: int, seed: int = 0) -> dict:
    """Feeds of the right shapes for profiling: normal floats, labels in range."""
    import numpy as np

    rng = np.random.default_rng(seed)
    feeds = {}
    for name, (shape, kind) in program.feed_spec.inputs.items():
        dims = tuple(batch if d is None else d for d in shape)
        if kind == "int64":
            classes = program.feed_spec.label_classes.get(name, 2)
            feeds[name] = rng.integers(0, classes, dims)
        else:
            feeds[name] = rng.standard_normal(dims).astype(program.dtype)
    return feeds


def _source(ctx: DumpContext) -> str:
    return _program_for(ctx.target)._impl.source


def _profile(ctx: DumpContext) -> str:
    program = _program_for(ctx.target)
    return program.profile(random_feeds(program, ctx.args.batch)).table()


register_dump_extra("source", "--source",
                    help="print the generated Numba module (train step, forward, fit loop)",
                    handler=_source)
register_dump_extra("profile", "--profile",
                    help="time every fused kernel of the compiled step on random data "
                         "(batch size: --batch)", handler=_profile)


# --- graphc demo -----------------------------------------------------------------------------

def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a digits classifier end to end, showing each stage",
                       description="Build a 64-128-64-10 MLP, check its compiled gradients "
                                   "against finite differences, train it on scikit-learn's "
                                   "digits with the compiled fit, and compare the step time "
                                   "with PyTorch eager.")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_common(p)
    p.set_defaults(func=cmd_demo)


@cli_command
def cmd_demo(args: argparse.Namespace) -> int:
    from graphc import demo

    res = demo.run(epochs=args.epochs, batch_size=args.batch_size, progress=not args.no_progress)
    return 0 if res["accuracy"] >= 0.9 else EXIT_ERROR


# --- graphc train ----------------------------------------------------------------------------

def add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train", help="train a model file, spec or saved model on a data set",
        description="Train TARGET -- path/to/file.py:function (returning the loss of inputs "
                    "named x and y), a model spec (.json/.toml) or a saved .gcm (training "
                    "resumes) -- on a data set, then report test metrics and optionally save.")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("--data", required=True,
                   help="digits | mnist:DIR | file.npz | file.csv")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", default=None,
                   help="sgd | adam | adamw | rmsprop (default: sgd with lr 0.01)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: the optimizer's, as in PyTorch)")
    p.add_argument("--validation", type=_fraction_or_count, default=0.1,
                   help="held out of the training data: a fraction (default 0.1) or a row "
                        "count (e.g. 200)")
    p.add_argument("--patience", type=int, default=None, help="early stopping patience")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--no-standardize", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--save", metavar="FILE.gcm", help="save the trained model here")
    add_common(p)
    p.set_defaults(func=cmd_train)


def _fraction_or_count(text: str) -> float | int:
    """``--validation``: "0.1" is a fraction, "200" a row count (as Dataset.split takes)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


@cli_command
def cmd_train(args: argparse.Namespace) -> int:
    import graphc as gc
    from graphc.optim import get_optimizer

    data = gc.data.load(args.data)
    test = data.test_set() if data.x_test is not None else None
    if test is None:
        data, test = data.split(validation=0.2, seed=args.seed)
    train, val = data.split(validation=args.validation, seed=args.seed) \
        if args.validation else (data, None)
    if not args.no_standardize:
        train, stats = train.standardize()
        val = val.standardize(stats)[0] if val is not None else None
        test = test.standardize(stats)[0]
    target = args.target
    if target.endswith((".json", ".toml")):
        model = gc.load_spec(target)
        if args.optimizer or args.lr:
            raise CLIError("--optimizer/--lr: set the optimizer in the spec file instead")
        hist = model.fit(train.x, train.y, epochs=args.epochs, batch_size=args.batch_size,
                         validation_data=(val.x, val.y) if val is not None else None,
                         seed=args.seed, patience=args.patience,
                         progress=not args.no_progress)
        program = model.program
    else:
        if target.endswith(".gcm"):
            program = gc.load(target)
            if args.optimizer or args.lr:
                raise CLIError("--optimizer/--lr cannot change a saved model's optimizer")
        else:
            t = load_target(target)
            if t.loss is None:
                raise CLIError(f"{target} must return a loss to train")
            missing = {"x", "y"} - set(t.graph.by_name("input"))
            if missing:
                raise CLIError(f"{target}: training feeds inputs named 'x' and 'y'; the model "
                               f"has {', '.join(sorted(t.graph.by_name('input'))) or 'none'}")
            # No --optimizer: SGD at 0.01, gc.compile's default; a named optimizer without
            # --lr gets its own (PyTorch's) default learning rate.
            lr = 0.01 if args.optimizer is None and args.lr is None else args.lr
            t.optimizer = get_optimizer(args.optimizer or "sgd", lr)
            program = _program_for(t, dtype=args.dtype)
        hist = program.fit({"x": train.x, "y": train.y}, epochs=args.epochs,
                           batch_size=args.batch_size, seed=args.seed, patience=args.patience,
                           validation={"x": val.x, "y": val.y} if val is not None else None,
                           progress=not args.no_progress)
    for i, e in enumerate(hist.epochs):
        line = f"epoch {e:3d}  loss {hist.loss[i]:.4f}"
        if hist.val_loss:
            line += f"  val_loss {hist.val_loss[i]:.4f}"
        if hist.val_accuracy and hist.val_accuracy[i] == hist.val_accuracy[i]:
            line += f"  val_acc {hist.val_accuracy[i]:.4f}"
        print(line + f"  {hist.samples_per_s[i]:,.0f} samples/s")
    if hist.stop_reason:
        print(hist.stop_reason)
    res = program.evaluate({"x": test.x, "y": test.y})
    print("test " + "  ".join(f"{k} {v:.4f}" for k, v in res.items()))
    if args.save:
        program.save(args.save)
        print(f"saved {args.save}")
    return 0


# --- graphc cache ----------------------------------------------------------------------------

def add_cache(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cache", help="list, inspect or clear the compiled-module cache",
                       description="The cache of generated modules and their Numba code "
                                   "($GRAPHC_CACHE_DIR, default ~/.cache/graphc).")
    p.add_argument("action", choices=("ls", "info", "clear"))
    add_common(p)
    p.set_defaults(func=cmd_cache)


@cli_command
def cmd_cache(args: argparse.Namespace) -> int:
    import time as _time

    from graphc.codegen import cache

    entries = cache.entries()
    if args.action == "ls":
        for e in entries:
            when = _time.strftime("%Y-%m-%d %H:%M", _time.localtime(e["mtime"]))
            print(f"g_{e['key'][:16]}  {e['bytes']:>10,} B  {e['native_files']} native files  {when}")
    elif args.action == "info":
        total = sum(e["bytes"] for e in entries)
        trusted = cache.trusted_dir() is not None
        print(f"cache directory: {cache.cache_dir()}"
              f"{'' if trusted else ' (not trusted or not writable: compiling in memory)'}")
        print(f"modules: {len(entries)}, {total:,} bytes")
    else:
        print(f"removed {cache.clear()} cached modules from {cache.cache_dir()}")
    return 0


# --- graphc bench ----------------------------------------------------------------------------

def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="run the benchmark suite (graphc vs PyTorch, JAX, ...)",
                       description="Run benchmarks/ (from the repository checkout); every option "
                                   "after 'bench' goes to the suite: see graphc bench --help-suite",
                       add_help=True)
    p.add_argument("suite_args", nargs=argparse.REMAINDER,
                   help="options for the suite (--configs, --frameworks, --quick, --json, "
                        "--markdown, --plot, ...)")
    add_common(p)
    p.set_defaults(func=cmd_bench)


@cli_command
def cmd_bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parent.parent
    if not (root / "benchmarks" / "suite.py").exists():
        raise CLIError("graphc bench runs the suite in the repository checkout (benchmarks/); "
                       "install graphc from a clone with pip install -e .")
    sys.path.insert(0, str(root))
    from benchmarks._env import set_thread_env

    suite_args = list(args.suite_args)
    threads = 2
    for i, a in enumerate(suite_args):
        if a == "--threads" and i + 1 < len(suite_args):
            threads = int(suite_args[i + 1])
    set_thread_env(threads)
    from benchmarks.suite import main as suite_main

    return suite_main(suite_args)


# --- main ----------------------------------------------------------------------------------

COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_demo, add_train, add_dump, add_bench, add_cache]


def build_parser() -> argparse.ArgumentParser:
    from graphc import __version__

    parser = argparse.ArgumentParser(
        prog="graphc", description="graphc: a static-graph compiler for feedforward networks.")
    parser.add_argument("--version", action="version", version=f"graphc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"] and not {"-h", "--help"} & set(argv[1:2]):
        # Everything after 'bench' belongs to the suite's own parser (argparse would
        # take '--configs' for an option of graphc's).
        rest = [a for a in argv[1:] if a != "--debug"]
        return cmd_bench(argparse.Namespace(suite_args=rest, debug="--debug" in argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
