"""Downstream figures (issue #22), printed; run each under ``flock -x /work/.cpu.lock``::

    .venv/bin/python benchmarks/downstream.py feed 5000 500000        # a one-record feed, by corpus size
    .venv/bin/python benchmarks/downstream.py latency 5000            # from a swap to its event and its notification
    .venv/bin/python benchmarks/downstream.py idle 50000 --streams 100 --rounds 3   # readers with idle streams

* ``feed``: in one process per size, 9 one-record reloads (after 2 warm-ups) each followed by
  10 reads of ``/api/changes?since=<the commit before>&include=records`` (Falcon's test client:
  the app's own time); the median of each round's median, and each size against the first.
* ``latency``: a real ``hotreload serve`` and one subscriber (``simulator.server.EventStream``);
  20 webhook reloads of one record (after 2 warm-ups), each on a thread of its own while the
  main thread waits for its event and its signed notification (``CFP_NOTIFY_URLS``: a receiver
  in this process): the time from the webhook's start to each (upper bounds of swap -> event and
  swap -> notification), the webhook's own time beside them.
* ``idle``: a real ``hotreload serve --threads 8``; readers (4 keep-alive clients over the
  route mix of ``make bench-compare``) for ``--seconds`` with no stream open, then with
  ``--streams`` idle ``/api/events`` streams (connected, nothing published; raw sockets that read
  nothing more, so no thread of the measuring process wakes for a heartbeat), alternating which
  goes first each round: p50 and p99 of each, and the ratio.

The corpora are ``.bench-cache/corpus-v3-<N>.git`` (``BENCH_RECORDS=N make bench`` makes one).
"""

from __future__ import annotations

import argparse
import http.server
import queue
import socket
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from falcon import testing

from benchmarks.changes import bench_settings, corpus_path, edit_upstream, origin_and_clone, require_corpus
from benchmarks.compare import NOT_MIXED, _env, routes_of
from benchmarks.load import Client, Reads, read_mix
from hotreload.api.app import create_app
from hotreload.service.runtime import boot
from simulator.server import EventStream, ServerProcess


def feed(sizes: list[str]) -> None:
    first = None
    for records in sizes:
        require_corpus(records)
        with origin_and_clone(records, "feed-") as (origin, clone):
            rt = boot(bench_settings(clone, origin))
            client = testing.TestClient(create_app(rt))
            rounds = []
            try:
                for round_ in range(11):
                    since = rt.holder.current.commit
                    rt.reloader.reload(edit_upstream(origin, 1))
                    times = []
                    for _ in range(10):
                        started = time.perf_counter()
                        resp = client.simulate_get("/api/changes", params={"since": since, "include": "records"})
                        times.append((time.perf_counter() - started) * 1000)
                        assert resp.status_code == 200 and len(resp.json["data"]) == 1, resp.text[:300]
                    if round_ >= 2:
                        rounds.append(statistics.median(times))
            finally:
                rt.close()
        median = statistics.median(rounds)
        first = first or median
        print(f"{int(records):>7,} records: one-record feed median {median:.2f} ms "
              f"(rounds {min(rounds):.2f}-{max(rounds):.2f}), {median / first:.2f}x the first size", flush=True)


