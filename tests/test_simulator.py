"""The simulator: its scenario format, its command, and every scenario."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from simulator.runner import Run
from simulator.scenario import ScenarioError, discover, load

REQUIRED = {"self-trigger", "fast-forward", "pushed-ahead", "diverged-clean-rebase", "diverged-conflict",
            "fetch-failed", "invalid-record-then-fix", "burst", "write-during-reload", "delete-and-rename",
            "github-push", "two-replicas-webhook-fanout", "lost-webhook-poll", "two-replicas-writing"}


def test_every_required_scenario_exists_and_is_named_after_its_file() -> None:
    scenarios = [load(p) for p in discover()]
    names = {s.name for s in scenarios}
    assert names >= REQUIRED
    for s in scenarios:
        assert os.path.basename(s.path) == f"{s.name}.toml" and s.description.strip()


@pytest.mark.parametrize(("text", "message"), [
    ("name = 'x'\n", "at least one [[step]] is required"),
    ("description = 'd'\n[[step]]\nkind = 'push'\n", "name: a non-empty string is required"),
    ("name = 'x'\n[[step]]\nkind = 'teleport'\n", "step 1: kind: 'teleport' is not one of"),
    ("name = 'x'\n[[step]]\nkind = 'push'\n[[step]]\nkind = 'webhook'\ncolour = 1\n", "step 2: colour: unknown field for a webhook step"),
    ("name = 'x'\n[[step]]\nkind = 'fault'\nfault = 'flood'\n", "step 1: fault: 'flood' is not one of"),
    ("name = 'x'\n[[step]]\nkind = 'write'\nmethod = 'POST'\n", "step 1: path: required for a write step"),
    ("name = 'x'\n[[step]]\nkind = 'expect'\nstatus = '200'\n", "step 1: status: wrong type str"),
    ("name = 'x'\n[[step]]\nkind = 'upstream'\nchanges = [{op = 'add', sheet = 'tags', slug = 'a'}]\n", "step 1: changes[1].sheet"),
    ("name = 'x'\n[[step]]\nkind = 'upstream'\nchanges = [{op = 'rename', sheet = 'projects', slug = 'a'}]\n", "step 1: changes[1].to"),
    ("name = 'x'\n[world]\nrecords = 3\n[[step]]\nkind = 'push'\n", "world.records: must be a whole number >= 10"),
    ("name = 'x'\n[[step]\n", "invalid TOML"),
    ("name = 'x'\n[world]\nreplicas = 9\n[[step]]\nkind = 'push'\n", "world.replicas: must be a whole number from 1 to 5"),
    ("name = 'x'\n[world]\nreplicas = 2\n[[step]]\nkind = 'push'\nreplica = 2\n", "step 1: replica: 2 is not one of"),
    ("name = 'x'\n[world]\npoll_seconds = -1\n[[step]]\nkind = 'push'\n", "world.poll_seconds: must be a number >= 0"),
])
def test_malformed_scenarios_name_file_step_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as err:
        load(str(path))
    assert "bad.toml" in str(err.value) and message in str(err.value), str(err.value)


@pytest.mark.slow
@pytest.mark.parametrize("path", discover(), ids=lambda p: os.path.basename(p)[:-5])
def test_scenario(path: str) -> None:
    report = Run(load(path)).execute()
    assert report.passed, "\n".join(f"step {f.step} ({f.kind}): {f.message}" for f in report.failures)


@pytest.mark.slow
def test_simulate_command_reports_and_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.toml"
    wrong.write_text(
        'name = "wrong"\ndescription = "expects the wrong outcome"\n'
        '[[step]]\nkind = "upstream"\nchanges = [{op = "add", sheet = "projects", slug = "zz-x"}]\n'
        '[[step]]\nkind = "webhook"\ncommit = "@origin"\n'
        '[[step]]\nkind = "expect"\noutcome = "rebased"\nvisible = [{sheet = "projects", slug = "zz-x", fields = {title = "Nope"}}]\n')
    report = tmp_path / "report.json"
    result = subprocess.run([sys.executable, "-m", "hotreload.cli", "simulate", "fast-forward", str(wrong),
                             "--json", str(report)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "fast-forward" in result.stdout and "PASS" in result.stdout and "FAIL" in result.stdout
    assert "outcome: expected 'rebased', got 'fast-forwarded'" in result.stdout
    assert "projects/zz-x.title: expected 'Nope', got 'Zz X'" in result.stdout
    assert result.stdout.strip().endswith("simulate: 1 passed, 1 failed")
    doc = json.loads(report.read_text())
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert by_name["fast-forward"]["passed"] is True and by_name["wrong"]["passed"] is False
    assert set(by_name["wrong"]) >= {"name", "passed", "steps", "failures", "maxLockHeldMs", "maxReloadMs"}
    assert by_name["wrong"]["failures"][0]["step"] == 3


def test_simulate_command_rejects_unknown_scenarios() -> None:
    result = subprocess.run([sys.executable, "-m", "hotreload.cli", "simulate", "no-such-thing"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "no scenario 'no-such-thing' (known: " in result.stderr


def test_a_started_server_used_as_a_context_is_not_started_twice(world: object) -> None:
    """`with ServerProcess(...).start() as s` once leaked the first process."""
    from simulator.server import ServerProcess

    server = ServerProcess(world.env()).start()  # type: ignore[attr-defined]
    first = server.proc
    with server as same:
        assert same is server and same.proc is first
        assert same.get("/api/health").status == 200
    assert first is not None and first.poll() is not None  # stopped on exit


def test_a_server_log_is_readable_after_stop_and_removed_with_its_process_object(world: object) -> None:
    """Each server's log was a file left in the temporary folder, ~60 per test run."""
    import gc
    import os

    from simulator.server import ServerProcess

    server = ServerProcess(world.env()).start()  # type: ignore[attr-defined]
    path = server.log_path
    server.stop()
    assert "serving published" in server.log()  # still there for the test to read
    del server
    gc.collect()
    assert not os.path.exists(path)


