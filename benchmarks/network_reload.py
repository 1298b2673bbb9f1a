"""One-record reloads over the network transport: the cached corpus served by
``git daemon`` on loopback (git's own ``upload-pack``, as a git host runs it), the
service fetching through dulwich's network client. In one process: a start, two
warm-up reloads, then ``--rounds`` one-record reloads; prints each and the medians::

    .venv/bin/python benchmarks/network_reload.py 50000
    .venv/bin/python benchmarks/network_reload.py 500000 --rounds 9

The corpus is made by the benchmarks (``make bench``, or ``BENCH_RECORDS=N``). The
clone is copied from the local path (a first clone over the network is not what is
measured); each round commits one record edit to the origin, then reloads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.changes import edit_upstream, origin_and_clone, require_corpus
from benchmarks.phases import SPENT, timed
from hotreload.config import Settings
from hotreload.git import transport
from hotreload.service.runtime import boot
from simulator.server import GitDaemon


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records")
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args(argv)
    require_corpus(args.records)
    timed(transport, "fetch_branch", "fetch")  # the transport's own fetch, under the reloader's
    with origin_and_clone(args.records, "network-") as (origin, clone):
        daemon = GitDaemon(Path(origin).parent)
        try:
            rt = boot(Settings(clone, daemon.url("origin.git"), "published", "x" * 40, None,
                               upkeep_seconds=0, poll_seconds=0))
            try:
                for _ in range(2):
                    rt.reloader.reload(edit_upstream(origin, 1))
                totals, fetches = [], []
                for n in range(args.rounds):
                    commit = edit_upstream(origin, 1)
                    SPENT.clear()
                    result = rt.reloader.reload(commit)
                    assert result.outcome == "fast-forwarded", result
                    totals.append(result.duration_ms)
                    fetches.append(SPENT["fetch"])
                    print(f"round {n + 1}: {result.duration_ms:.0f} ms (fetch {fetches[-1]:.0f} ms)", flush=True)
            finally:
                rt.close()
        finally:
            daemon.stop()
    print(f"{args.records} records over git://, median of {len(totals)} one-record reloads: "
          f"{statistics.median(totals):.0f} ms (fetch {statistics.median(fetches):.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
