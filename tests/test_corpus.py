"""``hotreload corpus`` and the demo's data, both made by simulator/corpus.py: every record
the command writes is one the service loads (none invalid, every sheet, the counts its
summary line gives), in one pack of whole objects, the same for the same seed; the demo
starts on its data and shows the project ``--push-change`` commits."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from falcon import testing

from hotreload import demo
from hotreload.api.app import create_app
from hotreload.cli import build_parser
from hotreload.data.snapshot import build_full
from hotreload.git.repo import GitRepo
from hotreload.service.runtime import boot
from simulator.corpus import SHEETS


def run(*args: str) -> int:
    """``hotreload corpus ...`` in this process (without ``main``, which configures logging for good)."""
    parsed = build_parser().parse_args(["corpus", *args])
    code: int = parsed.func(parsed)
    return code


def corpus(capsys: pytest.CaptureFixture[str], out: Path, *args: str) -> dict[str, int]:
    """Run ``hotreload corpus`` and read its summary line: records by sheet."""
    assert run("--out", str(out), *args) == 0
    line = capsys.readouterr().out
    total, listed = re.fullmatch(rf"{re.escape(str(out))}: (\d+) records \((.*)\).* at [0-9a-f]{{12}} in .* s\n",
                                 line).groups()  # type: ignore[union-attr]
    counts = {sheet: int(n) for n, sheet in (item.split(" ") for item in listed.split(", "))}
    assert sum(counts.values()) == int(total)
    return counts


def loaded(path: Path) -> dict[str, int]:
    """Records by sheet as the service loads the branch (a full build fails on any invalid record)."""
    repo = GitRepo(str(path))
    try:
        return build_full(repo, repo.branch_commit("published") or "").record_counts()
    finally:
        repo.close()


def git(path: Path, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", str(path), *args], check=True, capture_output=True, text=True).stdout


@pytest.mark.parametrize("styles", ["flat", "mixed"])
def test_every_record_the_corpus_command_writes_is_loaded(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                          styles: str) -> None:
    counts = corpus(capsys, tmp_path / "c.git", "--records", "1000", "--styles", styles, "--seed", "3")
    assert set(counts) == set(SHEETS) and all(counts.values()) and sum(counts.values()) == 1000
    assert counts["people"] == 300 and counts["projects"] == 150 and counts["sponsors"] == 2  # 30%, 15%, 0.2%
    assert loaded(tmp_path / "c.git") == counts
    packs = list((tmp_path / "c.git" / "objects" / "pack").glob("*.idx"))
    assert len(packs) == 1  # one pack, every object whole (the benchmarks' `written` packing)
    assert "chain length" not in git(tmp_path / "c.git", "verify-pack", "-v", str(packs[0]))
    records = git(tmp_path / "c.git", "ls-tree", "-r", "--name-only", "published", "people").split()
    written = [git(tmp_path / "c.git", "cat-file", "blob", f"published:{path}") for path in records[:100]]
    plain = [all(re.fullmatch(r'\w+ = ("[^\n]*"|\d+|true|false)', line) for line in text.splitlines())
             for text in written]
    assert all(plain) if styles == "flat" else not all(plain)  # flat: the write API's style only


def test_the_same_seed_makes_the_same_repository_and_history_is_one_commit_per_write(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    first = corpus(capsys, tmp_path / "a.git", "--records", "200", "--history", "40")
    assert corpus(capsys, tmp_path / "b.git", "--records", "200", "--history", "40") == first
    tip = git(tmp_path / "a.git", "rev-parse", "published")
    assert tip == git(tmp_path / "b.git", "rev-parse", "published")
    assert git(tmp_path / "a.git", "rev-list", "--count", "published").strip() == "41"
    assert git(tmp_path / "a.git", "log", "-1", "--format=%s", "published").startswith("api: PATCH /api/people/")
    assert git(tmp_path / "a.git", "diff-tree", "--no-commit-id", "--name-only", "-r", "published").count("\n") == 1
    assert loaded(tmp_path / "a.git") == first
    assert run("--out", str(tmp_path / "a.git"), "--records", "20") == 2  # never over a repository


def test_the_demo_serves_its_data_and_a_pushed_change(tmp_path: Path) -> None:
    made = demo.ensure(str(tmp_path / "demo"), 60)
    assert demo.ensure(str(tmp_path / "demo"), 60) == made  # made once, then reused
    slug, commit = demo.push_change(made)
    runtime = boot(made.settings())
    try:
        assert runtime.holder.current.commit == commit
        assert sum(runtime.holder.current.record_counts().values()) == 61
        client = testing.TestClient(create_app(runtime))
        assert client.simulate_get(f"/api/projects/{slug}").json["data"]["title"].startswith("Transit Demo")
    finally:
        runtime.close()
