"""What git itself takes to fetch a one-record commit, at a corpus size: the floor
under any reload that keeps a git clone (the fetch of a commit that rewrites a flat
folder's tree of 150,000 entries at 500k records). Same corpus, same upstream edits
as ``benchmarks/one_record.py``; run it at 50k and 500k to compare git's own
500k / 50k ratio with the service's::

    .venv/bin/python benchmarks/fetch_floor.py 500000
    .venv/bin/python benchmarks/fetch_floor.py 50000

Each round commits one edited record upstream, then times ``git fetch`` of the
branch into the clone (from the local path: upload-pack, then unpack-objects, which
writes the new objects loose, as git does for small fetches). Prints the median of 9
after 2 warm-ups, with every round.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.changes import edit_upstream, origin_and_clone, require_corpus


def main(argv: list[str]) -> int:
    records = argv[0]
    require_corpus(records)
    with origin_and_clone(records, "fetch-floor-") as (origin, clone):
        def fetch() -> float:
            edit_upstream(origin, 1)
            started = time.perf_counter()
            subprocess.run(["git", "--git-dir", clone, "fetch", "-q", origin,
                            "+refs/heads/published:refs/remotes/origin/published"], check=True)
            return (time.perf_counter() - started) * 1000

        for _ in range(2):
            fetch()
        times = [fetch() for _ in range(9)]
    print(f"{records} records: git fetch of a one-record commit, median {statistics.median(times):.0f} ms; "
          f"rounds {[round(t) for t in times]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
