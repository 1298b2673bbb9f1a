"""What a reader and the webhook feel while clients hold half-sent requests open
(slowloris), on a real ``hotreload serve`` on loopback::

    .venv/bin/python benchmarks/slow_clients.py                  # 0, 150 and 900 held connections
    .venv/bin/python benchmarks/slow_clients.py --held 0 500 --limit 1000

For each count N: open N connections that each send half a request head and then
nothing, then time 30 reads (``GET /api/projects?perPage=5``) and 5 webhooks (a
pre-checked commit), all within the head timeout (5 s, after which the server closes
the held ones). Prints the median and the slowest, and the server's resident memory
with the N connections open. With ``--limit 100`` (waitress's default connection
limit) the reads wait for the held connections to be closed.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from simulator.server import ServerProcess
from tests.conftest import bearer, make_world

URL = "/api/_internal/reload-data"


def measure(server: ServerProcess, held: int) -> str:
    port = int(server.base.rsplit(":", 1)[1])
    served = server.get("/api/health").commit
    socks = []
    try:
        for _ in range(held):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /api/projects HTTP/1.1\r\nHo")
            socks.append(sock)
        reads, hooks = [], []
        for i in range(35):
            started = time.perf_counter()
            if i % 7 == 6:
                resp = server.request("POST", URL, {"commitHash": served}, bearer(), timeout=30)
                hooks.append((time.perf_counter() - started) * 1000)
            else:
                resp = server.get("/api/projects?perPage=5")
                reads.append((time.perf_counter() - started) * 1000)
            assert resp.status == 200, resp.status
        assert server.proc is not None
        rss = psutil.Process(server.proc.pid).memory_info().rss / 2**20
        return (f"{held:5d} held: read median {statistics.median(reads):6.1f} ms, slowest {max(reads):6.1f} ms; "
                f"webhook median {statistics.median(hooks):6.1f} ms, slowest {max(hooks):6.1f} ms; RSS {rss:.0f} MiB")
    finally:
        for sock in socks:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--held", type=int, nargs="+", default=[0, 150, 900])
    parser.add_argument("--limit", type=int, default=None, help="CFP_HTTP_CONNECTION_LIMIT (default: the service's)")
    parser.add_argument("--records", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hotreload-slow-") as root:
        world = make_world(Path(root), args.records)
        env = world.env(**({"CFP_HTTP_CONNECTION_LIMIT": str(args.limit)} if args.limit else {}))
        with ServerProcess(env) as server:
            for held in args.held:
                print(measure(server, held), flush=True)
                time.sleep(6)  # the server closes the held connections (head timeout): start clean


if __name__ == "__main__":
    main()
