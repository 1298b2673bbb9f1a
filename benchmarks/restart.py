"""Restarts with the snapshot cache, against a cold start, on one corpus, in one
process (issue #14: an unchanged restart <= 1/10 of a cold start at 500k, a restart
after a one-record change <= 1/5)::

    .venv/bin/python benchmarks/restart.py 500000     # corpus .bench-cache/corpus-v3-500000.git

A copy of the corpus is the origin, cloned. In order, each a new process timing
``boot`` (the start-up reconcile included; RSS after it), then ``close``:

1. cold start, cache off (``CFP_SNAPSHOT_CACHE=0``): the figure restarts are compared with;
2. cold start, cache on: the same, plus writing the cache before serving;
3. restart, branch unchanged: the cache is read, nothing derived;
4. restart after one upstream commit editing one record: the cache is read, the
   start-up reconcile fetches and fast-forwards (the reload path);
5. restart after the local branch moved past the cache while stopped (a fetch into
   the clone by hand): the cache is read and the one-record change derived at start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from benchmarks.changes import bench_settings, edit_upstream, origin_and_clone, require_corpus
from hotreload.data.cache import CACHE_FILE
from hotreload.service.runtime import boot


def one_start(clone: str, origin: str, cache_on: bool) -> None:
    """In a process of its own (a restart is a new process): boot, then stop."""
    settings = bench_settings(clone, origin, snapshot_cache=cache_on)
    started = time.perf_counter()
    runtime = boot(settings)
    took = time.perf_counter() - started
    rss = psutil.Process().memory_info().rss / 2**20
    stopping = time.perf_counter()
    commit = runtime.holder.current.commit
    runtime.close()
    print(json.dumps({"boot_s": took, "rss_mb": rss, "commit": commit,
                      "close_s": time.perf_counter() - stopping}))


def main(argv: list[str]) -> int:
    if argv[0] == "--one-start":
        one_start(argv[1], argv[2], argv[3] == "on")
        return 0
    records, label = argv[0], (argv[1] if len(argv) > 1 else "")
    require_corpus(records)
    with origin_and_clone(records, "restart-") as (origin, clone):

        def start(name: str, cache_on: bool = True) -> float:
            out = subprocess.run([sys.executable, __file__, "--one-start", clone, origin, "on" if cache_on else "off"],
                                 check=True, capture_output=True, text=True,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}).stdout
            got = json.loads(out.strip().splitlines()[-1])
            print(f"{label} {records} records: {name}: {got['boot_s']:.2f} s, RSS {got['rss_mb']:.0f} MB "
                  f"(serving {got['commit'][:12]}; the stop took {got['close_s']:.2f} s)", flush=True)
            return float(got["boot_s"])

        cold = start("cold start, cache off", cache_on=False)
        cold_with_write = start("cold start, cache on (writes it)")
        size = (Path(clone) / CACHE_FILE).stat().st_size
        unchanged = start("restart, branch unchanged")
        edit_upstream(origin, 1)
        upstream = start("restart after one upstream record edit (start-up reconcile)")
        edit_upstream(origin, 1)
        subprocess.run(["git", "-C", clone, "fetch", "-q", origin, "published:published"], check=True)
        local = start("restart after the local branch moved one record past the cache")
    print(f"{label} {records} records: cache file {size / 2**20:.0f} MiB; writing it added "
          f"{cold_with_write - cold:.1f} s to the cold start; restart / cold start: unchanged "
          f"1/{cold / unchanged:.0f}, one upstream edit 1/{cold / upstream:.0f}, "
          f"local branch moved 1/{cold / local:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
