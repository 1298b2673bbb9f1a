"""What a write's 2xx means (CFP_WRITE_ACK), conditional writes, and diversions made loud.

* ``remote``: a 2xx only once the remote's branch holds the commit; two replicas writing
  one field at once give one 2xx and one 409, and nothing reaches a conflicts branch; an
  unreachable remote is a 503 with nothing committed anywhere, then or later.
* ``If-Match`` / ``If-None-Match: *``: 412 when the record changed (or exists), nothing committed.
* ``local``: a write diverted to a conflicts branch by a later reconcile is an ERROR naming
  it, a metric, and health ``degraded`` until an operator clears it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from falcon import testing
from prometheus_client import generate_latest

from hotreload.api.app import create_app
from hotreload.data.records import TagAssignment, to_toml
from hotreload.git import transport
from hotreload.git.repo import tracking_ref
from hotreload.service import writer as writer_module
from hotreload.service.runtime import Runtime, boot
from tests.conftest import SECRET, World, bearer, git, project_toml
from tests.gitservers import USER, GitHttp, wait_for
from tests.test_writes import write

PATCH_BODY = {"title": "Edited"}


def start(settings: Any) -> tuple[Runtime, testing.TestClient]:
    rt = boot(settings)
    return rt, testing.TestClient(create_app(rt))


@contextlib.contextmanager
def over_http(world: World, tmp_path: Path, threads: int = 8) -> Iterator[tuple[GitHttp, Runtime, testing.TestClient]]:
    """A ``remote``-mode service whose remote is smart HTTP with credentials, timing out after 1 s."""
    password = tmp_path / "password"
    password.write_text("pw")
    http = GitHttp(world.root, password)
    rt = boot(world.settings(write_ack="remote", remote=http.url("origin.git"), username=USER,
                             password_file=str(password), network_timeout_s=1.0))
    try:
        yield http, rt, testing.TestClient(create_app(rt, threads=threads))
    finally:
        rt.close()
        http.close()


@pytest.fixture
def replicas(world: World, tmp_path: Path) -> Iterator[list[tuple[Runtime, testing.TestClient]]]:
    """Two replicas in ``remote`` mode, each with its own clone of the origin."""
    second = tmp_path / "second.git"
    git("clone", "-q", "--bare", str(world.origin), str(second))
    git("--git-dir", str(second), "update-ref", "refs/remotes/origin/published", "published")
    pair = [start(world.settings(write_ack="remote")), start(world.settings(write_ack="remote", repo_path=str(second)))]
    yield pair
    for rt, _ in pair:
        rt.close()


def a_project(rt: Runtime) -> Any:
    return next(p for p in rt.holder.current.table("projects").by_id.values() if not p.deleted_at)  # type: ignore[attr-defined]


def conflict_branches(world: World) -> list[str]:
    return git("--git-dir", str(world.origin), "for-each-ref", "--format=%(refname)", "refs/heads/conflicts*").split()


def history(path: Path) -> str:
    """Every commit any ref of ``path`` reaches, with its changes: where a value could hide."""
    return git("--git-dir", str(path), "log", "--all", "-p", "--format=%H %s")


def at_once(*calls: Any) -> list[Any]:
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_a_remote_acknowledged_write_is_on_the_remote_when_answered(world: World) -> None:
    rt, client = start(world.settings(write_ack="remote"))
    try:
        resp = write(client, "POST", "/api/projects", {"slug": "zz-acked", "title": "Acked"})
        assert resp.status_code == 201, resp.text
        commit = resp.json["meta"]["commit"]
        assert resp.json["meta"]["pushed"] is True and resp.headers["X-Data-Commit"] == commit
        assert world.origin_head() == world.clone_head() == rt.holder.current.commit == commit
        assert client.simulate_get("/api/health").json["data"]["push"]["pending"] == 0
    finally:
        rt.close()


def test_a_local_write_says_it_is_not_pushed_yet(client: testing.TestClient) -> None:
    resp = write(client, "POST", "/api/projects", {"slug": "zz-local", "title": "Local"})
    assert resp.status_code == 201 and resp.json["meta"] == {"commit": resp.headers["X-Data-Commit"], "pushed": False}


def test_two_replicas_writing_one_field_at_once_give_one_2xx_and_one_409(
        replicas: list[tuple[Runtime, testing.TestClient]], world: World) -> None:
    (a, ca), (b, cb) = replicas
    slug = a_project(a).slug
    before = world.origin_head()
    answers = at_once(lambda: write(ca, "PATCH", f"/api/projects/{slug}", {"title": "From A"}),
                      lambda: write(cb, "PATCH", f"/api/projects/{slug}", {"title": "From B"}))
    assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
    won, lost = sorted(answers, key=lambda r: r.status_code)
    assert lost.json["error"]["details"]["field"] == "title"
    assert lost.json["error"]["details"]["current"]["title"] == won.json["data"]["title"]
    assert conflict_branches(world) == []
    assert git("--git-dir", str(world.origin), "rev-list", "--count", f"{before}..published") == "1"
    assert a.holder.current.commit == b.holder.current.commit == world.origin_head() == won.json["meta"]["commit"]
    loser = a if answers[0] is lost else b
    assert ("From A" if loser is a else "From B") not in history(Path(loser.repo.path))  # not committed anywhere
    assert ("From A" if loser is a else "From B") not in history(world.origin)


def test_two_replicas_writing_different_fields_both_succeed(
        replicas: list[tuple[Runtime, testing.TestClient]], world: World) -> None:
    (a, ca), (_, cb) = replicas
    slug = a_project(a).slug
    answers = at_once(lambda: write(ca, "PATCH", f"/api/projects/{slug}", {"title": "Title From A"}),
                      lambda: write(cb, "PATCH", f"/api/projects/{slug}", {"summary": "Summary from B"}))
    assert [r.status_code for r in answers] == [200, 200], [r.text for r in answers]
    stored = git("--git-dir", str(world.origin), "show", f"published:projects/{slug}.toml")
    assert 'title = "Title From A"' in stored and 'summary = "Summary from B"' in stored
    assert conflict_branches(world) == []


def test_an_unreachable_remote_is_a_503_and_nothing_is_committed_then_or_later(world: World) -> None:
    rt, client = start(world.settings(write_ack="remote"))
    try:
        head, slug = world.clone_head(), a_project(rt).slug
        os.rename(world.origin, world.root / "away.git")
        resp = write(client, "PATCH", f"/api/projects/{slug}", {"title": "Never Saved"})
        assert resp.status_code == 503, resp.text
        assert resp.headers["Retry-After"] == "5" and resp.json["error"]["details"]["outcome"] == "refused"
        assert world.clone_head() == head == rt.holder.current.commit
        os.rename(world.root / "away.git", world.origin)
        assert rt.push_daemon is not None and rt.push_daemon.flush(5)
        assert "Never Saved" not in history(world.origin) and "Never Saved" not in history(world.clone)
    finally:
        rt.close()


@pytest.mark.parametrize("ack", ["local", "remote"])
def test_a_stale_if_match_is_412_with_nothing_committed(world: World, ack: str) -> None:
    rt, client = start(world.settings(write_ack=ack))
    try:
        slug, other = (p.slug for p in list(rt.holder.current.table("projects").by_id.values())[:2])
        tag = client.simulate_get(f"/api/projects/{slug}").headers["ETag"]
        assert write(client, "PATCH", f"/api/projects/{other}", PATCH_BODY).status_code == 200
        ok = write(client, "PATCH", f"/api/projects/{slug}", {"title": "Still Mine"}, {**AUTH, "If-Match": tag})
        assert ok.status_code == 200, ok.text  # another record changed since the tag: not this one
        head = world.clone_head()
        stale = write(client, "DELETE", f"/api/projects/{slug}", None, {**AUTH, "If-Match": tag})
        assert stale.status_code == 412 and stale.json["error"]["code"] == "precondition_failed"
        assert stale.json["error"]["details"]["current"]["title"] == "Still Mine"
        for unknown in ('"' + "ab" * 20 + '-0123456789abcdef"', '"not-ours"'):
            resp = write(client, "PATCH", f"/api/projects/{slug}", PATCH_BODY, {**AUTH, "If-Match": unknown})
            assert resp.status_code == 412, resp.text
        assert world.clone_head() == head == rt.holder.current.commit
        if ack == "remote":
            assert world.origin_head() == head
        fresh = client.simulate_get(f"/api/projects/{slug}").headers["ETag"]
        assert write(client, "DELETE", f"/api/projects/{slug}", None, {**AUTH, "If-Match": fresh}).status_code == 200
        assert write(client, "PATCH", f"/api/projects/{slug}", PATCH_BODY, {**AUTH, "If-Match": "*"}).status_code == 404
    finally:
        rt.close()


def test_an_if_match_holding_no_tag_matches_nothing(client: testing.TestClient, runtime: Runtime) -> None:
    """An ``If-Match`` header that is there but empty (a script whose GET failed sent ``$tag``
    empty) is a condition no record meets: 412, never an unconditional write (RFC 9110 13.1.1)."""
    slug, head = a_project(runtime).slug, runtime.holder.current.commit
    for value in ("", ",", " , "):
        for method, body in (("PATCH", PATCH_BODY), ("DELETE", None)):
            resp = write(client, method, f"/api/projects/{slug}", body, {**AUTH, "If-Match": value})
            assert resp.status_code == 412, (method, value, resp.text)
            assert resp.json["error"]["details"]["current"]["slug"] == slug
    assert runtime.holder.current.commit == head


AUTH = bearer("w" * 32)


def test_if_none_match_star_refuses_to_create_over_an_existing_slug(client: testing.TestClient,
                                                                      runtime: Runtime) -> None:
    taken = a_project(runtime).slug
    head = runtime.holder.current.commit
    refused = write(client, "POST", "/api/projects", {"slug": taken, "title": "Again"}, {**AUTH, "If-None-Match": "*"})
    assert refused.status_code == 412 and refused.json["error"]["details"]["current"]["slug"] == taken
    assert write(client, "POST", "/api/projects", {"slug": taken, "title": "Again"}).status_code == 409
    bad = write(client, "POST", "/api/projects", {"slug": "zz-new", "title": "New"}, {**AUTH, "If-None-Match": '"x"'})
    assert bad.status_code == 400 and bad.json["error"]["details"]["field"] == "If-None-Match"
    assert runtime.holder.current.commit == head
    made = write(client, "POST", "/api/projects", {"slug": "zz-new", "title": "New"}, {**AUTH, "If-None-Match": "*"})
    assert made.status_code == 201


def test_a_diverted_write_is_loud_until_an_operator_clears_it(world: World, caplog: pytest.LogCaptureFixture) -> None:
    rt, client = start(world.settings())
    try:
        assert rt.push_daemon is not None
        rt.push_daemon.stop()  # the write waits, unpushed, while someone edits the same line upstream
        rt.push_daemon = rt.reloader.push_daemon = rt.writer.push_daemon = None
        project = a_project(rt)
        world.commit_upstream({f"projects/{project.slug}.toml": project_toml(project.slug, "Theirs", id=project.id)})
        assert write(client, "PATCH", f"/api/projects/{project.slug}", {"title": "Ours"}).status_code == 200
        with caplog.at_level(logging.ERROR):
            branch = rt.reloader.reload().conflict_branch
        assert branch and branch.startswith("conflicts/")
        said = [r for r in caplog.records if "not served" in r.getMessage()]
        assert len(said) == 1 and f"project.update of project {project.id} ({project.slug})" in said[0].getMessage()
        assert branch in said[0].getMessage()
        health = client.simulate_get("/api/health").json["data"]
        assert health["status"] == "degraded" and health["diverted"] == [branch]
        assert any(branch in reason for reason in health["degraded"])
        assert "hotreload_writes_diverted_total 1.0" in generate_latest(rt.metrics.registry).decode()
    finally:
        rt.close()
    rt, client = start(world.settings())  # a restart does not forget it
    try:
        assert client.simulate_get("/api/health").json["data"]["diverted"] == [branch]
        url = f"/api/_internal/diversions?branch={branch}"
        assert client.simulate_delete(url, headers=bearer("x" * 40)).status_code == 401
        assert client.simulate_delete("/api/_internal/diversions?branch=conflicts/nope",
                                      headers=bearer(SECRET)).status_code == 404
        for missing in ("", "?branch="):  # no branch named: the operator's mistake, said as such
            said = client.simulate_delete(f"/api/_internal/diversions{missing}", headers=bearer(SECRET))
            assert said.status_code == 400 and said.json["error"]["details"]["field"] == "branch", said.text
        cleared = client.simulate_delete(url, headers=bearer(SECRET))
        assert cleared.status_code == 200 and cleared.json["data"] == {"cleared": branch, "diverted": []}
        health = client.simulate_get("/api/health").json["data"]
        assert health["status"] == "ok" and health["diverted"] == []
        assert git("--git-dir", str(world.clone), "rev-parse", branch)  # the branch itself stays
    finally:
        rt.close()


@pytest.mark.parametrize("then", ["verified", "unknown"])
def test_a_push_whose_answer_is_lost_is_checked_before_answering(world: World, tmp_path: Path, then: str) -> None:
    """The remote applies the push and its answer never arrives: the write asks the remote
    whether it holds the commit (200), or, when it cannot ask, says the outcome is unknown."""
    with over_http(world, tmp_path) as (http, rt, client):
        http.lose_push_answers, http.down_after_push = 2.5, then == "unknown"
        resp = write(client, "POST", "/api/projects", {"slug": "zz-lost-answer", "title": "Lost Answer"})
        http.lose_push_answers, http.down = 0.0, False
        assert "Lost Answer" in history(world.origin)  # the remote did apply it
        if then == "verified":
            assert resp.status_code == 201, resp.text
            assert resp.json["meta"]["commit"] == world.origin_head() == rt.holder.current.commit
        else:
            assert resp.status_code == 503 and resp.json["error"]["details"]["outcome"] == "unknown", resp.text
            assert "may have been saved" in resp.json["error"]["message"]


@pytest.mark.parametrize("meanwhile", ["nothing", "the-branch-moved"])
def test_a_push_the_remote_is_slow_to_apply_is_not_called_refused_while_it_may_still_land(
        world: World, tmp_path: Path, meanwhile: str) -> None:
    """The answer times out before the remote applied the push, and the check finds the remote's
    branch where the push expected it: the compare-and-swap may still apply, so the outcome is
    ``unknown`` (and it does land, and is served). Only a branch moved elsewhere, which the
    remote's old-value check can never accept, is ``refused``."""
    with over_http(world, tmp_path) as (http, rt, client):
        other = a_project(rt)
        http.apply_pushes_late = (lambda: None) if meanwhile == "nothing" else (lambda: world.commit_upstream(
            {f"projects/{other.slug}.toml": project_toml(other.slug, "Theirs", id=other.id)}))
        resp = write(client, "POST", "/api/projects", {"slug": "zz-late", "title": "Late Apply"})
        http.apply_pushes_late = None
        assert resp.status_code == 503, resp.text
        if meanwhile == "nothing":
            assert resp.json["error"]["details"]["outcome"] == "unknown", resp.text
            assert "may have been saved" in resp.json["error"]["message"]
            wait_for(lambda: "Late Apply" in history(world.origin))
            rt.reloader.reload()
            assert client.simulate_get("/api/projects/zz-late").json["data"]["title"] == "Late Apply"
        else:
            assert resp.json["error"]["details"]["outcome"] == "refused", resp.text
            assert "Theirs" in history(world.origin) and "Late Apply" not in history(world.origin)
            # the check fetched the remote's new tip but served nothing: the tracking ref must not say
            # otherwise, or the poll (which compares the two) would never reload it
            assert rt.repo.resolve(tracking_ref("published")) != world.origin_head()
            assert rt.reloader.reload().new_commit == world.origin_head() == rt.holder.current.commit


