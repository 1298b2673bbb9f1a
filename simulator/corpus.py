"""The one synthetic corpus, for the simulator, ``hotreload corpus``, the demo, the tests
and the benchmarks: valid records of the seed's sheets (the seed's schemas and storage
layout, as specs/read-api.md and truth.py's field lists describe them), written in the
TOML styles real data repositories hold, and a bare repository holding them as one commit
(``git fast-import``), then ``history`` one-record commits as the write API makes them.
Deterministic for a seed; nothing from the service.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from simulator.git import init_bare

VERSION = 3
"""Bumped whenever the same arguments make different data (benchmark caches are named by it)."""

# sheet -> path template below its root (the sheet's name), as in the seed's .gitsheets/
SHEETS = {
    "projects": "{slug}", "people": "{slug}", "tags": "{namespace}/{slug}",
    "tag-assignments": "{tagId}/{taggableType}/{taggableId}",
    "project-memberships": "{projectSlug}/{personSlug}", "project-updates": "{projectSlug}/{number}",
    "project-buzz": "{projectSlug}/{slug}", "help-wanted-roles": "{projectSlug}/{id}",
    "help-wanted-interest": "{roleId}/{personSlug}", "slug-history": "{entityType}/{oldSlug}",
    "revocations": "{jti}",
    "sponsors": "{slug}",  # not a seed sheet: one the service serves untyped
}
# the share of each sheet in a corpus of N records (at least `minimum`); tag assignments take the rest
SHARES = {"tags": (2, 5), "projects": (15, 2), "people": (30, 2), "project-memberships": (15, 1),
          "project-updates": (8, 1), "project-buzz": (3, 1), "help-wanted-roles": (2, 1),
          "help-wanted-interest": (2, 1), "slug-history": (1, 1), "revocations": (1, 1), "sponsors": (0.2, 1)}
STAGES = ["commenting", "bootstrapping", "prototyping", "testing", "maintaining", "drifting", "hibernating"]
TAGS = [("topic", t) for t in ("transit", "housing", "parks", "health", "budget", "food")] + \
       [("tech", t) for t in ("python", "react", "postgres", "leaflet")] + [("event", "hackathon-2023")]
NAMES = ["Ana", "Ben", "Chen", "Dana", "Eli", "Fatima", "Kofi", "Lena", "Omar", "Priya", "Rosa", "Zoe"]
SURNAMES = ["Lee", "Patel", "Garcia", "Nguyen", "Okafor", "Rossi", "Kim", "Cohen"]
WORDS = ["data", "volunteers", "residents", "city", "council", "open", "source", "maps", "transit", "bus", "routes",
         "schedules", "rent", "eviction", "schools", "meals", "clinics", "trees", "air", "quality", "voting",
         "precincts", "budgets", "grants", "permits", "parks", "libraries", "jobs", "training", "bikes", "lanes",
         "water", "lead", "pipes"]
STYLES = ("writer", "hand", "native")
MIXES = {"flat": STYLES[:1], "mixed": STYLES}
"""``hotreload corpus --styles``: every record as the write API writes it, or each in a style drawn for it."""
IMPORTED = "Data Import <import@example.org>"
API = "Code for Philly API <api@users.noreply.codeforphilly.org>"
EPOCH = 1_700_000_000
_STAMP = re.compile(r"\A\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\Z")


def render(fields: dict[str, Any], style: str) -> bytes:
    """One record as people and tools write TOML: ``writer`` as the seed's writer does
    (``key = "basic string"``, one a line); ``hand`` with a comment, aligned ``=``,
    literal strings and long text as a multi-line string; ``native`` with timestamps
    as TOML offset date-times. ``tomllib`` reads all three to the same values."""
    present = {key: value for key, value in fields.items() if value is not None}
    width = max(map(len, present)) if style == "hand" else 0
    lines = ["# edited by hand"] if style == "hand" else []
    for key, value in present.items():
        if style == "hand" and isinstance(value, str) and len(value) > 60:
            text = f'"""\n{value}"""'
        elif style == "hand" and isinstance(value, str) and "'" not in value:
            text = f"'{value}'"
        elif style == "native" and isinstance(value, str) and _STAMP.match(value):
            text = value
        else:
            text = json.dumps(value, ensure_ascii=False)  # strings, integers, booleans: TOML too
        lines.append(f"{key.ljust(width)} = {text}")
    return ("\n".join(lines) + "\n").encode()


def make_records(n: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """``n`` valid records by sheet (``n`` >= 10), ids and references consistent."""
    rng = random.Random(seed)
    counts = {sheet: max(minimum, int(n * share / 100)) for sheet, (share, minimum) in SHARES.items()}
    counts["tag-assignments"] = max(1, n - sum(counts.values()))

    def uid() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def stamp() -> str:
        return dt.datetime.fromtimestamp(EPOCH - rng.randrange(10**8), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def text(words: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."

    def dated(**fields: Any) -> dict[str, Any]:
        when = stamp()
        return {"id": uid(), **fields, "createdAt": when, "updatedAt": when}

    out: dict[str, list[dict[str, Any]]] = {sheet: [] for sheet in SHEETS}
    for i in range(counts["tags"]):
        ns, slug = TAGS[i % len(TAGS)]
        slug += f"-{i // len(TAGS)}" if i >= len(TAGS) else ""
        out["tags"].append(dated(legacyId=i + 1, namespace=ns, slug=slug, title=slug.replace("-", " ").title()))
    for i in range(counts["projects"]):
        topic = rng.choice(TAGS[:6])[1]
        slug = f"{topic}-{rng.choice(['map', 'tracker', 'finder', 'atlas'])}-{i}"
        out["projects"].append(dated(
            legacyId=i + 1, slug=slug, title=slug.replace("-", " ").title(), summary=f"Helping with {topic}: {text(8)}",
            overview=" ".join(text(12) for _ in range(rng.randint(1, 3))), stage=rng.choice(STAGES),
            developersUrl=f"https://github.com/example/{slug}", chatChannel=slug,
            deletedAt=stamp() if i % 20 == 1 else None))  # 5%, the second of any corpus among them
    for i in range(counts["people"]):
        first, last = rng.choice(NAMES), rng.choice(SURNAMES)
        out["people"].append(dated(legacyId=i + 1, slug=f"{first}-{last}-{i}".lower(), fullName=f"{first} {last}",
                                   firstName=first, lastName=last, bio=text(15) if rng.random() < 0.7 else None))
    projects, people, tags = out["projects"], out["people"], out["tags"]
    pairs: set[tuple[int, int]] = set()  # (project, person): one membership each
    while len(pairs) < min(counts["project-memberships"], len(projects) * len(people)):
        pairs.add((rng.randrange(len(projects)), rng.randrange(len(people))))
    for project, person in ((projects[p], people[q]) for p, q in sorted(pairs)):
        joined = stamp()
        out["project-memberships"].append({
            "id": uid(), "projectId": project["id"], "personId": person["id"],
            "role": rng.choice(["Founder", "Developer", "Organizer", None]), "isMaintainer": rng.random() < 0.2,
            "joinedAt": joined, "createdAt": joined, "updatedAt": joined,
            "projectSlug": project["slug"], "personSlug": person["slug"]})
    links: set[tuple[int, str, int]] = set()  # (tag, taggable type, taggable): one assignment each
    while len(links) < min(counts["tag-assignments"], len(tags) * (len(projects) + len(people))):
        kind = rng.choice(["project", "project", "project", "person"])
        links.add((rng.randrange(len(tags)), kind, rng.randrange(len(projects if kind == "project" else people))))
    for t, kind, x in sorted(links):
        thing = projects[x] if kind == "project" else people[x]
        out["tag-assignments"].append({"id": uid(), "tagId": tags[t]["id"], "taggableType": kind,
                                       "taggableId": thing["id"], "createdAt": stamp()})
    numbers: dict[str, int] = {}
    for _ in range(counts["project-updates"]):
        p = rng.choice(projects)
        numbers[p["slug"]] = number = numbers.get(p["slug"], 0) + 1
        out["project-updates"].append(dated(projectId=p["id"], authorId=rng.choice(people)["id"], body=text(20),
                                            number=number, projectSlug=p["slug"]))
    for i in range(counts["project-buzz"]):
        p, headline = rng.choice(projects), text(6)[:-1]
        slug = f"{'-'.join(headline.lower().split()[:3])}-{i}"
        out["project-buzz"].append(dated(projectId=p["id"], slug=slug, headline=headline, publishedAt=stamp(),
                                         url=f"https://news.example.org/{slug}", projectSlug=p["slug"]))
    for i in range(counts["help-wanted-roles"]):
        p = rng.choice(projects)
        out["help-wanted-roles"].append(dated(
            projectId=p["id"], postedById=rng.choice(people)["id"], title=f"{rng.choice(['Data', 'Design'])} lead",
            description=text(20), commitmentHoursPerWeek=rng.choice([None, 4]),
            status=("open", "open", "filled", "closed")[i % 4], projectSlug=p["slug"]))
    for i in range(counts["help-wanted-interest"]):
        role, q = out["help-wanted-roles"][i % len(out["help-wanted-roles"])], people[i % len(people)]
        out["help-wanted-interest"].append({"id": uid(), "roleId": role["id"], "personId": q["id"],
                                            "message": text(8), "createdAt": stamp(), "personSlug": q["slug"]})
    for i in range(counts["slug-history"]):  # renames of the past: old slugs redirect; every fourth expired
        kind = "project" if i % 2 == 0 else "person"
        thing = (projects if kind == "project" else people)[i // 2 % len(projects if kind == "project" else people)]
        out["slug-history"].append({
            "id": uid(), "entityType": kind, "oldSlug": f"{thing['slug']}-was-{i}", "newSlug": thing["slug"],
            "entityId": thing["id"], "changedAt": stamp(),
            "expiresAt": "2020-01-01T00:00:00Z" if i % 4 == 3 else "2099-01-01T00:00:00Z"})
    for _ in range(counts["revocations"]):
        out["revocations"].append({"jti": f"{rng.getrandbits(64):016x}", "personId": rng.choice(people)["id"],
                                   "revokedAt": stamp(), "expiresAt": "2099-01-01T00:00:00Z"})
    for i in range(counts["sponsors"]):
        out["sponsors"].append({"slug": f"civic-fund-{i}", "name": f"Civic Fund {i}", "tier": "gold",
                                "projects": [p["slug"] for p in projects[:2]]})
    return out


def files(records: dict[str, list[dict[str, Any]]], seed: int, mix: str = "mixed",
          progress: Callable[[int], None] | None = None) -> dict[str, bytes]:
    """The tree of a data repository holding ``records``: each sheet's config and every
    record at its template's path, each in a style of ``MIXES[mix]`` drawn for it."""
    rng, styles = random.Random(seed + 1), MIXES[mix]
    tree = {f".gitsheets/{sheet}.toml": f'[gitsheet]\nroot = "{sheet}"\npath = "{_gitsheets(t)}"\n'.encode()
            for sheet, t in SHEETS.items()}
    tree["README.md"] = b"Synthetic gitsheets data made by simulator/corpus.py (`hotreload corpus`).\n"
    for sheet, template in SHEETS.items():
        for fields in records[sheet]:
            path = f"{sheet}/{template.format(**fields)}.toml"
            tree[path] = _sponsor(fields) if sheet == "sponsors" else render(fields, rng.choice(styles))
            if progress:
                progress(1)
    return tree


