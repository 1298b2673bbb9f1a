"""One big loose object written as a reload writes a flat folder's tree (stored, zlib
level 0; fsync, rename): the median of ``--runs`` writes of ``--mb`` MB (7.4 MB is
the ``people/`` tree at 500,000 records), into a scratch folder under ``.bench-cache``::

    .venv/bin/python benchmarks/loose_write.py
    .venv/bin/python benchmarks/loose_write.py --mb 0.7 --runs 21
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hotreload.git.objects import object_id, write_loose

ROOT = Path(__file__).resolve().parent.parent


class _Store:
    def __init__(self, path: str) -> None:
        self.path = path


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=7.4)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args(argv)
    (ROOT / ".bench-cache").mkdir(exist_ok=True)
    folder = tempfile.mkdtemp(prefix="loose-write-", dir=ROOT / ".bench-cache")
    try:
        spent = []
        for _ in range(args.runs):
            raw = os.urandom(int(args.mb * 2**20))
            sha = object_id(2, raw)
            started = time.perf_counter()
            write_loose(_Store(folder), 2, raw, sha)
            spent.append((time.perf_counter() - started) * 1000)
            shutil.rmtree(os.path.join(folder, sha[:2].decode()))
        print(f"write_loose of {args.mb} MB, fsync included: median {statistics.median(spent):.1f} ms "
              f"of {args.runs} (min {min(spent):.1f}, max {max(spent):.1f})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