def test_a_local_remote_failing_with_an_os_error_is_a_503_naming_it(world: World,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A local-path remote whose disk is full: the write is a 503 naming the remote and the error,
    with nothing committed, not a bare 500."""
    rt, client = start(world.settings(write_ack="remote"))
    try:
        head = rt.holder.current.commit

        def disk_full(*args: Any) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(transport, "copy_missing_objects", disk_full)
        resp = write(client, "PATCH", f"/api/projects/{a_project(rt).slug}", PATCH_BODY)
        assert resp.status_code == 503 and resp.headers.get("Retry-After"), resp.text
        assert str(world.origin) in resp.json["error"]["message"] and "No space left" in resp.json["error"]["message"]
        assert world.clone_head() == world.origin_head() == head == rt.holder.current.commit
    finally:
        rt.close()


@pytest.mark.parametrize("if_match", [False, True])
def test_a_local_write_that_loses_the_race_to_another_write_of_its_field_applies_after_it(
        client: testing.TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, if_match: bool) -> None:
    """``local``: write B lands, whole, while write A prepares on the old snapshot. A prepares again
    on B's and applies, as it would have had it come a moment later (decision 147): no timing-
    dependent 409. With ``If-Match`` from before B, A is a 412: the client's own protection holds."""
    slug = a_project(runtime).slug
    tag = client.simulate_get(f"/api/projects/{slug}").headers["ETag"]
    real_build, b_answers = writer_module.build, []

    def build(*args: Any, **kwargs: Any) -> Any:
        if not b_answers:  # A's first prepare: B goes first
            b_answers.append(None)
            b = threading.Thread(target=lambda: b_answers.append(
                write(client, "PATCH", f"/api/projects/{slug}", {"title": "From B"})))
            b.start()
            b.join()
        return real_build(*args, **kwargs)

    monkeypatch.setattr(writer_module, "build", build)
    a = write(client, "PATCH", f"/api/projects/{slug}", {"title": "From A"},
              {**AUTH, "If-Match": tag} if if_match else None)
    assert b_answers[1].status_code == 200, b_answers[1].text
    served = client.simulate_get(f"/api/projects/{slug}").json["data"]["title"]
    if if_match:
        assert a.status_code == 412 and a.json["error"]["details"]["current"]["title"] == "From B", a.text
        assert served == "From B"
    else:
        assert a.status_code == 200 and a.json["meta"]["pushed"] is False, a.text
        assert served == "From A"


def test_writes_waiting_on_a_stalled_remote_take_at_most_a_quarter_of_the_workers(world: World,
                                                                                   tmp_path: Path) -> None:
    """``remote``: while one write waits on a remote that does not answer, a second (beyond a
    quarter of 4 worker threads) is a 503 with ``Retry-After`` at once, not a second worker held
    for the remote's timeout: readers keep the other workers."""
    with over_http(world, tmp_path, threads=4) as (http, rt, client):
        stalled, release = threading.Event(), threading.Event()
        http.apply_pushes_late = lambda: (stalled.set(), release.wait(30))
        try:
            slug = a_project(rt).slug
            first = threading.Thread(target=write, args=(client, "PATCH", f"/api/projects/{slug}", {"title": "First"}))
            first.start()
            assert stalled.wait(10)
            second = write(client, "PATCH", f"/api/projects/{slug}", {"summary": "Second"})
            assert first.is_alive(), "the second write waited for the first"
            assert second.status_code == 503 and second.headers["Retry-After"] == "1", second.text
            assert "--threads" in second.json["error"]["message"]
            assert "Second" not in history(world.origin)
            release.set()
            first.join()
        finally:
            release.set()


@pytest.mark.parametrize("answer", [200, 412])
def test_a_writes_answer_renders_the_snapshot_its_commit_names(world: World, monkeypatch: pytest.MonkeyPatch,
                                                                answer: int) -> None:
    """A reload that swaps between a write's swap and its answer (here: one tagging the record)
    does not leak into the answer: the body is the record at ``X-Data-Commit``, tags included; a
    412's ``details.current`` is the record as the precondition saw it."""
    runtime, client = start(world.settings(write_ack="remote"))  # the write is on the origin when answered
    try:
        project, snap = a_project(runtime), runtime.holder.current
        tag = next(t for t in snap.table("tags").by_id.values() if t not in snap.tags_of("project", project.id))
        real_update = runtime.writer.update

        def update_then_a_reload(*args: Any, **kwargs: Any) -> Any:
            try:
                return real_update(*args, **kwargs)
            finally:
                assignment = TagAssignment(id=str(uuid.uuid4()), tag_id=tag.id, taggable_type="project",  # type: ignore[arg-type]
                                           taggable_id=project.id, created_at="2026-01-01T00:00:00Z")
                world.commit_upstream({f"tag-assignments/{tag.id}/project/{project.id}.toml":
                                       to_toml(assignment).decode()})
                runtime.reloader.reload()

        monkeypatch.setattr(runtime.writer, "update", update_then_a_reload)
        resp = write(client, "PATCH", f"/api/projects/{project.slug}", PATCH_BODY,
                     {**AUTH, "If-Match": '"not-ours"'} if answer == 412 else None)
        assert resp.status_code == answer, resp.text
        assert tag.handle in client.simulate_get(f"/api/projects/{project.slug}").json["data"]["tags"]  # served now
        said = resp.json["data"] if answer == 200 else resp.json["error"]["details"]["current"]
        assert said["title"] == ("Edited" if answer == 200 else project.title) and tag.handle not in said["tags"]
    finally:
        runtime.close()
