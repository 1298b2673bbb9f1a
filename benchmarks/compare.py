"""The regression gate: every figure readers and operators feel, for this tree and a
release (BASE), side by side, alternating; a figure more than 10% worse than the
release's fails it (exit status 1)::

    make bench-compare                                  # against benchmarks/BASE, 50,000 records
    make bench-compare BASE=8520c0b RECORDS=500000      # any commit, any size
    make bench-quick                                    # 5,000 records, three short rounds
    .venv/bin/python benchmarks/compare.py --rounds 1 --first-round 0 --json a.json  # one round a run
    .venv/bin/python benchmarks/compare.py --rounds 1 --first-round 1 --json b.json  # (each a few minutes)...
    .venv/bin/python benchmarks/compare.py --merge a.json b.json                     # ...then one table

This tree's harness drives both versions as a user would. The base is exported from
git at its commit into ``.bench-cache/versions/<commit>/`` and installed into a venv of
its own there (once per commit). The corpus is made once by this tree's ``hotreload
corpus``; for every server each version gets fresh copies (``git clone --no-local``:
packed by git), is started by its own ``hotreload serve`` on loopback, with the same
one-record commits prepared upstream, and is measured over HTTP only. A round
measures each version once, in turn, base first in even rounds; each figure is the
median of its rounds. What is measured, in order, per server:

* cold start: process start to ``/api/health`` answering 200;
* RSS after a warm-up (3 reads of each route);
* each read route class repeated by one client, then all the data routes mixed by 4
  clients: requests/s, p50, p99;
* never-asked project searches (three random corpus words each), one client;
* one-record reloads, one at a time: end to end at the client, and ``lockHeldMs``;
* readers (4 clients, the mix) during back-to-back one-record reloads;
* RSS after 100 reloads in all;
* restart: stopped (SIGTERM) and started again on the same clone, with whatever
  cache the version keeps, to healthy.

Only ``serve --host/--port/--threads`` and the ``CFP_DATA_*`` variables every version
has are used; ``CFP_DATA_POLL_SECONDS=0`` and ``CFP_DATA_UPKEEP_SECONDS=0`` keep
background work out of the figures where a version has it. A route the base does not
serve (it answers 404) is measured for this tree alone and left out of the mix.
Results go to ``.benchmarks/compare/`` (never into tracked files).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import psutil

from benchmarks.conftest import CACHE, ROOT, cached_corpus
from benchmarks.load import SECRET, Client, Reads, Reloads, Upstream, read_mix
from simulator.corpus import WORDS
from simulator.server import ServerProcess

BASE_FILE = ROOT / "benchmarks" / "BASE"
RESULTS = ROOT / ".benchmarks" / "compare"
TOLERANCE = 0.10
"""A figure more than this much worse than the base's fails the gate..."""


@dataclass(frozen=True)
class Plan:
    """How much of each measurement a server gets."""
    records: int = 50_000
    rounds: int = 3
    seconds: float = 2.0
    """Per route class, one client."""
    mixed_seconds: float = 4.0
    never_asked: int = 200
    reloads: int = 10
    """One at a time, for the reload figures."""
    during: int = 20
    """Back to back, with readers."""
    total_reloads: int = 100
    """Reloads before the last RSS figure, those above included."""


QUICK = Plan(records=5_000, rounds=3, seconds=0.5, mixed_seconds=1.0, never_asked=40, reloads=5, during=10)


@dataclass(frozen=True)
class Version:
    role: str
    """``base`` or ``this tree``."""
    label: str
    python: str


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def default_base() -> str:
    """The commit named in ``benchmarks/BASE`` (its first line that is not a comment)."""
    lines = [line.strip() for line in BASE_FILE.read_text().splitlines()]
    return next(line for line in lines if line and not line.startswith("#"))


