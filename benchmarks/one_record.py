"""Cold start and one-record reloads on one corpus, in one process: the figures
issue #14 compares across sizes (reload at 500k against 50k, and against the
500k cold start). Run it for two versions of the code alternately to compare
them side by side (each from its own worktree)::

    .venv/bin/python benchmarks/one_record.py 500000           # corpus .bench-cache/corpus-v3-500000.git
    .venv/bin/python benchmarks/one_record.py 500000 --rss 100 # then RSS across 100 more reloads
    .venv/bin/python benchmarks/one_record.py 500000 --searched --rss 100  # every corpus word searched first
    git worktree add /tmp/before <rev> && ln -s $PWD/.bench-cache /tmp/before/
    (cd /tmp/before && PYTHONPATH=src:. ../main/.venv/bin/python benchmarks/one_record.py 500000 before)

The corpus is made by the benchmarks (``make bench``, or ``BENCH_RECORDS=N``); a copy
of it is the origin, cloned; each round commits one edited record upstream (as an
outside author) and reloads. Prints the boot time and the median of 9 reloads
after 2 warm-ups, with every round. Each reload runs on one of four long-lived
threads in turn, as webhook reloads run on the server's threads: glibc gives each
thread its own heap arena, so what a reload frees is reused (or handed back) per
thread, and a benchmark on one thread would hide it.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from benchmarks.changes import (
    PeakRss,
    bench_settings,
    edit_upstream,
    learn_every_word,
    origin_and_clone,
    require_corpus,
)
from hotreload.service.runtime import boot


def main(argv: list[str]) -> int:
    rss_reloads = 0
    searched = "--searched" in argv
    argv = [a for a in argv if a != "--searched"]
    if "--rss" in argv:
        at = argv.index("--rss")
        rss_reloads = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2:]
    records, label = argv[0], (argv[1] if len(argv) > 1 else "")
    require_corpus(records)
    with origin_and_clone(records, "one-record-") as (origin, clone):
        started = time.perf_counter()
        rt = boot(bench_settings(clone, origin))
        boot_s = time.perf_counter() - started
        threads = [ThreadPoolExecutor(1) for _ in range(4)]
        rounds = itertools.count()

        def one_reload() -> float:
            commit = edit_upstream(origin, 1)
            return threads[next(rounds) % 4].submit(rt.reloader.reload, commit).result().duration_ms

        try:
            if searched:
                learn_every_word(rt.holder.current)
            for _ in range(2):
                one_reload()
            process = psutil.Process()
            times, timed_rss = [], []
            for _ in range(9):
                times.append(one_reload())
                timed_rss.append(process.memory_info().rss / 2**20)
            if rss_reloads:
                # the envelope, not one sample: the heap is trimmed only every few reloads
                # (decision 72), so one sample depends on where in that cycle it falls
                steady = max(timed_rss)
                sampler = PeakRss(process)
                after_each = []
                with sampler:
                    for _ in range(rss_reloads):
                        one_reload()
                        after_each.append(process.memory_info().rss / 2**20)
                after = max(after_each[-10:])
                marks = [round(max(after_each[i:i + 25])) for i in range(0, rss_reloads, 25)]
                print(f"{label} {records} records: RSS {steady:.0f} MB steady (the most after any of the 9 "
                      f"timed reloads), {after:.0f} MB after {rss_reloads} more one-record reloads (the most "
                      f"after any of the last 10: {after / steady:.2f}x); the most per 25: {marks}; peak while "
                      f"reloading {sampler.peak / 2**20:.0f} MB ({sampler.peak / 2**20 / steady:.2f}x)")
        finally:
            for thread in threads:
                thread.shutdown()
            rt.close()
    median = statistics.median(times)
    print(f"{label} {records} records: cold start {boot_s:.1f} s; one-record reload median {median:.0f} ms "
          f"(1/{boot_s * 1000 / median:.0f} of the cold start); rounds {[round(t) for t in times]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
