"""Synthetic gitsheets data repositories: N valid records across the seed's eleven
sheets plus one sheet the service has no schema for (``sponsors``), deterministic
for a seed, written as one pack in a bare repository.

Used by ``hotreload corpus``, the demo, the tests and the benchmarks (the simulator
writes its own: simulator/corpus.py).
"""

from __future__ import annotations

import collections
import datetime as dt
import os
import random
import re
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from hotreload.data.records import (
    STAGES,
    Entry,
    HelpWantedInterest,
    HelpWantedRole,
    Person,
    Project,
    ProjectBuzz,
    ProjectMembership,
    ProjectUpdate,
    Revocation,
    SlugHistory,
    Tag,
    TagAssignment,
    to_toml,
    toml_value,
)
from hotreload.data.sheets import CONFIG_DIR, STANDARD_SHEETS, Sheet, config_text
from hotreload.git.repo import API_IDENTITY, GitRepo, Signature, init_bare, tree_objects

TOPICS = ["transit", "housing", "education", "health", "environment", "elections", "food",
          "safety", "parks", "budget", "libraries", "jobs", "arts", "bikes", "water"]
TECHS = ["python", "javascript", "react", "postgres", "django", "rails", "go", "rust",
         "flutter", "d3", "leaflet", "kotlin", "swift", "terraform", "sqlite"]
EVENTS = ["hackathon-2019", "hackathon-2020", "hackathon-2021", "hackathon-2022",
          "hackathon-2023", "civic-sprint", "open-data-day", "datahack"]
ADJECTIVES = ["open", "civic", "community", "public", "neighborhood", "city", "smart", "fair",
              "green", "safe", "local", "shared"]
NOUNS = ["map", "tracker", "finder", "dashboard", "explorer", "portal", "guide", "alerts",
         "atlas", "directory", "toolkit", "index"]
FIRST = ["Ana", "Ben", "Chen", "Dana", "Eli", "Fatima", "Gus", "Hana", "Ivan", "Jada", "Kofi",
         "Lena", "Marco", "Nia", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Vic",
         "Wen", "Xavi", "Yara", "Zoe"]
LAST = ["Lee", "Patel", "Garcia", "Smith", "Nguyen", "Okafor", "Rossi", "Kim", "Cohen",
        "Murphy", "Santos", "Ali", "Brown", "Jones", "Diaz", "Walker"]
WORDS = [
    "data", "volunteers", "residents", "city", "council", "open", "source", "maps", "transit",
    "bus", "routes", "schedules", "rent", "eviction", "schools", "meals", "clinics", "trees",
    "air", "quality", "voting", "precincts", "budgets", "grants", "permits", "parks", "libraries",
    "jobs", "training", "bikes", "lanes", "water", "lead", "pipes",
]


CORPUS_VERSION = 2
"""Bumped whenever ``make_corpus`` makes different data for the same arguments
(caches of corpora, such as the benchmarks', are keyed by it). 2: every seed sheet."""

UNTYPED_SHEET = Sheet("sponsors", "sponsors", "${{ slug }}")
"""Not a seed sheet: it shows a sheet the service has no schema for, served untyped."""


@dataclass(frozen=True)
class Corpus:
    files: dict[str, bytes]
    counts: dict[str, int]


def timestamp(rng: random.Random) -> str:
    return f"20{rng.randint(15, 25):02d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T" \
           f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}Z"


