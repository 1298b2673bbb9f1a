"""A hypothesis stateful model of histories against a real server.

Rules: outside authors add, edit and delete projects upstream (``mdl-u-*``), the
API creates, edits and deletes its own (``mdl-w-*``), the push daemon is waited
on, webhooks arrive, the remote goes down and comes back, invalid records land
upstream and get fixed. After every rule the simulator's invariants are checked
(served == branch, records equal the tree, no commit lost, origin never rewound,
every response has a documented status), plus the model's own expectations.

CI runs a bounded profile; ``HOTRELOAD_MODEL_PROFILE=long`` runs a long one.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from simulator.runner import Run
from simulator.scenario import Scenario, Step
from simulator.world import World

LONG = os.environ.get("HOTRELOAD_MODEL_PROFILE") == "long"
BROKEN = "projects/mdl-broken.toml"


class Histories(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.run = Run(Scenario("model", "stateful model", "<model>", 20, 0.1))
        self.run.world = self.world = World(20, 0.1)
        self.world.start_server()
        self.run._observe_all(0)
        self.upstream: dict[str, str] = {}  # slug -> title on the origin
        self.written: dict[str, str] = {}  # slug -> title, live projects made through the API
        self.broken = False
        self.n = 0
        self.step = 0

    def teardown(self) -> None:
        self.world.close()

    def _do(self, kind: str, **args: object) -> None:
        self.step += 1
        getattr(self.run, "_" + kind.replace("-", "_"))(Step(self.step, kind, dict(args)))

    # -- upstream ------------------------------------------------------------------------

    @rule(title=st.sampled_from(["Parks", "Transit", "Housing"]))
    def upstream_add(self, title: str) -> None:
        self.n += 1
        slug = f"mdl-u-{self.n}"
        self._do("upstream", changes=[{"op": "add", "sheet": "projects", "slug": slug, "fields": {"title": title}}])
        self.upstream[slug] = title

    @precondition(lambda self: bool(self.upstream))
    @rule(data=st.data())
    def upstream_edit_or_delete(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(self.upstream)))
        if data.draw(st.booleans()):
            self._do("upstream", changes=[{"op": "modify", "sheet": "projects", "slug": slug, "fields": {"title": "Edited"}}])
            self.upstream[slug] = "Edited"
        else:
            self._do("upstream", changes=[{"op": "delete", "sheet": "projects", "slug": slug}])
            del self.upstream[slug]

    @precondition(lambda self: bool(self.upstream))
    @rule(data=st.data())
    def upstream_renames_with_history(self, data: st.DataObject) -> None:
        """As the seed's writers rename: the file moves and a slug-history record lands
        with it; the invariants then check the old slug redirects (issue #16)."""
        slug = data.draw(st.sampled_from(sorted(self.upstream)))
        self.n += 1
        new = f"mdl-r-{self.n}"
        self._do("upstream", changes=[{"op": "rename", "sheet": "projects", "slug": slug, "to": new,
                                       "history": True}])
        self.upstream[new] = self.upstream.pop(slug)

    @rule()
    def upstream_revokes_a_token(self) -> None:
        self.n += 1
        self._do("upstream", changes=[{"op": "raw", "path": f"revocations/mdl-{self.n}.toml", "content": (
            f'jti = "mdl-{self.n}"\npersonId = "01951a3c-0000-7000-8000-000000000002"\n'
            'revokedAt = "2030-01-01T00:00:00Z"\nexpiresAt = "2031-01-01T00:00:00Z"\n')}])

    @precondition(lambda self: not self.broken)
    @rule()
    def upstream_breaks_a_record(self) -> None:
        self._do("upstream", changes=[{"op": "raw", "path": BROKEN, "content": 'slug = "mdl-broken"\n'}])
        self.broken = True

    @precondition(lambda self: self.broken)
    @rule()
    def upstream_fixes_it(self) -> None:
        self._do("upstream", changes=[{"op": "delete", "sheet": "projects", "slug": "mdl-broken"}])
        self.broken = False

    # -- the API ----------------------------------------------------------------------------

    @rule(title=st.sampled_from(["Bikes", "Budget"]))
    def api_create(self, title: str) -> None:
        self.n += 1
        slug = f"mdl-w-{self.n}"
        self._do("write", method="POST", path="/api/projects", body={"slug": slug, "title": title})
        assert self.run.last is not None and self.run.last.status == 201, self.run.last
        self.written[slug] = title

    @precondition(lambda self: bool(self.written))
    @rule(data=st.data())
    def api_edit_or_delete(self, data: st.DataObject) -> None:
        slug = data.draw(st.sampled_from(sorted(self.written)))
        choice = data.draw(st.sampled_from(["edit", "rename", "delete"]))
        if choice == "edit":
            self._do("write", method="PATCH", path=f"/api/projects/{slug}", body={"title": "Patched"})
            assert self.run.last is not None and self.run.last.status == 200
            self.written[slug] = "Patched"
        elif choice == "rename":  # writes a slug-history record too: the old slug must redirect
            self.n += 1
            new = f"mdl-w-{self.n}"
            self._do("write", method="PATCH", path=f"/api/projects/{slug}", body={"slug": new})
            assert self.run.last is not None and self.run.last.status == 200
            self.written[new] = self.written.pop(slug)
        else:
            self._do("write", method="DELETE", path=f"/api/projects/{slug}")
            assert self.run.last is not None and self.run.last.status == 200
            del self.written[slug]

    @rule()
    def wait_for_the_push_daemon(self) -> None:
        self._do("push", timeout=5)

    # -- the remote and the webhook ------------------------------------------------------------

    @rule(down=st.booleans())
    def remote_flaps(self, down: bool) -> None:
        self._do("fault", fault="remote-down" if down else "remote-up")

    @rule(commit=st.sampled_from(["@origin", "@local", None]))
    def webhook(self, commit: str | None) -> None:
        if commit == "@origin" and self.world.remote_is_down:
            commit = None
        self._do("webhook", **({"commit": commit} if commit else {}))
        resp = self.run.last
        assert resp is not None
        if self.world.remote_is_down:
            assert resp.status in (200, 502), resp.body  # 200 only when pre-checked
            return
        if self.broken:
            assert resp.status in (200, 422), resp.body
            return
        assert resp.status == 200, resp.body
        if "head" in resp.data:
            return  # pre-checked: the announced commit was already served
        # a reconcile ran with a reachable remote and valid data: everything is served
        for slug, title in {**self.upstream, **self.written}.items():
            got = self.run._request("GET", f"/api/projects/{slug}")
            assert got.status == 200 and got.data["title"] == title, (slug, title, got.status, got.body[:200])

    @invariant()
    def simulator_invariants_hold(self) -> None:
        before = len(self.run.report.failures)
        self.run._check_invariants(self.step)
        new = self.run.report.failures[before:]
        assert not new, "\n".join(f.message for f in new)

    @invariant()
    def api_writes_are_never_lost(self) -> None:
        for slug, title in self.written.items():
            got = self.run._request("GET", f"/api/projects/{slug}")
            assert got.status == 200 and got.data["title"] == title, (slug, got.status)


Histories.TestCase.settings = settings(
    max_examples=40 if LONG else 3,
    stateful_step_count=50 if LONG else 12,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
TestHistories = Histories.TestCase
