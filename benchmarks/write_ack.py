"""What a write's 2xx costs in each ``CFP_WRITE_ACK`` mode: ``PATCH`` latency (the full API
path, in-process through Falcon's test client) with the origin at a local path and served by
``git daemon`` on loopback (git's own ``receive-pack``). Sequential writes of one project's
title, a few warm-ups not counted; prints p50 and p99 per (remote, mode)::

    .venv/bin/python benchmarks/write_ack.py 50000 --writes 60

In ``local`` the push daemon delivers each commit in the background (not in the figure);
in ``remote`` the figure includes the compare-and-swap push: the remote round trip is the
price of an acknowledgement the remote holds. The corpus is made by the benchmarks
(``make bench``, or ``BENCH_RECORDS=N``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from falcon import testing

from benchmarks.changes import origin_and_clone, require_corpus
from hotreload.api.app import create_app
from hotreload.config import Settings
from hotreload.service.runtime import boot
from simulator.server import GitDaemon

TOKEN = "w" * 40


def latencies(clone: str, remote: str, mode: str, writes: int, warmup: int = 5) -> list[float]:
    rt = boot(Settings(clone, remote, "published", "x" * 40, TOKEN, upkeep_seconds=0, poll_seconds=0,
                       write_ack=mode))
    try:
        client = testing.TestClient(create_app(rt))
        slug = next(p.slug for p in rt.holder.current.table("projects").by_id.values()  # type: ignore[attr-defined]
                    if not p.deleted_at)
        spent = []
        for n in range(warmup + writes):
            started = time.perf_counter()
            resp = client.simulate_patch(f"/api/projects/{slug}", json={"title": f"Write {mode} {n}"},
                                         headers={"Authorization": f"Bearer {TOKEN}"})
            spent.append((time.perf_counter() - started) * 1000)
            assert resp.status_code == 200 and resp.json["meta"]["pushed"] is (mode == "remote"), resp.text
        assert rt.push_daemon is not None and rt.push_daemon.flush(60)  # every write reached the remote
        return spent[warmup:]
    finally:
        rt.close()


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("records")
    parser.add_argument("--writes", type=int, default=60)
    args = parser.parse_args(argv)
    require_corpus(args.records)
    for where in ("local path", "git://"):
        with origin_and_clone(args.records, "write-ack-") as (origin, clone):
            daemon = GitDaemon(Path(origin).parent) if where == "git://" else None
            try:
                remote = daemon.url("origin.git") if daemon else origin
                for mode in ("local", "remote"):
                    ms = latencies(clone, remote, mode, args.writes)
                    print(f"{args.records} records, {where}, CFP_WRITE_ACK={mode}: {len(ms)} PATCHes, "
                          f"p50 {statistics.median(ms):.1f} ms, p99 {p99(ms):.1f} ms, max {max(ms):.1f} ms",
                          flush=True)
            finally:
                if daemon:
                    daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
