"""A long differential-fuzzing campaign, in rounds, logging as it goes.

    python -m tests.fuzz.campaign --cases 10000 --jobs 2 --log fuzz-campaign.log

Each round draws ``--round`` cases from hypothesis with its own seed
(``--seed`` + round number), runs them on the worker pool (see
:mod:`.runner`) and appends progress and every failure report to the log.
Unlike the CI test it never stops at a failure, so one run finds as many
distinct problems as it can.  Run it from the repository root.

``--seen FILE`` makes "distinct networks" mean distinct across campaigns:
every round skips the networks FILE lists and, once it has run, appends its own
under a ``# seed S`` line, so FILE's keys are the networks ever tested (one
campaign at a time per FILE).  ``--record SEED:ROUNDS`` appends the networks of
rounds run without it (drawn again, not run).  A ``--replay`` of a round drawn
with ``--seen`` needs the same FILE: it skips what FILE held before that round.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time


def read_seen(path: str | None, before_seed: int | None = None) -> set[str]:
    """The network keys in the ``--seen`` file: all, or those listed before the
    round of ``before_seed`` (what that round skipped)."""
    keys: set[str] = set()
    if not path or not os.path.exists(path):
        return keys
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if line == f"# seed {before_seed}":
                break
            if line and not line.startswith("#"):
                keys.add(line)
    return keys


def record_seen(path: str, seed: int, keys) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"# seed {seed}\n" + "".join(f"{k}\n" for k in keys))
        f.flush()
        os.fsync(f.fileno())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--round", type=int, default=250, help="cases per hypothesis seed")
    ap.add_argument("--seed", type=int, default=int(time.time()) % 100000)
    ap.add_argument("--jobs", type=int, default=None)
    ap.add_argument("--log", default="fuzz-campaign.log")
    ap.add_argument("--distinct", action=argparse.BooleanOptionalAction, default=True,
                    help="no two cases of a round share a network (default); --no-distinct "
                         "lets hypothesis repeat a network with other feeds, as the "
                         "campaigns logged before seed 12000 did (their --replay needs it)")
    ap.add_argument("--replay", metavar="SEED:N:I",
                    help="rerun case I of the N drawn with SEED (as in the log) and print it")
    ap.add_argument("--seen", metavar="FILE",
                    help="skip the networks FILE lists, and add each round's (see above)")
    ap.add_argument("--record", metavar="SEED:ROUNDS",
                    help="append to --seen the networks of ROUNDS rounds of --round cases "
                         "from SEED, as drawn then (with --distinct or --no-distinct), and exit")
    args = ap.parse_args(argv)
    if args.record and not args.seen:
        ap.error("--record needs --seen FILE")
    if args.seen and not args.distinct and not args.record:
        ap.error("--seen skips networks, so it needs --distinct")
    if args.jobs:
        os.environ["GRAPHC_FUZZ_JOBS"] = str(args.jobs)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from fuzz.runner import draw_cases, network_key, run_cases

    if args.record:
        seed, rounds = (int(v) for v in args.record.split(":"))
        for r in range(rounds):
            drawn = draw_cases(args.round, seed + r, args.distinct)
            record_seen(args.seen, seed + r, dict.fromkeys(network_key(c) for c in drawn))
        print(f"{args.seen}: {len(read_seen(args.seen))} distinct networks")
        return 0

    if args.replay:
        from fuzz.harness import check_case

        os.environ.setdefault("GRAPHC_CACHE_DIR", tempfile.mkdtemp(prefix="graphc-fuzz-cache-"))
        seed, n, i = (int(v) for v in args.replay.split(":"))
        case = draw_cases(n, seed, args.distinct, read_seen(args.seen, seed))[i]
        print(case.snippet())
        check_case(case)
        print("no difference")
        return 0

    t0 = time.perf_counter()
    done = failed = graphs = 0
    cpu = 0.0
    with open(args.log, "a", encoding="utf-8") as log:
        def say(msg: str) -> None:
            line = f"[{time.strftime('%H:%M:%S')} +{time.perf_counter() - t0:7.0f}s] {msg}"
            print(line, flush=True)
            log.write(line + "\n")
            log.flush()

        flag = ("" if args.distinct else " --no-distinct") + (
            f" --seen {args.seen}" if args.seen else "")
        say(f"campaign: {args.cases} cases, rounds of {args.round}, seeds from {args.seed}, "
            + ("a new network every case" if args.distinct else "networks may repeat"))
        r = 0
        while done < args.cases:
            seed = args.seed + r
            n = min(args.round, args.cases - done)
            todo = draw_cases(n, seed, args.distinct, read_seen(args.seen))
            os.environ["GRAPHC_FUZZ_SEED"] = str(seed)  # named in the failure reports
            # Never the user's ~/.cache: a private compile cache per round (~1 MB a case).
            cache = tempfile.mkdtemp(prefix="graphc-fuzz-cache-")
            os.environ["GRAPHC_CACHE_DIR"] = cache
            def progress(k: int, total: int, res, r=r) -> None:
                if k % 25 == 0:
                    say(f"round {r}: {k}/{total} cases, {len(res.failures)} failures, "
                        f"{sum(res.case_cpu):.0f} CPU s")

            try:
                res = run_cases(todo, progress=progress)
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            done += res.cases
            graphs += res.graphs
            ever = ""
            if args.seen:
                record_seen(args.seen, seed, dict.fromkeys(network_key(c) for c in todo))
                ever = f", {len(read_seen(args.seen))} networks in {args.seen}"
            cpu += sum(res.case_cpu)
            failed += len(res.failures)
            first, *rest = res.summary().splitlines()
            say(f"round {r} (GRAPHC_FUZZ_SEED={seed}, --replay {seed}:{n}:I{flag}): {first}; "
                f"total {done} cases, {graphs} networks, {failed} failures, {cpu:.0f} CPU s"
                + ever)
            log.write("\n".join(rest) + "\n")
            for f in res.failures:
                log.write(f"\n===== failure in round {r} (GRAPHC_FUZZ_SEED={seed}) =====\n{f}\n")
                log.flush()
            r += 1
        say(f"done: {done} cases ({graphs} graphs) in {time.perf_counter() - t0:.0f} s, "
            f"{failed} failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
