"""The webhook against a real ``hotreload serve`` on loopback: concurrency,
atomicity and crash safety."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from hotreload.git.repo import GitRepo
from simulator.server import ServerProcess
from tests.conftest import SECRET, World, bearer, git, project_toml

URL = "/api/_internal/reload-data"
MARKER = "zebracrossing"


def generation_files(world: World, slugs: list[str], gen: int) -> dict[str, str | None]:
    return {f"projects/{slug}.toml": project_toml(slug, f"{MARKER} gen{gen} {slug}") for slug in slugs}


@pytest.mark.slow
def test_readers_never_see_a_torn_snapshot(world: World) -> None:
    slugs = [f"zz-torn-{i:02d}" for i in range(20)]
    # each commit rewrites the same 20 records; generation n <=> commit n
    gen_of: dict[str, int] = {world.commit_upstream(generation_files(world, slugs, 0)): 0}
    with ServerProcess(world.env(), threads=8) as server:
        stop = threading.Event()
        problems: list[str] = []
        seen: set[str] = set()

        def reader() -> None:
            while not stop.is_set():
                resp = server.get(f"/api/projects?q={MARKER}&perPage=100")
                commit = resp.commit or ""
                titles = [p["title"] for p in resp.data]
                gens = {t.split()[1] for t in titles}
                seen.add(commit)
                if resp.status != 200 or len(titles) != 20 or len(gens) != 1:
                    problems.append(f"{commit[:8]}: {resp.status} {len(titles)} titles, gens {gens}")
                elif commit in gen_of and gens != {f"gen{gen_of[commit]}"}:
                    problems.append(f"{commit[:8]} should be gen{gen_of[commit]}, body has {gens}")

        readers = [threading.Thread(target=reader) for _ in range(4)]
        for t in readers:
            t.start()
        try:
            for gen in range(1, 13):
                tip = world.commit_upstream(generation_files(world, slugs, gen))
                gen_of[tip] = gen
                resp = server.request("POST", URL, {"commitHash": tip}, bearer())
                assert resp.status == 200 and resp.data["newCommit"] == tip
        finally:
            stop.set()
            for t in readers:
                t.join()
    assert not problems, problems[:5]
    assert len(seen & set(gen_of)) >= 3  # the readers really did see several generations


@pytest.mark.slow
def test_burst_of_webhooks_rebuilds_once(server: ServerProcess, world: World) -> None:
    tip = world.commit_upstream({"projects/zz-burst.toml": project_toml("zz-burst", "Burst")})
    barrier = threading.Barrier(20)

    def call(_: int) -> tuple[int, dict[str, object]]:
        barrier.wait()
        resp = server.request("POST", URL, {"commitHash": tip}, bearer())
        return resp.status, resp.data

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(call, range(20)))
    assert [s for s, _ in results] == [200] * 20
    assert sum(1 for _, d in results if d.get("rebuilt") is True) == 1
    assert all(d.get("noChanges") is True for _, d in results if not d.get("rebuilt"))
    reloads = [line for line in server.get("/metrics").body.decode().splitlines()
               if line.startswith("hotreload_reloads_total{")]
    # the start-up reconcile, then exactly one fast-forward; the rest short-circuited
    assert sorted(reloads) == ['hotreload_reloads_total{outcome="fast-forwarded",trigger="webhook"} 1.0',
                               'hotreload_reloads_total{outcome="in-sync",trigger="startup"} 1.0']


@pytest.mark.slow
def test_the_seed_workflows_curl_line(server: ServerProcess, world: World) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    tip = world.commit_upstream({"projects/zz-curl.toml": project_toml("zz-curl", "Curl")})
    body = json.dumps({"branch": "published", "commitHash": tip})
    result = subprocess.run(
        ["curl", "--fail-with-body", "-sS", "-X", "POST", f"{server.base}{URL}",
         "-H", f"Authorization: Bearer {SECRET}", "-H", "Content-Type: application/json", "-d", body],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["data"]["outcome"] == "fast-forwarded"
    failing = subprocess.run(
        ["curl", "--fail-with-body", "-sS", "-X", "POST", f"{server.base}{URL}",
         "-H", "Authorization: Bearer wrong-wrong-wrong-wrong-wrong-wrong", "-d", body],
        capture_output=True, text=True, timeout=60)
    assert failing.returncode == 22 and "Authentication required" in failing.stdout


@pytest.mark.slow
def test_sigkill_during_reloads_leaves_a_consistent_repository(world: World) -> None:
    slugs = [f"zz-kill-{i}" for i in range(5)]
    server = ServerProcess(world.env()).start()
    stop = threading.Event()

    def hammer() -> None:
        gen = 0
        while not stop.is_set():
            gen += 1
            tip = world.commit_upstream(generation_files(world, slugs, gen))
            try:
                server.request("POST", URL, {"commitHash": tip}, bearer(), timeout=5)
            except OSError:
                return

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        for _ in range(200):  # wait until a few reloads have happened
            if world.clone_head() != world.origin_head() or "fast-forwarded" in server.log():
                break
            threading.Event().wait(0.02)
        threading.Event().wait(0.3)
        server.kill()
    finally:
        stop.set()
        thread.join()
    fsck = subprocess.run(["git", "--git-dir", str(world.clone), "fsck", "--no-progress"],
                          capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    head = world.clone_head()
    assert GitRepo(str(world.clone)).commit(head) is not None
    with ServerProcess(world.env()) as again:
        health = again.get("/api/health").data
        assert health["servedCommit"] == health["headCommit"] == world.clone_head()
        resp = again.request("POST", URL, {"commitHash": world.origin_head()}, bearer())
        assert resp.status == 200
        assert again.get("/api/health").data["servedCommit"] == world.origin_head()


def test_threads_each_get_their_own_dulwich_repo(world: World) -> None:
    """dulwich's Repo and pack readers are not made for concurrent use; GitRepo
    gives each thread its own (a finished thread's may go to a later one: decision
    66). Many threads, all alive at once, read every blob at once."""
    repo = GitRepo(str(world.clone))
    head = world.clone_head()
    expected = {e.path: repo.read_blob(e.sha) for e in repo.list_blobs(repo.tree_of(head))}
    errors: list[BaseException] = []
    repos: set[int] = set()
    all_started = threading.Barrier(8)

    def read_all() -> None:
        try:
            repos.add(id(repo.repo))  # before the barrier: no thread has finished, none can hand its Repo on
            all_started.wait(10)
            for _ in range(5):
                got = {e.path: repo.read_blob(e.sha) for e in repo.list_blobs(repo.tree_of(head))}
                assert got == expected
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=read_all) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(repos) == 8
    git("--git-dir", str(world.clone), "fsck", "--no-progress")
    repo.close()


def test_stale_ref_locks_from_a_killed_process_are_cleared_at_start(world: World) -> None:
    from hotreload.service.runtime import boot

    lock = world.clone / "refs" / "heads" / "published.lock"
    lock.write_text("left by a SIGKILLed server\n")
    runtime = boot(world.settings())
    try:
        assert not lock.exists()
        tip = world.commit_upstream({"projects/zz-after-crash.toml": project_toml("zz-after-crash", "After")})
        assert runtime.reloader.reload(tip).outcome == "fast-forwarded"
    finally:
        runtime.close()
