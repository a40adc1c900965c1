"""``python -m benchmarks``: thread variables are set first, before NumPy/torch/jax load."""

from __future__ import annotations

import sys

from benchmarks._env import set_thread_env


def _threads(argv: list[str]) -> int:
    # Peek at --threads without argparse's full parse (that needs the suite, i.e. NumPy).
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if a.startswith("--threads="):
            return int(a.split("=", 1)[1])
    return 2


if __name__ == "__main__":
    set_thread_env(_threads(sys.argv[1:]))
    from benchmarks.suite import main

    raise SystemExit(main())
