"""``Program.fit``: whole training runs, one native call per epoch or per several.

Each epoch: the compiled ``fit_loop`` orders the examples (with ``shuffle``,
the seeded permutation :func:`epoch_order` of ``(seed, epoch)``), gathers every
minibatch and runs every step inside one native call, recording each step's
loss.  Between epochs, in Python: validation, early stopping, the progress bar
and callbacks.  When there are none of these (``progress=False`` or no TTY, no
validation, no callbacks), one native call runs as many epochs as take about
``CHUNK_SECONDS``; the result is the same, epoch for epoch.

A non-finite loss -- or an update that leaves the parameters or optimizer state
non-finite with the loss still finite -- is handled by ``on_nan``: ``"stop"``
(default) restores the last finite weights, those from before the failing step
(the epoch is replayed from its start snapshot, which is exact because steps are
deterministic), and ends training with a message in ``History.stop_reason``;
``"raise"`` does the same and raises ``NumericsError``; ``"continue"`` carries on
through the whole epoch.  In numerics mode (``check_numerics=True``) the first
non-finite value inside any kernel raises ``NumericsError`` whatever ``on_nan``
says, with the weights from before that step.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from graphc.errors import FeedError, GraphError, NumericsError
from graphc.kernels import elementwise as K_ew
from graphc.kernels import gather as K_gather


@dataclass
class History:
    """Per-epoch records of a ``fit`` run.

    ``samples_per_s`` of epochs that ran in one native call together is their average.
    """

    epochs: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    samples_per_s: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    stopped_early: bool = False
    stop_reason: str = ""

    def as_dict(self) -> dict:
        return {k: v for k, v in vars(self).items()}


def _data_dict(data) -> dict[str, np.ndarray]:
    if hasattr(data, "x") and hasattr(data, "y"):
        return {"x": data.x, "y": data.y}
    if isinstance(data, Mapping):
        return dict(data)
    raise FeedError(f"fit data must be a dict of name -> array or a Dataset, got "
                    f"{type(data).__name__}")


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which ``fit(shuffle=True, seed=seed)`` visits ``n`` examples in
    epoch ``epoch``: a permutation of ``range(n)`` that depends on nothing else.

    The same function runs inside the native epoch loop (``graphc.kernels.gather``);
    call it to replay a ``fit`` by hand.
    """
    out = np.empty(n, dtype=np.int64)
    K_gather.epoch_order(out, np.uint64(seed % 2**64), np.uint64(epoch % 2**64))
    return out