def prepare_base(ref: str) -> Version:
    """``ref`` exported and installed in ``.bench-cache/versions/<commit>/`` (kept: the next
    run with the same commit starts at once). An export, not a registered worktree, so
    deleting the cache leaves nothing behind in the repository."""
    try:
        sha = git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    except subprocess.CalledProcessError:
        raise SystemExit(f"BASE={ref}: no such commit here (give a commit id, branch or tag)") from None
    home = CACHE / "versions" / sha
    python = home / "venv" / "bin" / "python"
    if not (home / "ready").exists():
        print(f"building {ref} ({sha[:12]}) in {home.relative_to(ROOT)} (once per commit) ...", flush=True)
        shutil.rmtree(home, ignore_errors=True)
        _install(home, subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout)
        (home / "ready").write_text(sha + "\n")
    usage = subprocess.run([str(python), "-m", "hotreload.cli", "serve", "--help"], capture_output=True, text=True)
    missing = [flag for flag in ("--host", "--port", "--threads") if flag not in usage.stdout]
    if usage.returncode or missing:
        raise SystemExit(f"BASE={ref}: its `hotreload serve` lacks {', '.join(missing) or 'a --help'}; "
                         "this harness drives versions through those flags only")
    return Version("base", sha[:10] if ref.startswith(sha[:7]) else f"{sha[:10]} ({ref})", str(python))


def _install(home: Path, files: bytes) -> str:
    """A venv at ``home/venv`` with the project in the tar archive ``files`` installed
    (not editable: both versions start and import alike); its python."""
    python = home / "venv" / "bin" / "python"
    shutil.rmtree(home / "src", ignore_errors=True)
    (home / "src").mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(home / "src")], input=files, check=True)
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(home / "venv")], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(home / "src")], check=True)
    return str(python)


