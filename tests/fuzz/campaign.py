"""A long differential-fuzzing campaign, in rounds, logging as it goes.

    python -m tests.fuzz.campaign --cases 10000 --jobs 2 --log fuzz-campaign.log

Each round draws ``--round`` cases from hypothesis with its own seed
(``--seed`` + round number), runs them on the worker pool (see
:mod:`.runner`) and appends progress and every failure report to the log.
Unlike the CI test it never stops at a failure, so one run finds as many
distinct problems as it can.  Run it from the repository root.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time


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
    args = ap.parse_args(argv)
    if args.jobs:
        os.environ["GRAPHC_FUZZ_JOBS"] = str(args.jobs)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    from fuzz.runner import draw_cases, run_cases

    if args.replay:
        from fuzz.harness import check_case

        os.environ.setdefault("GRAPHC_CACHE_DIR", tempfile.mkdtemp(prefix="graphc-fuzz-cache-"))
        seed, n, i = (int(v) for v in args.replay.split(":"))
        case = draw_cases(n, seed, args.distinct)[i]
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

        flag = "" if args.distinct else " --no-distinct"
        say(f"campaign: {args.cases} cases, rounds of {args.round}, seeds from {args.seed}, "
            + ("a new network every case" if args.distinct else "networks may repeat"))
        r = 0
        while done < args.cases:
            seed = args.seed + r
            n = min(args.round, args.cases - done)
            todo = draw_cases(n, seed, args.distinct)
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
            cpu += sum(res.case_cpu)
            failed += len(res.failures)
            first, *rest = res.summary().splitlines()
            say(f"round {r} (GRAPHC_FUZZ_SEED={seed}, --replay {seed}:{n}:I{flag}): {first}; "
                f"total {done} cases, {graphs} networks, {failed} failures, {cpu:.0f} CPU s")
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
