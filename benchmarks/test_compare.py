"""``make bench-compare`` kept from rotting: its whole measurement run once, tiny, with
this tree as both versions (building a base is ``git archive`` and ``pip install``,
left out here); its verdicts on made-up figures; the default base resolves."""

from __future__ import annotations

import subprocess
import sys

import pytest

from benchmarks import compare
from benchmarks.conftest import ROOT


@pytest.mark.slow
def test_one_tiny_round_measures_every_figure_of_both_versions() -> None:
    plan = compare.Plan(records=1000, rounds=1, seconds=0.08, mixed_seconds=0.2, never_asked=8, reloads=2,
                        during=2, total_reloads=5)
    base = compare.Version("base", "this tree as the base", sys.executable)
    doc = compare.run(base, compare.Version("this tree", "this tree", sys.executable), plan)
    runs = {run["role"]: run["figures"] for run in doc["runs"]}
    assert set(runs) == {"base", "this tree"} and runs["base"].keys() == runs["this tree"].keys()
    routes = compare.routes_of(compare.cached_corpus(1000))
    for name in routes:
        assert len(runs["base"][f"repeated {name}: req/s"]) == compare.SLICES
    for figure in ("cold start: s", "restart: s", "RSS steady: MB", "RSS after 5 reloads: MB",
                   "mixed, 4 clients: p99 ms", "never-asked searches: req/s", "one-record reload: lockHeldMs",
                   "mixed during reloads: p99 ms"):
        assert all(value > 0 for value in runs["this tree"][figure]), figure
    text, _ = compare.compare(doc)
    assert text.count("\n| ") == len(runs["base"]) + 1  # the header and a row per figure


def _doc(base: list[float], mine: list[float], figure: str) -> dict[str, object]:
    return {"records": 1000, "base": {"label": "b"}, "current": {"label": "c"},
            "runs": [{"role": "base", "round": 0, "figures": {figure: base}},
                     {"role": "this tree", "round": 0, "figures": {figure: mine}}]}


def test_a_figure_consistently_more_than_ten_percent_worse_fails_the_gate() -> None:
    base = [1.00, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.00]
    _, worse = compare.compare(_doc(base, [v * 1.2 for v in base], "repeated search: p50 ms"))
    assert worse == ["repeated search: p50 ms"]
    _, worse = compare.compare(_doc(base, [v * 0.8 for v in base], "repeated search: req/s"))
    assert worse == ["repeated search: req/s"]  # fewer requests per second is worse
    _, worse = compare.compare(_doc(base, [v * 1.2 for v in base], "repeated search: req/s"))
    assert worse == []  # more is better


def test_a_median_moved_by_noise_alone_does_not_fail_the_gate() -> None:
    base = [1.0, 5.0, 1.1, 4.0, 1.0, 6.0]
    noisy = [1.3, 4.5, 1.4, 5.5, 1.2, 6.5]  # the median 15% higher, the values interleaved
    text, worse = compare.compare(_doc(base, noisy, "repeated search: p99 ms"))
    assert worse == [] and "within noise" in text


def test_p_worse_is_the_exact_one_sided_mann_whitney_p_value() -> None:
    assert compare.p_worse([4, 5, 6], [1, 2, 3]) == pytest.approx(1 / 20)
    assert compare.p_worse([1, 2, 3], [4, 5, 6]) == pytest.approx(1.0)
    assert compare.p_worse([2, 4], [1, 3]) == pytest.approx(2 / 6)  # U = 3 of 4: 2 of the 6 orders reach it


def test_the_default_base_names_a_commit_of_this_repository() -> None:
    ref = compare.default_base()
    found = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], cwd=ROOT,
                           capture_output=True, text=True)
    assert found.returncode == 0 and found.stdout.strip() == ref