def drive_epochs(step: Callable, feeds: dict[str, np.ndarray], perm: np.ndarray, bs: int,
                 lrs: np.ndarray, losses: np.ndarray, stop_on_nan: bool, shuffle: bool,
                 seed: int, epoch0: int) -> int:
    """The compiled ``fit_loop``, driven from Python (the reference backend, numerics
    mode): ``step(batch, n, lr, s)`` runs the call's 0-based step ``s`` on a batch of
    ``n`` rows and returns its loss.  Returns how many steps ran."""
    total = perm.size
    nb = -(-total // bs)
    for ep in range(lrs.size):
        if shuffle:
            perm[:] = epoch_order(seed, epoch0 + ep, total)
        for b in range(nb):
            s = ep * nb + b
            idx = perm[b * bs:(b + 1) * bs]
            losses[s] = step({k: v[idx] for k, v in feeds.items()}, idx.size, float(lrs[ep]), s)
            if stop_on_nan and not np.isfinite(losses[s]):
                return s + 1
    return lrs.size * nb


# A native call runs several epochs when nothing needs Python between them; it is sized
# to take about this long, so Ctrl-C (which native code cannot see) is felt soon.
CHUNK_SECONDS = 0.25
MAX_CHUNK_STEPS = 1 << 20  # and records at most this many losses (8 MB)


def fit(program, data, epochs: int = 1, batch_size: int = 32, validation=None,
        shuffle: bool = True, seed: int | None = None, patience: int | None = None,
        progress: bool = True, callbacks: list[Callable] | None = None,
        on_nan: str = "stop") -> History:
    if program.train_graph is None:
        raise GraphError("fit needs a training program: gc.compile(loss=..., optimizer=...)")
    if not isinstance(epochs, int) or epochs < 0:
        raise GraphError(f"epochs must be a non-negative int, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise GraphError(f"batch_size must be a positive int, got {batch_size!r}")
    if on_nan not in ("stop", "raise", "continue"):
        raise GraphError(f"on_nan must be 'stop', 'raise' or 'continue', got {on_nan!r}")
    if patience is not None and validation is None:
        raise GraphError("early stopping (patience=...) needs validation data")
    if seed is not None and not isinstance(seed, int):
        raise GraphError(f"seed must be an int or None, got {seed!r}")
    feeds, total = program.feed_spec.validate(_data_dict(data), program.dtype)
    for name in feeds:
        if program.feed_spec.inputs[name][0][:1] != (None,):
            raise FeedError(f"fit: feed {name!r} has no batch dimension to iterate over")
    if not feeds:
        raise FeedError("fit: this program takes no feeds, so there are no examples to "
                        "iterate over; call step({}) instead")
    if total == 0:
        raise FeedError(f"fit: the training data has 0 examples (feeds "
                        f"{', '.join(sorted(feeds))} have batch size 0)")
    val = None
    if validation is not None:
        val, _ = program.feed_spec.validate(_data_dict(validation), program.dtype)
    history = History()
    seed = program.seed if seed is None else seed
    best = (np.inf, None, 0)
    bad_epochs = 0
    steps_per_epoch = -(-total // batch_size)
    sizes = np.full(steps_per_epoch, batch_size, dtype=np.float64)
    sizes[-1] = total - batch_size * (steps_per_epoch - 1)
    perm = np.arange(total, dtype=np.int64)  # shuffle=True rewrites it every epoch
    bar = _progress(progress, epochs, steps_per_epoch)
    # Several epochs per native call when nothing runs between epochs; the first call
    # runs one epoch, to time it.
    several = bar is None and val is None and not callbacks
    chunk = 1
    stop = on_nan != "continue"
    try:
        left = epochs
        while left > 0:
            n_ep = min(chunk, left) if several else 1
            losses = np.empty(n_ep * steps_per_epoch)
            # Epochs count on from earlier fits (and loaded models), so schedules and
            # shuffling resume where they stopped.
            epoch0 = program.epoch
            snapshot = program.arena.data.copy() if stop else None
            step0 = program.step_count
            t0 = time.perf_counter()
            done = program.run_epochs(feeds, perm, batch_size, losses, stop, n_ep, shuffle, seed,
                                      in_order=not shuffle)
            dt = time.perf_counter() - t0
            if stop and done and n_ep > 1 and not (np.isfinite(losses[done - 1])
                                                   and _finite(program)):
                # Something went non-finite: redo these epochs one by one (steps are
                # deterministic), where the step that did it is found and undone.
                program.arena.data[...] = snapshot
                program.step_count = step0
                several = False
                continue
            if stop and done:
                msg = _check_epoch(program, feeds, perm, batch_size, losses, done, snapshot,
                                   step0, epoch0, steps_per_epoch)
                if msg:
                    history.stopped_early, history.stop_reason = True, msg
                    if on_nan == "raise":
                        raise NumericsError(msg)
                    break
            left -= n_ep
            if several:
                chunk = int(min(max(1.0, CHUNK_SECONDS * n_ep / max(dt, 1e-9)),
                                MAX_CHUNK_STEPS // steps_per_epoch or 1))
            rate = total * n_ep / dt if dt > 0 else float("inf")
            for e in range(n_ep):
                epoch = program.epoch
                per_step = losses[e * steps_per_epoch:(e + 1) * steps_per_epoch]
                epoch_loss = float((per_step * sizes).sum() / total)
                program.epoch += 1
                history.epochs.append(epoch)
                history.loss.append(epoch_loss)
                history.samples_per_s.append(rate)
            post = {"loss": f"{epoch_loss:.4f}", "samples/s": f"{rate:,.0f}"}
            if val is not None:
                vl, va = program.evaluate_checked(val)
                history.val_loss.append(vl)
                history.val_accuracy.append(va)
                post["val_loss"] = f"{vl:.4f}"
                if not np.isnan(va):
                    post["val_acc"] = f"{va:.4f}"
                if vl < best[0]:
                    # The step count goes with the weights: Adam's bias correction reads it.
                    best = (vl, program.arena.data.copy(), program.step_count)
                    history.best_epoch = epoch
                    bad_epochs = 0
                else:
                    bad_epochs += 1
            if bar is not None:
                bar.set_postfix(post, refresh=False)
                bar.update(1)
            for cb in callbacks or []:
                if cb(epoch, history) is False:
                    history.stopped_early, history.stop_reason = True, f"callback stopped at epoch {epoch}"
                    break
            if history.stopped_early:
                break
            if patience is not None and bad_epochs >= patience:
                history.stopped_early = True
                history.stop_reason = (f"validation loss did not improve for {patience} epochs; "
                                       f"restored epoch {history.best_epoch}")
                break
    finally:
        if bar is not None:
            bar.close()
    if patience is not None and best[1] is not None:
        program.arena.data[...] = best[1]
        program.step_count = best[2]
    return history


def _finite(program) -> bool:
    # The kernel: np.isfinite(...).all() builds a bool array as large as the arena.
    return bool(K_ew.all_finite(program.arena.data))


def _check_epoch(program, feeds, perm, bs: int, losses: np.ndarray, done: int, snapshot,
                 step0: int, epoch: int, steps: int) -> str:
    """After an epoch run with a stop on non-finite losses: "" if all is well, else
    roll back to the last finite weights and say what happened.

    The epoch stopped at a non-finite loss, or its losses were finite but a step made
    the parameters or optimizer state non-finite (an overflowing update).  Either way
    the epoch is replayed from its start snapshot one step at a time -- exact, since
    steps are deterministic -- and stops before the first step whose loss or
    resulting state is not finite.
    """
    last = float(losses[done - 1])
    if np.isfinite(last) and _finite(program):
        return ""
    limit = done - 1 if not np.isfinite(last) else done
    program.arena.data[...] = snapshot
    program.step_count = step0
    scratch = np.zeros(1)
    kept = 0
    for k in range(limit):
        before = program.arena.data.copy()
        program.run_epochs(feeds, perm[k * bs:(k + 1) * bs], bs, scratch)
        if not _finite(program):
            program.arena.data[...] = before
            program.step_count -= 1
            break
        kept += 1
    step = kept + 1
    if kept == limit and not np.isfinite(last):
        what = f"the loss was {last}"
    else:
        what = (f"the loss was finite ({float(losses[kept]):.6g}) but the update made the "
                "parameters or optimizer state non-finite")
    return (f"fit stopped at epoch {epoch}, step {step} of {steps} (global step "
            f"{step0 + step}): {what}. The weights are those from before that step, the last "
            "finite ones. Try a lower learning rate or clip_norm=..., check the data for "
            "NaN/inf, or compile with check_numerics=True to find the op that first went "
            "non-finite; fit(on_nan='continue') trains on regardless, on_nan='raise' raises "
            "NumericsError.")


def _progress(progress: bool, epochs: int, steps: int):
    if not progress or not sys.stderr.isatty():
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=epochs, unit="epoch", desc="fit", leave=True)