def _gitsheets(template: str) -> str:
    """``{field}`` as gitsheets writes it: ``${{ field }}``."""
    return re.sub(r"\{(\w+)\}", r"${{ \1 }}", template)


def _sponsor(fields: dict[str, Any]) -> bytes:
    """An untyped record written by hand: a comment, a local date, an array, a table."""
    listed = ", ".join(json.dumps(slug) for slug in fields["projects"])
    return (f"# sponsor since 2019\nslug = '{fields['slug']}'\nname = \"{fields['name']}\"\nsince = 2019-04-15\n"
            f"tier = \"{fields['tier']}\"\nprojects = [{listed}]\n\n"
            f"[contact]\nemail = \"{fields['slug']}@example.org\"\n").encode()


def write(path: str, tree: dict[str, bytes], branch: str, people: Sequence[dict[str, Any]] = (),
          history: int = 0, seed: int = 1, deltas: bool = False, progress: Callable[[int], None] | None = None) -> str:
    """A new bare repository at ``path``: ``tree`` as one commit on ``branch``, in one pack
    (every object whole, the benchmarks' ``written`` packing; or with ``deltas``: each blob
    against the one before, long chains, as ``git fast-import`` leaves it), then ``history``
    commits each editing one of ``people`` as the write API does (one commit per write,
    its subject and trailers), ``git gc``-packed as a repository with a long life is
    kept. ``progress`` counts those commits. Returns the branch's tip."""
    if shutil.which("git") is None:
        raise RuntimeError("the git binary is needed (git fast-import writes the repository); install git")
    repo = init_bare(path, branch)
    repo.fast_import([_commit(branch, IMPORTED, EPOCH, "Initial data\n", tree)], *([] if deltas else ["--depth=0"]))
    if history:
        repo.fast_import(_history(branch, people, history, seed, progress))
        repo.run("gc", "--quiet")
    tip = repo.branch_commit(branch)
    assert tip is not None
    return tip