def this_tree() -> Version:
    """This tree as it is on disk (changes and new files included, ignored files not),
    installed into ``.bench-cache/versions/this-tree/`` afresh each run."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                           check=True, capture_output=True).stdout.split(b"\0")
    present = b"\0".join(n for n in names if n and (ROOT / n.decode()).is_file())
    files = subprocess.run(["tar", "-c", "--null", "-T", "-"], cwd=ROOT, input=present, check=True,
                           capture_output=True).stdout
    python = _install(CACHE / "versions" / "this-tree", files)
    changed = bool(git("status", "--porcelain"))
    return Version("this tree", git("rev-parse", "--short=10", "HEAD") + (" + changes" if changed else ""), python)


def routes_of(corpus: Path) -> dict[str, str]:
    """Each read route class, as a path on this corpus (a record at the head of each sheet)."""
    def first(sheet: str) -> str:
        names = git("--git-dir", str(corpus), "ls-tree", "--name-only", "published", f"{sheet}/").splitlines()
        return names[0].removeprefix(f"{sheet}/").removesuffix(".toml")

    return {"search": "/api/projects?q=transit&perPage=20",
            "projects by tag": "/api/projects?tag=topic.transit&perPage=20",
            "projects": "/api/projects?perPage=20",
            "project": f"/api/projects/{first('projects')}",
            "people search": "/api/people?q=data&perPage=20",
            "people": "/api/people?perPage=20",
            "person": f"/api/people/{first('people')}",
            "tags": "/api/tags",
            "tag": "/api/tags/topic.transit",
            "help wanted": "/api/help-wanted?perPage=20",
            "sheet": "/api/sheets/projects?perPage=20",
            "health": "/api/health"}


NOT_MIXED = ("health",)


# -- measuring ------------------------------------------------------

DEPLOYED_ENV = {"MALLOC_ARENA_MAX": "1"}
"""What the image and the manifests set outside the service (docs/deploy.md#memory): servers are
measured as they are deployed (tests/test_deploy.py checks the two agree)."""


def _env(origin: Path, clone: Path) -> dict[str, str]:
    return {"CFP_DATA_REPO_PATH": str(clone), "CFP_DATA_REMOTE": str(origin), "CFP_DATA_BRANCH": "published",
            "CFP_DATA_RELOAD_SECRET": SECRET, "CFP_DATA_POLL_SECONDS": "0", "CFP_DATA_UPKEEP_SECONDS": "0",
            **DEPLOYED_ENV}


class Subject:
    """One version's server in one round, on fresh copies of the corpus, and its figures
    (each a list: one value per slice, reload or start)."""

    def __init__(self, version: Version, corpus: Path, plan: Plan) -> None:
        self.version, self.plan = version, plan
        self.root = Path(tempfile.mkdtemp(dir=CACHE, prefix="compare-"))
        origin, clone = self.root / "origin.git", self.root / "clone.git"
        git("clone", "-q", "--bare", "--no-local", str(corpus), str(origin))
        git("clone", "-q", "--bare", "--no-local", str(origin), str(clone))
        self.upstream = Upstream(str(origin), plan.total_reloads)
        self.server = ServerProcess(_env(origin, clone), threads=8, python=version.python)
        self.figures: dict[str, list[float]] = {}
        self.port = 0
        self.served: dict[str, str] = {}

    def note(self, figure: str, *values: float) -> None:
        self.figures.setdefault(figure, []).extend(values)

    def start(self, figure: str) -> None:
        """Start the server; ``figure`` is the seconds from process start to a 200 from health."""
        started = time.perf_counter()
        self.server.start(timeout=1800)
        self.port = int(self.server.base.rsplit(":", 1)[1])
        client = Client(self.port)
        while client.get("/api/health").status != 200:
            time.sleep(0.01)
        client.close()
        self.note(figure, time.perf_counter() - started)

    def rss(self, figure: str) -> None:
        assert self.server.proc is not None
        self.note(figure, float(psutil.Process(self.server.proc.pid).memory_info().rss) / 2**20)

    def reads(self, group: str, slices: list[Reads]) -> None:
        """Requests/s, p50 and p99 of each slice (the figure is their median: a spell
        that slows one slice moves it little)."""
        for got in (reads.figures() for reads in slices):
            self.note(f"{group}: req/s", got["rps"])
            self.note(f"{group}: p50 ms", got["p50_ms"])
            self.note(f"{group}: p99 ms", got["p99_ms"])

    def warm(self, routes: Mapping[str, str]) -> None:
        """Which routes this version serves, each read three times (a query's first read
        computes its answer)."""
        client = Client(self.port)
        self.served = {name: path for name, path in routes.items() if client.get(path).status == 200}
        for path in list(self.served.values()) * 3:
            assert client.get(path).status == 200, path
        client.close()

    def reload(self) -> tuple[float, float]:
        """One one-record reload: milliseconds end to end, and its ``lockHeldMs``."""
        client = Client(self.port)
        try:
            ms, data = client.reload(self.upstream.next())
        finally:
            client.close()
        return ms, float(data["lockHeldMs"])

    def read_during_reloads(self, mix: Mapping[str, str], count: int) -> Reads:
        """4 clients reading the mix while ``count`` one-record reloads run back to back."""
        with Reloads(self.port, self.upstream, count) as reloads:
            reads = read_mix(self.port, mix, 4, at_least=len(mix), more=reloads.running)
        assert len(reloads.done) == count
        return reads

    def close(self) -> None:
        self.server.stop()
        shutil.rmtree(self.root, ignore_errors=True)


SLICES = 4
"""Each measurement is cut in this many slices, the versions taking turns (the first
one flipped every slice), so that a slow spell on the machine, of a second or two,
falls on both alike instead of on whichever was being measured."""

T = TypeVar("T")


def in_turn(subjects: list[Subject], slices: int, one: Callable[[Subject, int], T]) -> dict[Subject, list[T]]:
    """``one(subject, k)`` for every slice ``k`` and subject, in turn."""
    got: dict[Subject, list[T]] = {s: [] for s in subjects}
    for k in range(slices):
        for s in subjects if k % 2 == 0 else subjects[::-1]:
            got[s].append(one(s, k))
    return got


def measure(subjects: list[Subject], routes: Mapping[str, str], plan: Plan) -> None:
    """Every figure of each subject, one server measured at a time. Every slice reads at least
    once per client and route: on a loaded machine a short slice could end before a client's
    first request (a percentile of nothing)."""
    for s in subjects:
        s.start("cold start: s")
    for s in subjects:
        s.warm(routes)
        s.rss("RSS steady: MB")
    for name, path in routes.items():
        serving = [s for s in subjects if name in s.served]
        for s, slices in in_turn(serving, SLICES, lambda s, k, one={name: path}: read_mix(
                s.port, one, at_least=1, seconds=plan.seconds / SLICES)).items():
            s.reads(f"repeated {name}", slices)
    mix = {name: path for name, path in routes.items()
           if name not in NOT_MIXED and all(name in s.served for s in subjects)}
    for s, slices in in_turn(subjects, SLICES, lambda s, k: read_mix(
            s.port, mix, 4, at_least=len(mix), seconds=plan.mixed_seconds / SLICES)).items():
        s.reads("mixed, 4 clients", slices)
    queries = never_asked(plan.never_asked)
    for s, slices in in_turn(subjects, SLICES, lambda s, k: _search(s.port, queries[k::SLICES])).items():
        s.reads("never-asked searches", slices)
    for s, done in in_turn(subjects, plan.reloads, lambda s, k: s.reload()).items():
        s.note("one-record reload: ms", *(ms for ms, _ in done))
        s.note("one-record reload: lockHeldMs", *(held for _, held in done))
    for s, slices in in_turn(subjects, 2, lambda s, k: s.read_during_reloads(mix, plan.during // 2)).items():
        s.reads("mixed during reloads", slices)
    for s in subjects:
        for _ in range(plan.total_reloads - plan.reloads - plan.during // 2 * 2):
            s.reload()
        s.rss(f"RSS after {plan.total_reloads} reloads: MB")
    for s in subjects:
        s.server.stop()
        s.start("restart: s")


def never_asked(count: int) -> list[str]:
    """Project searches no one asked a new server: three random corpus words each (the
    same queries for every version and round)."""
    rng, queries = random.Random(17), dict[str, None]()
    while len(queries) < count:
        queries[" ".join(rng.sample(WORDS, 3))] = None
    return list(queries)


def _search(port: int, queries: list[str]) -> Reads:
    client, reads = Client(port), Reads({"search": []})
    started = time.perf_counter()
    for query in queries:
        at = time.perf_counter()
        assert client.get(f"/api/projects?q={query.replace(' ', '+')}&perPage=20").status == 200
        reads.latencies["search"].append((time.perf_counter() - at) * 1000)
    reads.seconds = time.perf_counter() - started
    client.close()
    return reads


# -- the run and its report -------------------------------------------------------

def run(base: Version, current: Version, plan: Plan, first_round: int = 0) -> dict[str, Any]:
    corpus = cached_corpus(plan.records)
    routes = routes_of(corpus)
    doc: dict[str, Any] = {"records": plan.records, "plan": asdict(plan), "base": asdict(base),
                           "current": asdict(current), "started": dt.datetime.now(dt.UTC).isoformat(), "runs": []}
    for round_ in range(first_round, first_round + plan.rounds):
        started = time.perf_counter()
        order = (base, current) if round_ % 2 == 0 else (current, base)
        subjects = []
        try:
            subjects += [Subject(version, corpus, plan) for version in order]
            measure(subjects, routes, plan)
        finally:
            for s in subjects:
                s.close()
        doc["runs"] += [{"role": s.version.role, "round": round_, "figures": s.figures} for s in subjects]
        print(f"round {round_ + 1} ({order[0].role} first) measured in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return doc


SIGNIFICANCE = 0.05
"""... and only when its values (slices, reloads, starts of every round) are worse than the
base's beyond what chance explains: a one-sided Mann-Whitney U test at or below this p-value.
With three starts each, that is every start of this tree slower than every one of the
base's; the machine is shared, and one slow spell should not fail the gate."""


def p_worse(mine: list[float], base: list[float]) -> float:
    """One-sided p-value of "``mine`` tends to be larger than ``base``" (Mann-Whitney U, its
    exact distribution; ties count a half)."""
    m, n = len(mine), len(base)
    u = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in mine for b in base)
    # the ways to reach each U: the q-binomial coefficient [m+n choose m], built as a product
    ways = [1]
    for i in range(1, m + 1):
        ways = [w - (ways[k - n - i] if k >= n + i else 0) for k, w in enumerate(ways + [0] * (n + i))]
        for k in range(i, len(ways)):  # divided by (1 - q^i): a running sum with stride i
            ways[k] += ways[k - i]
        del ways[m * n + 1:]
    return sum(ways[math.ceil(u):]) / math.comb(m + n, m)


