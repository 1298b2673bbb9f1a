"""The scenario format: one TOML file per scenario, validated with errors that
name the file, the step number and the field.

    name = "fast-forward"
    description = "An outside author merges a change; the webhook serves it."

    [world]
    records = 40                  # size of the initial corpus
    history = 0                   # then this many one-record commits (needs git)
    transport = "local"           # or "git": the service fetches and pushes over git://
    replicas = 1                  # a cluster: each replica its own clone and server
    peers = true                  # replicas forward webhooks to each other (CFP_RELOAD_PEERS)
    poll_seconds = 0              # CFP_DATA_POLL_SECONDS (0: no poll)
    network_timeout_seconds = 30  # CFP_DATA_NETWORK_TIMEOUT_SECONDS
    write_ack = "remote"          # CFP_WRITE_ACK (unset: the service's default, local)
    clone = true                  # false: no clone yet; the service clones at its first start
    start = true                  # false: step 1 runs before the service is started
    push_backoff_seconds = 0.2    # the service's push daemon
    downstream = false            # a consumer follows /api/events and /api/changes (simulator/downstream.py)

    [[step]]
    kind = "upstream"
    changes = [{op = "add", sheet = "projects", slug = "tram-map", fields = {title = "Tram Map"}}]

    [[step]]
    kind = "webhook"
    commit = "@origin"

    [[step]]
    kind = "expect"
    status = 200
    outcome = "fast-forwarded"
    visible = [{sheet = "projects", slug = "tram-map", fields = {title = "Tram Map"}}]

See docs/simulator.md for every step kind and field.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from typing import Any

SCENARIO_DIR = os.path.join(os.path.dirname(__file__), "scenarios")

FAULTS = ("remote-down", "remote-up", "remote-stalled", "push-rejected", "kill-server", "restart-server",
          "rewind-origin", "reimport-origin", "block-conflicts-namespace", "second-instance",
          "start-server", "start-server-fails")
OPS = ("add", "modify", "delete", "rename", "raw")
SHEETS = ("projects", "people")

# every field a step kind accepts, with its type (a tuple: any of those)
STEP_FIELDS: dict[str, dict[str, Any]] = {
    "upstream": {"changes": list, "message": str, "author": str},
    "write": {"method": str, "path": str, "body": (dict, str), "token": str},
    "push": {"timeout": (int, float)},
    "webhook": {"style": str, "commit": str, "body": str, "branch": str, "event": str, "ref": str,
                "secret": str, "deleted": bool, "forced": bool},
    "fault": {"fault": str},
    "concurrent": {"webhooks": int, "readers": int, "writes": int, "commit": str, "spread": bool,
                   "upstreams": int, "method": str, "path": str, "body": dict},
    "chaos": {"seconds": (int, float), "seed": int, "writers": int, "records": int, "kill_every": (int, float),
              "stall_seconds": (int, float), "slow_apply_seconds": (int, float)},
    "expect": {"status": int, "outcome": (str, list), "rebuilt": bool, "no_changes": bool, "prechecked": bool,
               "code": str, "error_path": str, "visible": list, "absent": list, "served": str,
               "origin_branch": str, "conflict_branches": int, "statuses": list,
               "rebuilt_count": int, "ignored": bool, "pong": bool, "push_pending": int,
               "changes": dict, "redirects": list, "revocations": int, "converged": str,
               "within": (int, float), "origin_has_writes": bool, "last_reload": dict,
               "answered_within": (int, float)},
    "wait-push": {"timeout": (int, float)},
}
for _fields in STEP_FIELDS.values():
    _fields["replica"] = int  # which replica of a cluster the step talks to (default 0)
REQUIRED = {"write": ("method", "path"), "fault": ("fault",), "upstream": ("changes",)}


class ScenarioError(Exception):
    """A scenario file is malformed; the message names the file, step and field."""


@dataclass(frozen=True)
class Step:
    number: int
    kind: str
    args: dict[str, Any]

    def get(self, name: str, default: Any = None) -> Any:
        return self.args.get(name, default)


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    path: str
    records: int
    push_backoff_seconds: float
    steps: tuple[Step, ...] = field(default=())
    history: int = 0
    transport: str = "local"
    clone: bool = True
    start: bool = True
    replicas: int = 1
    poll_seconds: float = 0.0
    peers: bool = True
    network_timeout_seconds: float | None = None
    write_ack: str | None = None
    downstream: bool = False


def load(path: str) -> Scenario:
    where = os.path.relpath(path)
    try:
        with open(path, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ScenarioError(f"{where}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{where}: invalid TOML: {exc}") from None

    def fail(message: str) -> ScenarioError:
        return ScenarioError(f"{where}: {message}")

    unknown = sorted(set(doc) - {"name", "description", "world", "step"})
    if unknown:
        raise fail(f"unknown top-level key {unknown[0]!r} (allowed: name, description, world, step)")
    name, description = doc.get("name"), doc.get("description", "")
    if not isinstance(name, str) or not name:
        raise fail("name: a non-empty string is required")
    if not isinstance(description, str):
        raise fail("description: must be a string")
    world = doc.get("world", {})
    if not isinstance(world, dict):
        raise fail("world: must be a table")
    allowed = ("records", "history", "transport", "clone", "start", "push_backoff_seconds", "replicas",
               "poll_seconds", "peers", "network_timeout_seconds", "write_ack", "downstream")
    bad = sorted(set(world) - set(allowed))
    if bad:
        raise fail(f"world.{bad[0]}: unknown field (allowed: {', '.join(allowed)})")
    replicas = world.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or not 1 <= replicas <= 5:
        raise fail("world.replicas: must be a whole number from 1 to 5")
    poll = world.get("poll_seconds", 0)
    if not isinstance(poll, (int, float)) or isinstance(poll, bool) or poll < 0:
        raise fail("world.poll_seconds: must be a number >= 0 (0: no poll)")
    records = world.get("records", 40)
    if not isinstance(records, int) or records < 10:
        raise fail("world.records: must be a whole number >= 10")
    history = world.get("history", 0)
    if not isinstance(history, int) or isinstance(history, bool) or history < 0:
        raise fail("world.history: must be a whole number >= 0")
    transport = world.get("transport", "local")
    if transport not in ("local", "git"):
        raise fail(f"world.transport: {transport!r} is not one of 'local', 'git'")
    flags = {key: world.get(key, key != "downstream") for key in ("clone", "start", "peers", "downstream")}
    for key, value in flags.items():
        if not isinstance(value, bool):
            raise fail(f"world.{key}: must be true or false")
    timeout = world.get("network_timeout_seconds")
    if timeout is not None and (not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0):
        raise fail("world.network_timeout_seconds: must be a number > 0")
    write_ack = world.get("write_ack")
    if write_ack not in (None, "local", "remote"):
        raise fail(f"world.write_ack: {write_ack!r} is not one of 'local', 'remote'")
    backoff = world.get("push_backoff_seconds", 0.2)
    if not isinstance(backoff, (int, float)) or backoff <= 0:
        raise fail("world.push_backoff_seconds: must be a number > 0")
    raw_steps = doc.get("step", [])
    if not isinstance(raw_steps, list) or not raw_steps:
        raise fail("at least one [[step]] is required")
    steps = tuple(_step(where, i + 1, raw) for i, raw in enumerate(raw_steps))
    for step in steps:
        if not 0 <= step.get("replica", 0) < replicas:
            raise fail(f"step {step.number}: replica: {step.get('replica')} is not one of the world's "
                       f"{replicas} replica(s) (0-{replicas - 1})")
    return Scenario(name, description, path, records, float(backoff), steps, history, transport,
                    flags["clone"], flags["start"], replicas, float(poll), flags["peers"],
                    None if timeout is None else float(timeout), write_ack, flags["downstream"])


def _step(where: str, number: int, raw: Any) -> Step:
    def fail(message: str) -> ScenarioError:
        return ScenarioError(f"{where}: step {number}: {message}")

    if not isinstance(raw, dict):
        raise fail("must be a table")
    kind = raw.get("kind")
    if kind not in STEP_FIELDS:
        raise fail(f"kind: {kind!r} is not one of {', '.join(STEP_FIELDS)}")
    fields = STEP_FIELDS[kind]
    for key, value in raw.items():
        if key == "kind":
            continue
        if key not in fields:
            raise fail(f"{key}: unknown field for a {kind} step (allowed: {', '.join(fields)})")
        if not isinstance(value, fields[key]) or (fields[key] is int and isinstance(value, bool)):
            raise fail(f"{key}: wrong type {type(value).__name__}")
    for key in REQUIRED.get(kind, ()):
        if key not in raw:
            raise fail(f"{key}: required for a {kind} step")
    args = {k: v for k, v in raw.items() if k != "kind"}
    if kind == "fault" and args["fault"] not in FAULTS:
        raise fail(f"fault: {args['fault']!r} is not one of {', '.join(FAULTS)}")
    if kind == "webhook" and args.get("style", "bearer") not in ("bearer", "github"):
        raise fail("style: must be 'bearer' or 'github'")
    if kind == "upstream":
        for j, change in enumerate(args["changes"], 1):
            _check_change(fail, j, change)
    if kind == "expect":
        for key in ("visible", "absent"):
            for j, item in enumerate(args.get(key, []), 1):
                valid = isinstance(item, dict) and item.get("sheet") in SHEETS and isinstance(item.get("slug"), str)
                if not valid:
                    raise fail(f"{key}[{j}]: needs sheet (projects or people) and slug")
        for j, item in enumerate(args.get("redirects", []), 1):
            if not isinstance(item, dict) or not isinstance(item.get("path"), str) \
                    or not isinstance(item.get("location"), str):
                raise fail(f"redirects[{j}]: needs path and location strings")
    return Step(number, kind, args)


def _check_change(fail: Any, j: int, change: Any) -> None:
    if not isinstance(change, dict):
        raise fail(f"changes[{j}]: must be a table")
    op = change.get("op")
    if op not in OPS:
        raise fail(f"changes[{j}].op: {op!r} is not one of {', '.join(OPS)}")
    if op == "raw":
        if not isinstance(change.get("path"), str) or not isinstance(change.get("content"), str):
            raise fail(f"changes[{j}]: a raw change needs path and content strings")
        for flag in ("escaped", "remove"):
            if not isinstance(change.get(flag, False), bool):
                raise fail(f"changes[{j}].{flag}: must be true or false")
        return
    if change.get("sheet") not in SHEETS:
        raise fail(f"changes[{j}].sheet: must be one of {', '.join(SHEETS)}")
    if not isinstance(change.get("slug"), str):
        raise fail(f"changes[{j}].slug: a string is required")
    if op == "rename" and not isinstance(change.get("to"), str):
        raise fail(f"changes[{j}].to: a rename needs the new slug")
    if not isinstance(change.get("history", False), bool) or (change.get("history") and op != "rename"):
        raise fail(f"changes[{j}].history: true or false, and only on a rename")
    if "fields" in change and not isinstance(change["fields"], dict):
        raise fail(f"changes[{j}].fields: must be a table")


def discover(names: list[str] | None = None) -> list[str]:
    """Scenario files: all of simulator/scenarios, or those named (by name or path)."""
    if not names:
        return sorted(os.path.join(SCENARIO_DIR, f) for f in os.listdir(SCENARIO_DIR) if f.endswith(".toml"))
    paths = []
    for name in names:
        path = name if name.endswith(".toml") else os.path.join(SCENARIO_DIR, f"{name}.toml")
        if not os.path.exists(path):
            known = ", ".join(sorted(f[:-5] for f in os.listdir(SCENARIO_DIR) if f.endswith(".toml")))
            raise ScenarioError(f"no scenario {name!r} (known: {known})")
        paths.append(path)
    return paths
