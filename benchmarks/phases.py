"""Where a one-record reload's time goes: in one process, cold start, then one-record
reloads, each with the time spent in its main steps (wall time of each function,
summed per reload; nested steps are counted in their callers too). Prints every
round and the medians::

    .venv/bin/python benchmarks/phases.py 500000      # corpus .bench-cache/corpus-v3-500000.git
    .venv/bin/python benchmarks/phases.py 50000 --rounds 15
    .venv/bin/python benchmarks/phases.py 500000 --searched   # every corpus word searched first

The corpus is made by the benchmarks (``make bench``, or ``BENCH_RECORDS=N``).
"""

from __future__ import annotations

import argparse
import collections
import functools
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.changes import bench_settings, edit_upstream, learn_every_word, origin_and_clone, require_corpus
from hotreload.data import snapshot
from hotreload.data.facets import ProjectFacets
from hotreload.git import reconcile, transport
from hotreload.service import reloader, swap
from hotreload.service.runtime import boot

SPENT: dict[str, float] = collections.defaultdict(float)

STEPS = [  # (module or class, function, label), outermost first
    (reloader.Reloader, "_fetch", "fetch"),
    (transport, "objects_for_commits", "  fetch: find new objects"),
    (transport, "add_raw_objects", "  fetch: write them"),
    (reloader.Reloader, "_plan_and_build", "plan and build"),
    (swap, "build_incremental", "  build"),  # by the name swap.build calls
    (snapshot, "_apply_table", "    tables"),
    (snapshot, "_apply_index", "    indices"),
    (snapshot, "_derive_search", "    search"),
    (ProjectFacets, "of_snapshot", "    project facets"),
    (snapshot.Snapshot, "warm_from", "  warm"),
    (reconcile, "apply", "apply (under the lock)"),
]


def timed(owner: Any, name: str, label: str) -> None:
    real = getattr(owner, name)

    @functools.wraps(real)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            SPENT[label] += (time.perf_counter() - started) * 1000

    setattr(owner, name, wrapper)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records")
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--searched", action="store_true",
                        help="search every corpus word before the reloads, so each reload patches the "
                             "ranker's learnt postings (as on a replica serving searches)")
    args = parser.parse_args(argv)
    require_corpus(args.records)
    for owner, name, label in STEPS:
        timed(owner, name, label)
    with origin_and_clone(args.records, "phases-") as (origin, clone):
        started = time.perf_counter()
        rt = boot(bench_settings(clone, origin))
        print(f"{args.records} records: cold start {time.perf_counter() - started:.1f} s", flush=True)
        try:
            if args.searched:
                learn_every_word(rt.holder.current)
            for _ in range(2):
                rt.reloader.reload(edit_upstream(origin, 1))
            rounds = []
            for n in range(args.rounds):
                commit = edit_upstream(origin, 1)
                SPENT.clear()
                total = rt.reloader.reload(commit).duration_ms
                rounds.append((total, dict(SPENT)))
                print(f"round {n + 1}: {total:.0f} ms", flush=True)
        finally:
            rt.close()
    print(f"median of {len(rounds)} one-record reloads: {statistics.median(t for t, _ in rounds):.0f} ms")
    for _, _, label in STEPS:
        print(f"  {label:28s} {statistics.median(spent.get(label, 0.0) for _, spent in rounds):7.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