def direction(figure: str) -> str:
    """``higher`` or ``lower``: which way is better."""
    return "higher" if figure.endswith("req/s") else "lower"


def fmt(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}" if abs(value) >= 1 else f"{value:.3f}"


def compare(doc: dict[str, Any]) -> tuple[str, list[str]]:
    """The table (Markdown) and the figures more than :data:`TOLERANCE` worse. A figure is
    the median of all its values (slices, reloads, starts) of every round; the brackets
    hold the range of the rounds' own medians."""
    values: dict[str, dict[str, list[list[float]]]] = {}
    for run_ in doc["runs"]:
        for figure, got in run_["figures"].items():
            values.setdefault(figure, {"base": [], "this tree": []})[run_["role"]].append(got)
    rows, worse = [], []
    for figure, by_role in values.items():
        cells, medians = [], {}
        for role in ("base", "this tree"):
            rounds = [statistics.median(got) for got in by_role[role]]
            if not rounds:
                cells.append("n/a")
                continue
            medians[role] = statistics.median([value for got in by_role[role] for value in got])
            spread = f" ({fmt(min(rounds))}-{fmt(max(rounds))})" if len(rounds) > 1 else ""
            cells.append(fmt(medians[role]) + spread)
        if len(medians) == 2:
            ratio = medians["this tree"] / medians["base"]
            better = direction(figure)
            sign = -1 if better == "higher" else 1  # worse is larger, once signed
            mine, base = ([sign * v for got in by_role[role] for v in got] for role in ("this tree", "base"))
            if (ratio < 1 - TOLERANCE) if better == "higher" else (ratio > 1 + TOLERANCE):
                p = p_worse(mine, base)
                verdict = f"WORSE (p={p:.3f})" if p <= SIGNIFICANCE else f"worse, within noise (p={p:.2f})"
                if p <= SIGNIFICANCE:
                    worse.append(figure)
            elif (ratio > 1 + TOLERANCE) if better == "higher" else (ratio < 1 - TOLERANCE):
                p = p_worse(base, mine)
                verdict = f"better (p={p:.3f})" if p <= SIGNIFICANCE else f"better, within noise (p={p:.2f})"
            else:
                verdict = "same"
            cells += [f"{ratio:.2f}x", better, verdict]
        else:
            cells += ["-", "", "not served by the base" if "base" not in medians else "not measured here"]
        rows.append([figure, *cells])
    header = ["figure", f"base {doc['base']['label']}", f"this tree {doc['current']['label']}", "this / base",
              "better", "verdict"]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"  # noqa: E731
    rounds = max(len(v["base"]) for v in values.values())
    text = "\n".join([
        f"{doc['records']:,} records, {rounds} round(s); each figure the median of its every slice of every "
        "round (in brackets: the range of the rounds' medians)",
        "", line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)])
    return text, worse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", help="the commit to compare with (default: benchmarks/BASE)")
    parser.add_argument("--records", type=int, help="corpus size (default 50000; --quick 5000)")
    parser.add_argument("--rounds", type=int, help="rounds, each version once a round (default 3)")
    parser.add_argument("--quick", action="store_true", help="5,000 records, three short rounds: a look in minutes")
    parser.add_argument("--first-round", type=int, default=0, metavar="N",
                        help="number this run's rounds from N: runs split in parts (--rounds 1 each, N = 0, 1, 2) "
                             "then still alternate which version starts first")
    parser.add_argument("--json", help="also write the raw figures here (default .benchmarks/compare/<time>.json)")
    parser.add_argument("--merge", nargs="+", metavar="JSON", help="print the table of earlier runs, together")
    args = parser.parse_args(argv)
    if args.merge:
        docs = [json.loads(Path(p).read_text()) for p in args.merge]
        if len({(d["records"], d["base"]["python"], d["current"]["label"]) for d in docs}) != 1:
            raise SystemExit("--merge: the runs differ in corpus size, base or tree; merge like with like")
        doc = {**docs[0], "runs": [run_ for d in docs for run_ in d["runs"]]}
    else:
        plan = QUICK if args.quick else Plan()
        changes = {k: v for k, v in (("records", args.records), ("rounds", args.rounds)) if v is not None}
        plan = Plan(**{**asdict(plan), **changes})
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))  # servers and copies cleaned up
        doc = run(prepare_base(args.base or default_base()), this_tree(), plan, args.first_round)
        out = Path(args.json) if args.json else RESULTS / f"{dt.datetime.now():%Y%m%d-%H%M%S}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1))
        print(f"raw figures: {out}")
    text, worse = compare(doc)
    print(text)
    if worse:
        print(f"\n{len(worse)} figure(s) more than {TOLERANCE:.0%} worse than the base: {', '.join(worse)}")
        return 1
    print(f"\nno figure is more than {TOLERANCE:.0%} worse than the base")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
