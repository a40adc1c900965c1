"""A process of the cache tests: build a small program, take one step, report as JSON.

Usage: ``python cache_child.py [GO_FILE]``.  With GO_FILE, print ``ready`` once
graphc is imported and wait until GO_FILE exists before compiling, so that
several processes can be released at the same moment.  The cache directory is
``$GRAPHC_CACHE_DIR``.
"""

import json
import os
import sys
import time
import warnings

import numpy as np

import graphc as gc


def build():
    x = gc.input("x", (None, 5))
    y = gc.input("y", (None,), dtype="int64")
    h = gc.dense(x, 7, activation="relu", name="h0")
    out = gc.dense(h, 3, name="out")
    return gc.compile(loss=gc.softmax_cross_entropy(out, y), outputs={"out": out},
                      optimizer=gc.optim.SGD(lr=0.1, momentum=0.9), dtype="float32", seed=0)


def feeds():
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((6, 5)).astype(np.float32), "y": rng.integers(0, 3, 6)}


def main():
    if len(sys.argv) > 1:
        print("ready", flush=True)
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.0005)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        net = build()
        loss = net.step(feeds())
        out = net.run({"x": feeds()["x"]})["out"]
    fn = net._impl.entries["train_step"].fn
    print(json.dumps({
        "loss": loss,
        "out": out.tolist(),
        "params": {k: v.tolist() for k, v in net.params.items()},
        "hits": sum(fn.stats.cache_hits.values()),
        "misses": sum(fn.stats.cache_misses.values()),
        "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)
                     and str(w.message).startswith("graphc")],
        "path": str(net._impl.path),
        "on_disk": net._impl.on_disk,
        "key": net._impl.key,
    }))


if __name__ == "__main__":
    main()
