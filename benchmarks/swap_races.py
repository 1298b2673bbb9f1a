"""Lost races of the optimistic swap (service/swap.py) under tests/test_writes.py's stress
load: 4 writers creating 5 records each back to back while a reloader commits upstream and
reloads 4 times, on a fresh world per run. For each ``swap.ATTEMPTS`` given, prints how
many races each write and reload lost, how many fell back to the lock, the fallbacks' lock
holds and the calls' latency (decision 87)::

    .venv/bin/python benchmarks/swap_races.py                       # 20 runs, 60 records, 3 5 8
    .venv/bin/python benchmarks/swap_races.py --records 5000 --runs 8 --attempts 5 8
"""

from __future__ import annotations

import argparse
import collections
import logging
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotreload.service import swap
from hotreload.service.runtime import boot
from tests.conftest import make_world, project_toml


class Races(logging.Handler):
    """Counts the swap's "preparing again" lines per calling thread."""

    def __init__(self) -> None:
        super().__init__()
        self.lost: collections.Counter[int] = collections.Counter()

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == logging.INFO:
            self.lost[threading.get_ident()] += 1


def one_run(records: int, races: Races, lost: dict[str, list[int]], latency: dict[str, list[float]],
            holds: dict[str, list[float]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = make_world(Path(tmp), records)
        rt = boot(world.settings())
        assert rt.push_daemon is not None
        rt.push_daemon.stop()  # as the stress test: no pushes beside what is measured
        rt.push_daemon = rt.reloader.push_daemon = rt.writer.push_daemon = None
        rt.lock._on_release = lambda hold: holds[hold.reason].append(hold.held_ms)  # type: ignore[assignment]

        def counted(kind: str, call: Callable[[], Any]) -> None:
            races.lost[threading.get_ident()] = 0
            started = time.perf_counter()
            call()
            latency[kind].append((time.perf_counter() - started) * 1000)
            lost[kind].append(races.lost[threading.get_ident()])

        def writer(w: int) -> None:
            for i in range(5):
                body = {"slug": f"zz-w{w}-{i}", "title": f"W{w} {i}"}
                counted("write", lambda body=body: rt.writer.create("projects", body, "/api/projects"))

        def reloader() -> None:
            for i in range(4):
                world.commit_upstream({f"projects/zz-up-{i}.toml": project_toml(f"zz-up-{i}", f"Up {i}")})
                counted("reload", rt.reloader.reload)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        threads.append(threading.Thread(target=reloader))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        rt.close()


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--records", type=int, default=60)
    parser.add_argument("--attempts", type=int, nargs="+", default=[3, 5, 8])
    args = parser.parse_args(argv)
    races = Races()
    logging.getLogger(swap.__name__).addHandler(races)
    logging.getLogger(swap.__name__).setLevel(logging.INFO)
    for attempts in args.attempts:
        swap.ATTEMPTS = attempts
        lost: dict[str, list[int]] = collections.defaultdict(list)
        latency: dict[str, list[float]] = collections.defaultdict(list)
        holds: dict[str, list[float]] = collections.defaultdict(list)
        for _ in range(args.runs):
            one_run(args.records, races, lost, latency, holds)
        print(f"ATTEMPTS={attempts}, {args.records} records, {args.runs} runs:")
        for kind in ("write", "reload"):
            ms = sorted(latency[kind])
            fell_back = sum(1 for n in lost[kind] if n >= attempts)
            fallback_holds = holds.get(f"{kind}-fallback", [0.0])
            per_call = dict(sorted(collections.Counter(lost[kind]).items()))
            print(f"  {kind}: {len(ms)} calls, lost races per call {per_call}; "
                  f"fell back {fell_back} ({fell_back / len(ms):.1%}), holding the lock {sum(fallback_holds):.0f} ms "
                  f"in all (max {max(fallback_holds):.1f}); latency median {statistics.median(ms):.1f} ms, "
                  f"p90 {ms[int(len(ms) * 0.9)]:.1f}, max {ms[-1]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