def new_id(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


STYLES = ("flat", "mixed")


def restyle(data: bytes, rng: random.Random) -> bytes:
    """The same table written the way people write TOML by hand: aligned ``=``,
    literal strings, long text as a multi-line string, a comment. ``tomllib`` reads
    it to the same values (a test checks)."""
    table = tomllib.loads(data.decode())
    width = max(map(len, table)) if rng.random() < 0.5 else 0
    lines = ["# kept by hand"] if rng.random() < 0.5 else []
    for key, value in table.items():
        if isinstance(value, str) and len(value) > 60 and '"""' not in value and "\\" not in value:
            text = f'"""\n{value}"""'
        elif isinstance(value, str) and "'" not in value and "\n" not in value and rng.random() < 0.5:
            text = f"'{value}'"
        else:
            text = toml_value(value)
        lines.append(f"{key.ljust(width)} = {text}")
    return ("\n".join(lines) + "\n").encode()


def make_corpus(records: int, seed: int = 1, progress: Callable[[int], None] | None = None,
                styles: str = "flat") -> Corpus:
    """``records`` valid records: about 2% tags, 15% projects, 30% people, 15%
    memberships, 8% project updates, 3% buzz, 2% help-wanted roles, 2% expressions
    of interest, 1% slug history, 1% revocations, 0.2% sponsors (untyped), the
    rest tag assignments."""
    if records < 10:
        raise ValueError("a corpus needs at least 10 records")
    if styles not in STYLES:
        raise ValueError(f"styles must be one of {', '.join(STYLES)}")
    n = _sizes(records)
    # every sheet draws from one random stream, in this order: the same seed, the same data
    out = _Drawing(seed, styles, progress or (lambda n: None))
    tags, projects, people = out.tags(n["tags"]), out.projects(n["projects"]), out.people(n["people"])
    out.memberships(n["project-memberships"], projects, people)
    out.tag_assignments(n["tag-assignments"], tags, projects, people)
    out.updates(n["project-updates"], projects, people)
    out.buzz(n["project-buzz"], projects)
    out.interest(n["help-wanted-interest"], out.roles(n["help-wanted-roles"], projects, people), people)
    out.slug_history(n["slug-history"], projects, people)
    out.revocations(n["revocations"], people)
    out.sponsors(n["sponsors"], projects)
    written = collections.Counter(path.split("/", 1)[0] for path in out.files)
    return Corpus(out.files, {sheet: written[sheet] for sheet in n})


def _sizes(records: int) -> dict[str, int]:
    """Records per sheet (memberships, assignments and interest: at most; fewer pairs may exist)."""
    n = {"tags": max(5, records // 50), "projects": max(2, records * 15 // 100),
         "people": max(2, records * 30 // 100), "project-memberships": max(1, records * 15 // 100),
         "tag-assignments": 0, "project-updates": max(1, records * 8 // 100),
         "project-buzz": max(1, records * 3 // 100), "help-wanted-roles": max(1, records * 2 // 100),
         "help-wanted-interest": max(1, records * 2 // 100), "slug-history": max(1, records // 100),
         "revocations": max(1, records // 100), "sponsors": max(1, records // 500)}
    n["tag-assignments"] = max(1, records - sum(n.values()))
    return n


class _Drawing:
    """A corpus being drawn: one method per sheet, each filing its records by path."""

    def __init__(self, seed: int, styles: str, tick: Callable[[int], None]) -> None:
        self.rng = random.Random(seed)
        self.style_rng = random.Random(seed + 1)  # its own stream: a flat corpus is the same as ever
        self.styles = styles
        self.tick = tick
        self.files: dict[str, bytes] = {
            f"{CONFIG_DIR}/{sheet.name}.toml": config_text(sheet) for sheet in (*STANDARD_SHEETS, UNTYPED_SHEET)
        }
        self.files["README.md"] = b"Synthetic gitsheets data made by `hotreload corpus`.\n"

    def put(self, path: str, record: Entry, **denormalised: str) -> None:
        # the seed's writers store the path template's parent slugs in the record
        extra = "".join(f'{key} = "{value}"\n' for key, value in denormalised.items())
        data = to_toml(record) + extra.encode()
        if self.styles == "mixed" and self.style_rng.random() < 0.5:  # half the records, as people edit them
            data = restyle(data, self.style_rng)
        self.files[path] = data
        self.tick(1)

    def tags(self, count: int) -> list[Tag]:
        rng, tags = self.rng, []
        vocab = [("topic", t) for t in TOPICS] + [("tech", t) for t in TECHS] + [("event", e) for e in EVENTS]
        for i in range(count):
            ns, base = vocab[i % len(vocab)]
            slug = base if i < len(vocab) else f"{base}-{i // len(vocab)}"
            ts = timestamp(rng)
            tag = Tag(id=new_id(rng), legacy_id=i + 1, namespace=ns, slug=slug,  # type: ignore[arg-type]
                      title=slug.replace("-", " ").title(), created_at=ts, updated_at=ts)
            tags.append(tag)
            self.put(f"tags/{ns}/{slug}.toml", tag)
        return tags

    def projects(self, count: int) -> list[Project]:
        rng, projects = self.rng, []
        for i in range(count):
            topic = rng.choice(TOPICS)
            title = f"{rng.choice(ADJECTIVES).title()} {topic.title()} {rng.choice(NOUNS).title()}"
            slug = f"{title.lower().replace(' ', '-')}-{i}"
            created = timestamp(rng)
            project = Project(
                id=new_id(rng), legacy_id=i + 1, slug=slug, title=title,
                summary=f"Helping residents with {topic}: {sentence(rng, 8)}"[:280],
                overview=" ".join(sentence(rng, 12) for _ in range(rng.randint(1, 4))),
                stage=rng.choice(STAGES),  # type: ignore[arg-type]
                developers_url=f"https://github.com/example/{slug}",
                chat_channel=slug[:40].rstrip("-_"),
                deleted_at=timestamp(rng) if rng.random() < 0.02 else None,
                created_at=created, updated_at=created,
            )
            projects.append(project)
            self.put(f"projects/{slug}.toml", project)
        return projects

    def people(self, count: int) -> list[Person]:
        rng, people = self.rng, []
        for i in range(count):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            slug = f"{first}-{last}-{i}".lower()
            created = timestamp(rng)
            person = Person(
                id=new_id(rng), legacy_id=i + 1, slug=slug, full_name=f"{first} {last}",
                first_name=first, last_name=last,
                bio=sentence(rng, 15) if rng.random() < 0.7 else None,
                created_at=created, updated_at=created,
            )
            people.append(person)
            self.put(f"people/{slug}.toml", person)
        return people

    def memberships(self, count: int, projects: list[Project], people: list[Person]) -> None:
        rng, pairs = self.rng, set[tuple[int, int]]()
        while len(pairs) < min(count, len(projects) * len(people)):
            pairs.add((rng.randrange(len(projects)), rng.randrange(len(people))))
        for pi, qi in sorted(pairs):
            p, q = projects[pi], people[qi]
            ts = timestamp(rng)
            self.put(f"project-memberships/{p.slug}/{q.slug}.toml", ProjectMembership(
                id=new_id(rng), project_id=p.id, person_id=q.id,
                role=rng.choice(["Founder", "Designer", "Developer", "Organizer", None]),
                is_maintainer=rng.random() < 0.1, joined_at=ts, created_at=ts, updated_at=ts))

    def tag_assignments(self, count: int, tags: list[Tag], projects: list[Project], people: list[Person]) -> None:
        rng, links = self.rng, set[tuple[int, str, int]]()
        while len(links) < min(count, len(tags) * (len(projects) + len(people))):
            kind = "project" if rng.random() < 0.75 else "person"
            links.add((rng.randrange(len(tags)), kind, rng.randrange(len(projects if kind == "project" else people))))
        for ti, kind, xi in sorted(links):
            tag, thing = tags[ti], (projects[xi] if kind == "project" else people[xi])
            self.put(f"tag-assignments/{tag.id}/{kind}/{thing.id}.toml", TagAssignment(
                id=new_id(rng), tag_id=tag.id, taggable_type=kind,  # type: ignore[arg-type]
                taggable_id=thing.id, created_at=timestamp(rng)))

    def updates(self, count: int, projects: list[Project], people: list[Person]) -> None:
        rng, numbers = self.rng, dict[int, int]()
        for _ in range(count):
            pi = rng.randrange(len(projects))
            numbers[pi] = numbers.get(pi, 0) + 1
            p, ts = projects[pi], timestamp(rng)
            self.put(f"project-updates/{p.slug}/{numbers[pi]}.toml", ProjectUpdate(
                id=new_id(rng), project_id=p.id, author_id=rng.choice(people).id,
                body=" ".join(sentence(rng, 10) for _ in range(rng.randint(1, 3))),
                number=numbers[pi], created_at=ts, updated_at=ts), projectSlug=p.slug)

    def buzz(self, count: int, projects: list[Project]) -> None:
        rng = self.rng
        for i in range(count):
            p, ts = rng.choice(projects), timestamp(rng)
            headline = sentence(rng, 6)[:-1]
            slug = f"{'-'.join(headline.lower().split()[:4])}-{i}"
            self.put(f"project-buzz/{p.slug}/{slug}.toml", ProjectBuzz(
                id=new_id(rng), project_id=p.id, slug=slug, headline=headline,
                url=f"https://news.example.org/{slug}", published_at=ts,
                summary=sentence(rng, 14) if rng.random() < 0.6 else None,
                created_at=ts, updated_at=ts), projectSlug=p.slug)

    def roles(self, count: int, projects: list[Project], people: list[Person]) -> list[HelpWantedRole]:
        rng, roles = self.rng, []
        for _ in range(count):
            p, ts = rng.choice(projects), timestamp(rng)
            status = rng.choice(["open", "open", "open", "filled", "closed"])
            role = HelpWantedRole(
                id=new_id(rng), project_id=p.id, posted_by_id=rng.choice(people).id,
                title=f"{rng.choice(['Frontend', 'Backend', 'Data', 'Design', 'Outreach'])} "
                      f"{rng.choice(['developer', 'lead', 'volunteer', 'analyst'])}",
                description=sentence(rng, 20), commitment_hours_per_week=rng.choice([None, 2, 4, 8]),
                status=status,  # type: ignore[arg-type]
                created_at=ts, updated_at=ts)
            roles.append(role)
            self.put(f"help-wanted-roles/{p.slug}/{role.id}.toml", role, projectSlug=p.slug)
        return roles

    def interest(self, count: int, roles: list[HelpWantedRole], people: list[Person]) -> None:
        rng, interest = self.rng, set[tuple[int, int]]()
        while len(interest) < min(count, len(roles) * len(people)):
            interest.add((rng.randrange(len(roles)), rng.randrange(len(people))))
        for ri, qi in sorted(interest):
            role, q = roles[ri], people[qi]
            self.put(f"help-wanted-interest/{role.id}/{q.slug}.toml", HelpWantedInterest(
                id=new_id(rng), role_id=role.id, person_id=q.id,
                message=sentence(rng, 8) if rng.random() < 0.5 else None, created_at=timestamp(rng)),
                personSlug=q.slug)

    def slug_history(self, count: int, projects: list[Project], people: list[Person]) -> None:
        """Renames of the past: old slugs that answer with a redirect; a few have expired."""
        rng = self.rng
        for i in range(count):
            kind = "project" if i % 3 else "person"
            renamed: Project | Person = projects[i % len(projects)] if kind == "project" else people[i % len(people)]
            changed = timestamp(rng)
            expires = "2099-01-01T00:00:00Z" if rng.random() < 0.9 else "2020-01-01T00:00:00Z"
            self.put(f"slug-history/{kind}/{renamed.slug}-was-{i}.toml", SlugHistory(
                id=new_id(rng), entity_type=kind,  # type: ignore[arg-type]
                old_slug=f"{renamed.slug}-was-{i}", new_slug=renamed.slug,
                entity_id=renamed.id, changed_at=changed, expires_at=expires))

    def revocations(self, count: int, people: list[Person]) -> None:
        rng = self.rng
        for _ in range(count):
            jti = f"{rng.getrandbits(64):016x}"
            revoked = timestamp(rng)
            self.put(f"revocations/{jti}.toml", Revocation(
                jti=jti, person_id=rng.choice(people).id, revoked_at=revoked, expires_at="2099-01-01T00:00:00Z"))

    def sponsors(self, count: int, projects: list[Project]) -> None:
        """Written by hand, as people do: comments, a date, an array, a table."""
        rng = self.rng
        for i in range(count):
            name = f"{rng.choice(ADJECTIVES).title()} {rng.choice(NOUNS).title()} Fund {i}"
            slug = name.lower().replace(" ", "-")
            tier = rng.choice(["gold", "silver", "bronze"])
            listed = ", ".join(f'"{p.slug}"' for p in rng.sample(projects, min(2, len(projects))))
            self.files[f"sponsors/{slug}.toml"] = (
                f"# sponsor since {2015 + i % 10}\nslug = '{slug}'\nname = \"{name}\"\n"
                f"since = {2015 + i % 10}-0{1 + i % 9}-15\ntier = \"{tier}\"\nprojects = [{listed}]\n"
                f"\n[contact]\nemail = \"sponsors+{i}@example.org\"\n"
            ).encode()
            self.tick(1)


def write_corpus(
    path: str, corpus: Corpus, branch: str = "published", message: str = "Initial data\n"
) -> str:
    """A new bare repository at ``path`` whose ``branch`` holds the corpus as one
    commit, written as a single pack. Returns the commit id."""
    if os.path.exists(path) and os.listdir(path):
        raise FileExistsError(f"{path} already exists and is not empty")
    repo = init_bare(path, branch)
    root, objects = tree_objects(corpus.files)
    repo.write_pack(objects)
    commit = repo.write_commit(root, [], message, Signature(API_IDENTITY, 1_700_000_000, 0))
    repo.set_ref(b"refs/heads/" + branch.encode(), commit)
    return commit


_UPDATED_AT = re.compile(rb'^updatedAt = "[^"]*"$', re.MULTILINE)
_RECORD_ID = re.compile(rb'^id = "([^"]+)"$', re.MULTILINE)


def add_history(
    path: str, commits: int, branch: str = "published", seed: int = 1,
    progress: Callable[[int], None] | None = None,
) -> str:
    """Append ``commits`` commits to ``branch``, each editing one person record the
    way the write API does (``updatedAt`` and ``bio``, the writer's subject and
    trailers, one commit per write), then pack the repository as ``git gc`` does.

    Written with ``git fast-import``, which stores each new version of a tree as a
    delta against the previous one: a year of writes to a 50k-record repository
    holds 20,000 versions of a 17,000-entry folder, and only deltas keep that to a
    real repository's size. Needs the ``git`` binary (a development tool, like the
    benchmarks; the service itself never runs git). Returns the new tip."""
    if shutil.which("git") is None:
        raise RuntimeError("corpus --history needs the git binary (it runs git fast-import); install git")
    tick = progress or (lambda n: None)
    repo = GitRepo(path)
    tip = repo.branch_commit(branch)
    if tip is None:
        raise ValueError(f"{path} has no branch {branch!r}")
    root = repo.subtree(repo.tree_of(tip), "people")
    if root is None:
        raise ValueError(f"{path}: the tree at {branch} has no people/ folder")
    blobs = {e.path: e.sha for e in repo.list_blobs(root, "people")}
    contents = repo.read_many(set(blobs.values()))
    current = {p: contents[sha] for p, sha in blobs.items()}
    started = repo.commit(tip).commit_time
    repo.close()
    rng = random.Random(seed)
    paths = sorted(current)
    proc = subprocess.Popen(["git", "--git-dir", path, "fast-import", "--quiet", "--done"],
                            stdin=subprocess.PIPE)
    assert proc.stdin is not None
    out = proc.stdin
    identity = API_IDENTITY.decode()
    for i in range(commits):
        record_path = rng.choice(paths)
        when = started + 60 * (i + 1)
        stamp = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        data = _UPDATED_AT.sub(f'updatedAt = "{stamp}"'.encode(), current[record_path], count=1)
        data = re.sub(rb'^bio = .*$', f'bio = "{sentence(rng, 12)}"'.encode(), data, count=1, flags=re.M)
        if b"\nbio = " not in data:
            data = data.replace(b"\naccountLevel", f'\nbio = "{sentence(rng, 12)}"\naccountLevel'.encode(), 1)
        current[record_path] = data
        found = _RECORD_ID.search(data)
        record_id = found.group(1).decode() if found else ""
        slug = record_path.rsplit("/", 1)[1].removesuffix(".toml")
        message = (f"api: PATCH /api/people/{slug}\n\nAction: person.update\nSubject-Type: person\n"
                   f"Subject-Id: {record_id}\nSubject-Slug: {slug}\n").encode()
        out.write(f"commit refs/heads/{branch}\n".encode())
        out.write(f"author {identity} {when} +0000\ncommitter {identity} {when} +0000\n".encode())
        out.write(b"data %d\n%s\n" % (len(message), message))
        if i == 0:
            out.write(f"from {tip}\n".encode())
        out.write(f"M 100644 inline {record_path}\n".encode())
        out.write(b"data %d\n%s\n" % (len(data), data))
        tick(1)
    out.write(b"done\n")
    out.close()
    if proc.wait() != 0:
        raise RuntimeError(f"git fast-import failed with exit status {proc.returncode}")
    # as `git gc` leaves a repository: one pack with deltas, packed refs, no loose objects
    subprocess.run(["git", "--git-dir", path, "gc", "--quiet"], check=True)
    new_tip = subprocess.run(["git", "--git-dir", path, "rev-parse", f"refs/heads/{branch}"],
                             check=True, capture_output=True, text=True).stdout.strip()
    return new_tip