def test_what_a_killed_parent_started_through_dying_with_parent_goes_with_it(tmp_path: Path) -> None:
    """A test or benchmark killed before its teardown left its servers running. A parent
    starts ``sleep`` the way servers and git daemons are started, prints its pid, and is
    SIGKILLed (no teardown, no atexit): the sleep must be gone soon after."""
    import shutil
    import signal
    import time

    if shutil.which("setpriv") is None:
        pytest.skip("no setpriv here: children are started without a parent-death signal")
    parent = subprocess.Popen(
        [sys.executable, "-c",
         "import subprocess, sys, time\n"
         "from simulator.server import dying_with_parent\n"
         "child = subprocess.Popen(dying_with_parent(['sleep', '120']))\n"
         "print(child.pid, flush=True)\n"
         "time.sleep(120)\n"],
        stdout=subprocess.PIPE, cwd=str(Path(__file__).resolve().parent.parent))
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    # setpriv sets the signal after its own exec, then execs sleep: a parent killed before
    # that leaves the child (a window of a few ms at a server's start); wait it out here
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child}/comm").read_text().strip() != "sleep":
        assert time.monotonic() < deadline, "setpriv never ran sleep"
        time.sleep(0.01)
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        # reaped by init once it exits; a zombie still answers kill(0) until then
        try:
            state = Path(f"/proc/{child}/stat").read_text().split(")")[-1].split()[0]
        except FileNotFoundError:
            return  # reaped between the two looks
        if state == "Z":
            return
        time.sleep(0.05)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the child outlived its killed parent")


@pytest.mark.slow
def test_a_commit_the_branch_held_only_for_a_moment_counts_as_later_and_an_older_one_does_not() -> None:
    """An answer may name a commit newer than the one health named: the replica reloaded
    on its own meanwhile. "Newer" is read from the branch's reflog, not from ancestry: a
    write W on top of S that a rebase then replaced with W' was served, but W is no
    ancestor of the branch any more (the old rule failed two-replicas-writing once in ten
    runs for it). A commit the branch held *before* S never counts."""
    from simulator.scenario import Scenario, Step
    from simulator.world import World

    run = Run(Scenario("moved-on", "", "<test>", 20, 60.0))
    run.world = world = World(20, 60.0)
    try:
        world.start_server()
        served = world.local_head()
        world.remote_down()
        run._write(Step(1, "write", {"method": "POST", "path": "/api/projects",
                                     "body": {"slug": "for-a-moment", "title": "For A Moment"}}))
        assert run.last is not None and run.last.status == 201
        written = run.last.commit
        assert written is not None and written != served
        world.upstream([{"op": "add", "sheet": "people", "slug": "meanwhile"}])
        world.remote_up()
        run._webhook(Step(2, "webhook", {}))
        assert run.last is not None and run.last.data["outcome"] == "rebased", run.last.body
        replayed = world.local_head()
        assert not world.local_repo().is_ancestor(written, replayed)  # replaced, not built upon
        assert run._moved_on(served, written) and run._moved_on(served, replayed)
        assert run._moved_on(written, replayed)
        assert not run._moved_on(replayed, written) and not run._moved_on(written, served)
        assert not run._moved_on(served, served)
    finally:
        world.close()


@pytest.mark.slow
def test_a_chaos_run_whose_configured_fault_did_not_happen_fails_and_says_which(tmp_path: Path) -> None:
    """A chaos run once ended before its slow-apply window opened (3 runs in 17) and passed,
    having tested nothing of what it claims. With no writers no push reaches the remote, so
    the slow-apply window (held open a few seconds longer for one) can apply none late: the
    step must fail and name the fault; the stall, which the replicas' polls meet, happened."""
    path = tmp_path / "no-writers.toml"
    path.write_text('name = "no-writers"\ndescription = "a chaos run that cannot apply a push late"\n'
                    '[world]\nreplicas = 2\ntransport = "git"\nwrite_ack = "remote"\nnetwork_timeout_seconds = 1\n'
                    'poll_seconds = 0.5\n'
                    '[[step]]\nkind = "chaos"\nseconds = 2\nwriters = 0\nkill_every = 0\nstall_seconds = 1\n'
                    'slow_apply_seconds = 0.5\n')
    report = Run(load(str(path))).execute()
    assert not report.passed and len(report.failures) == 1
    message = report.failures[0].message
    assert "FAULT MISSED: slow_apply_seconds = 0.5 but no push was applied late (1 slow-apply windows, " \
           "0 pushes held, none applied)" in message, message
    assert "stall_seconds" not in message and "1 stalls (" in message, message