def latency(records: str) -> None:
    require_corpus(records)
    notified: dict[str, float] = {}
    arrival = threading.Condition()

    class Hook(http.server.BaseHTTPRequestHandler):  # a CFP_NOTIFY_URLS receiver: when each commit arrived
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            with arrival:
                notified[self.headers["X-Hotreload-Commit"]] = time.perf_counter()
                arrival.notify_all()
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    hook = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    notify = {"CFP_NOTIFY_SECRET": "n" * 40, "CFP_NOTIFY_URLS": f"http://127.0.0.1:{hook.server_address[1]}/hook"}
    with origin_and_clone(records, "latency-") as (origin, clone), \
            ServerProcess({**_env(Path(origin), Path(clone)), **notify}).start(timeout=600) as server:
        client = Client(int(server.base.rsplit(":", 1)[1]))
        stream = EventStream(server.base)
        rows = []
        for round_ in range(22):
            commit = edit_upstream(origin, 1)
            done: queue.Queue[float] = queue.Queue()
            started = time.perf_counter()
            threading.Thread(target=lambda c=commit, d=done: (client.reload(c), d.put(time.perf_counter()))).start()
            event = stream.next(timeout=30)
            arrived = time.perf_counter()
            answered = done.get(timeout=60)
            with arrival:
                assert arrival.wait_for(lambda c=commit: c in notified, 30), commit
            assert event is not None and event[1] == commit, event
            if round_ >= 2:
                rows.append([(t - started) * 1000 for t in (arrived, answered, notified[commit])])
        stream.close()
        client.close()
    hook.shutdown()
    to_event, to_answer, to_hook = ([r[i] for r in rows] for i in range(3))
    print(f"{int(records):,} records, {len(rows)} reloads, from the webhook's start: event at a subscriber median "
          f"{statistics.median(to_event):.1f} ms (slowest {max(to_event):.1f}); notification received median "
          f"{statistics.median(to_hook):.1f} ms (slowest {max(to_hook):.1f}); webhook answered median "
          f"{statistics.median(to_answer):.1f} ms (slowest {max(to_answer):.1f})")


def idle_stream(port: int) -> socket.socket:
    """An ``/api/events`` subscriber that reads nothing after the response's head: what the
    server sends it waits in the kernel's buffer, and no thread of this process (which measures
    the readers) wakes for it."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /api/events HTTP/1.1\r\nHost: bench\r\n\r\n")
    head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200 "), head[:300]
    return sock


def idle(records: str, streams: int, rounds: int, seconds: float) -> None:
    require_corpus(records)
    corpus = corpus_path(records)
    routes = {name: path for name, path in routes_of(corpus).items() if name not in NOT_MIXED}
    with origin_and_clone(records, "idle-") as (origin, clone), \
            ServerProcess(_env(Path(origin), Path(clone)), threads=8).start(timeout=600) as server:
        port = int(server.base.rsplit(":", 1)[1])
        read_mix(port, routes, clients=4, seconds=seconds)  # warm: every answer memoised once
        totals = {0: Reads(), streams: Reads()}
        for round_ in range(rounds):
            for n in (0, streams) if round_ % 2 == 0 else (streams, 0):
                opened = [idle_stream(port) for _ in range(n)]
                reads = read_mix(port, routes, clients=4, seconds=seconds)
                for s in opened:
                    s.close()
                totals[n].add(reads)
                f = reads.figures()
                print(f"  round {round_ + 1}, {n:>3} idle streams: {f['rps']:.0f} req/s, p50 {f['p50_ms']:.2f} ms, "
                      f"p99 {f['p99_ms']:.2f} ms", flush=True)
        assert server.request("GET", "/api/health").status == 200
    base, loaded = totals[0].figures(), totals[streams].figures()
    print(f"{int(records):,} records, {rounds} x {seconds:.0f} s each: 0 streams p50 {base['p50_ms']:.2f} ms p99 "
          f"{base['p99_ms']:.2f} ms {base['rps']:.0f} req/s; {streams} idle streams p50 {loaded['p50_ms']:.2f} ms p99 "
          f"{loaded['p99_ms']:.2f} ms {loaded['rps']:.0f} req/s; p99 ratio {loaded['p99_ms'] / base['p99_ms']:.3f}, "
          f"p50 ratio {loaded['p50_ms'] / base['p50_ms']:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("feed", "latency", "idle"))
    parser.add_argument("records", nargs="+")
    parser.add_argument("--streams", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    print(f"benchmarks/downstream.py {' '.join(sys.argv[1:])} ({time.strftime('%Y-%m-%d %H:%M')})", flush=True)
    if args.what == "feed":
        feed(args.records)
    elif args.what == "latency":
        latency(args.records[0])
    else:
        idle(args.records[0], args.streams, args.rounds, args.seconds)


if __name__ == "__main__":
    main()
