"""A big loose object's reads and writes, each way side by side in one run (decision 76):
``--files`` objects of ``--mb`` MB (7.4 MB is the ``people/`` tree at 500,000 records),
the ways shuffled in every round, into a scratch folder under ``.bench-cache``::

    .venv/bin/python benchmarks/loose_io.py
    .venv/bin/python benchmarks/loose_io.py --mb 0.74 --files 40

Writes (the stored stream ``objects.stored_zlib`` makes, then fsync): in one call, in
calls of 2 MiB, 1 MiB and 256 KiB (``objects.write_all``), each 64 KiB block after its
5-byte header through a file object (the way before decision 76), and in 256 KiB calls
with writeback started every MiB (what ``write_loose`` does now). Reads of that file:
read then inflated by zlib-ng (before), and mapped then taken by its block lengths
(``objects.get_raw`` now). Prints the median, p75 and p90 of each.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zlib_ng import zlib_ng

from hotreload.git import objects

ROOT = Path(__file__).resolve().parent.parent


def _calls_of(size: int, writeback: bool = False) -> Callable[[Any, list[Any]], None]:
    def write(fh: Any, pieces: list[Any]) -> None:
        chunk = objects.WRITE_CHUNK
        objects.WRITE_CHUNK = size
        try:
            objects.write_all(fh.fileno(), pieces, writeback=writeback)
        finally:
            objects.WRITE_CHUNK = chunk
    return write


WRITES: dict[str, Callable[[Any, list[Any]], None]] = {
    "one call": _calls_of(1 << 40),
    "2 MiB calls": _calls_of(2 << 20),
    "1 MiB calls": _calls_of(1 << 20),
    "256 KiB calls": _calls_of(256 << 10),
    "per block, file object (before)": lambda fh, pieces: fh.writelines(pieces),
    "256 KiB calls, writeback (now)": _calls_of(256 << 10, writeback=True),
}


def _read_inflate(path: str) -> bytes:
    with open(path, "rb") as fh:
        return zlib_ng.decompress(fh.read()).partition(b"\0")[2]


def _map_blocks(path: str) -> bytes:
    return objects.get_raw(SimpleNamespace(path=os.path.dirname(os.path.dirname(path))),
                           (os.path.basename(os.path.dirname(path)) + os.path.basename(path)).encode())[1]


READS: dict[str, Callable[[str], bytes]] = {
    "read, inflated (before)": _read_inflate,
    "mapped, by block lengths (now)": _map_blocks,
}


def _summary(label: str, spent: list[float]) -> str:
    ordered = sorted(spent)
    return (f"  {label:34s} median {statistics.median(ordered):6.2f}  p75 {ordered[len(ordered) * 3 // 4]:6.2f}"
            f"  p90 {ordered[len(ordered) * 9 // 10]:6.2f} ms")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=7.4)
    parser.add_argument("--files", type=int, default=40, help="rounds: one file each way per round")
    args = parser.parse_args(argv)
    (ROOT / ".bench-cache").mkdir(exist_ok=True)
    folder = tempfile.mkdtemp(prefix="loose-io-", dir=ROOT / ".bench-cache")
    raw = os.urandom(int(args.mb * 2**20))
    header = objects.object_header(2, len(raw))
    sha = objects.object_id(2, raw).decode()
    written: dict[str, list[float]] = {way: [] for way in WRITES}
    read: dict[str, list[float]] = {way: [] for way in READS}
    rng = random.Random(0)
    try:
        for n in range(args.files):
            ways = list(WRITES)
            rng.shuffle(ways)
            for way in ways:
                with open(os.path.join(folder, f"{n}-{ways.index(way)}"), "wb") as fh:
                    pieces = objects.stored_zlib(header, raw)
                    started = time.perf_counter()
                    fh.flush()
                    WRITES[way](fh, pieces)
                    fh.flush()
                    os.fsync(fh.fileno())
                    written[way].append((time.perf_counter() - started) * 1000)
            path = os.path.join(folder, sha[:2], sha[2:])
            os.makedirs(os.path.dirname(path), exist_ok=True)
            os.replace(os.path.join(folder, f"{n}-0"), path)
            ways = list(READS)
            rng.shuffle(ways)
            for way in ways:
                started = time.perf_counter()
                content = READS[way](path)
                read[way].append((time.perf_counter() - started) * 1000)
                if content != raw:
                    raise SystemExit(f"{way} read something else")
                del content
        print(f"{args.files} rounds of a {args.mb} MB object, each way once per round in a shuffled order")
        print("written, fsync included:")
        for way, spent in written.items():
            print(_summary(way, spent))
        print("read back to its content (page cache warm):")
        for way, spent in read.items():
            print(_summary(way, spent))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