def _history(branch: str, people: Sequence[dict[str, Any]], history: int, seed: int,
             progress: Callable[[int], None] | None) -> Iterator[bytes]:
    rng = random.Random(seed + 2)
    for i in range(history):
        when = EPOCH + 60 * (i + 1)
        person = {**rng.choice(people), "bio": " ".join(rng.choice(WORDS) for _ in range(12)),
                  "updatedAt": dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        message = (f"api: PATCH /api/people/{person['slug']}\n\nAction: person.update\nSubject-Type: person\n"
                   f"Subject-Id: {person['id']}\nSubject-Slug: {person['slug']}\n")
        changed = {f"people/{person['slug']}.toml": render(person, "writer")}
        yield _commit(branch, API, when, message, changed, f"refs/heads/{branch}^0" if i == 0 else None)
        if progress:
            progress(1)


def _commit(branch: str, who: str, when: int, message: str, changed: dict[str, bytes], parent: str | None = None
            ) -> bytes:
    raw = message.encode()
    parts = [f"commit refs/heads/{branch}\nauthor {who} {when} +0000\ncommitter {who} {when} +0000\n".encode(),
             b"data %d\n%s\n" % (len(raw), raw), f"from {parent}\n".encode() if parent else b""]
    for path, data in changed.items():
        parts.append(b"M 100644 inline %s\ndata %d\n%s\n" % (path.encode(), len(data), data))
    return b"".join(parts)
