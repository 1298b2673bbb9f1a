"""One-record reloads and pushes over the network transport: the cached corpus served
by ``git daemon`` on loopback (git's own ``upload-pack`` and ``receive-pack``, as a git
host runs them), the service fetching and pushing through dulwich's network client.
In one process: a start, two warm-up reloads, ``--rounds`` one-record reloads, then
``--pushes`` rounds of one write (a new project) pushed by itself (the first not
counted); prints each and the medians::

    .venv/bin/python benchmarks/network_reload.py 50000
    .venv/bin/python benchmarks/network_reload.py 500000 --rounds 9

The corpus is made by the benchmarks (``make bench``, or ``BENCH_RECORDS=N``). The
clone is copied from the local path (a first clone over the network is not what is
measured); each reload round commits one record edit to the origin, then reloads.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
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
    parser.add_argument("--pushes", type=int, default=6)
    args = parser.parse_args(argv)
    require_corpus(args.records)
    timed(transport, "fetch_branch", "fetch")  # the transport's own fetch, under the reloader's
    with origin_and_clone(args.records, "network-") as (origin, clone):
        daemon = GitDaemon(Path(origin).parent)
        try:
            rt = boot(Settings(clone, daemon.url("origin.git"), "published", "x" * 40, "w" * 40,
                               upkeep_seconds=0, poll_seconds=0))
            assert rt.push_daemon is not None
            rt.push_daemon.stop()  # each write is pushed here, timed
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
                pushes = []
                for n in range(args.pushes):
                    rt.writer.create("projects", {"slug": f"pushed-{n}-{time.time_ns()}", "title": "Pushed"},
                                     "/api/projects")
                    head = rt.repo.branch_commit("published")
                    assert head is not None
                    started = time.perf_counter()
                    rt.repo.push_ref(daemon.url("origin.git"), head, b"refs/heads/published")
                    pushes.append((time.perf_counter() - started) * 1000)
                    print(f"push {n + 1}: {pushes[-1]:.0f} ms", flush=True)
            finally:
                rt.close()
        finally:
            daemon.stop()
    print(f"{args.records} records over git://, median of {len(totals)} one-record reloads: "
          f"{statistics.median(totals):.0f} ms (fetch {statistics.median(fetches):.0f} ms)")
    if len(pushes) > 1:
        print(f"{args.records} records over git://, median of {len(pushes) - 1} one-write pushes: "
              f"{statistics.median(pushes[1:]):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
