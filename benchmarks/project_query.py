"""What a never-asked project search costs in the service's own code, without HTTP: in one
process, cold start, then project queries of three random corpus words (none asked before
in that order), each answered as ``GET /api/projects?q=...`` answers it (results, total,
facets, the first page's records). Prints the median of each pass::

    .venv/bin/python benchmarks/project_query.py 50000
    .venv/bin/python benchmarks/project_query.py 500000 --queries 100

The first pass includes learning each word's postings (decision 61); the second is
steady. The corpus is made by the benchmarks (``make bench``, or ``BENCH_RECORDS=N``).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.changes import bench_settings, origin_and_clone, require_corpus
from hotreload.api.read import _project_query, project_window
from hotreload.service.runtime import boot
from simulator.corpus import WORDS


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records")
    parser.add_argument("--queries", type=int, default=60)
    args = parser.parse_args(argv)
    require_corpus(args.records)
    with origin_and_clone(args.records, "project-query-") as (origin, clone):
        started = time.perf_counter()
        rt = boot(bench_settings(clone, origin))
        print(f"{args.records} records: cold start {time.perf_counter() - started:.1f} s", flush=True)
        try:
            snap = rt.holder.current
            rng = random.Random(5)
            for label in ("first pass (learning)", "steady"):
                spent, totals = [], []
                for _ in range(args.queries):
                    q = " ".join(rng.sample(WORDS, 3))
                    started = time.perf_counter()
                    results, _ = _project_query(snap, q, None, ())
                    project_window(snap, results, 0, 20)
                    spent.append((time.perf_counter() - started) * 1000)
                    totals.append(len(results))
                print(f"{label}: median {statistics.median(spent):.2f} ms a query "
                      f"({args.queries} queries, median {statistics.median(totals):.0f} matches)", flush=True)
        finally:
            rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
