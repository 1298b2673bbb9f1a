"""People and role searches as the API runs them (``SearchIndex.search``: every match,
in rank-then-id order), each query asked twice, on one snapshot: the first ask learns
the query's prefixes, the second finds them learnt. Prints the medians::

    .venv/bin/python benchmarks/people_search.py 500000     # corpus .bench-cache/corpus-v3-500000.git
    .venv/bin/python benchmarks/people_search.py 50000 --queries 40

The queries are 1-3 random corpus words (fixed seed), so two versions of the code
run from their own worktrees ask the same ones.
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
from hotreload.data.search import PEOPLE, ROLES
from hotreload.service.runtime import boot
from simulator.corpus import WORDS


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records")
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args(argv)
    require_corpus(args.records)
    with origin_and_clone(args.records, "people-search-") as (origin, clone):
        rt = boot(bench_settings(clone, origin))
        try:
            snap = rt.holder.current
            rng = random.Random(1)
            for table in (PEOPLE, ROLES):
                first, again, hits = [], [], 0
                for _ in range(args.queries):
                    query = " ".join(rng.sample(WORDS, rng.choice([1, 2, 3])))
                    for times in (first, again):
                        started = time.perf_counter()
                        hits = len(snap.search.search(table, query))
                        times.append((time.perf_counter() - started) * 1000)
                print(f"{args.records} records, {table.name}: first ask median {statistics.median(first):.1f} ms "
                      f"(max {max(first):.1f}), again {statistics.median(again):.1f} ms; last query {hits} matches",
                      flush=True)
        finally:
            rt.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
