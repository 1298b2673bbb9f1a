"""The documentation keeps its rules: no page of docs/ or specs/ over 400 lines,
specs/README.md indexes every spec page, every local link and anchor resolves, and
nothing cites a design document that is not in the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 400
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)|^\[[^\]]+\]:\s*(\S+)", re.MULTILINE)
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*\s*$", re.MULTILINE)
HTML_ID = re.compile(r"<a id=\"([^\"]+)\"")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)


def pages(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.md"))


def anchors(path: Path) -> set[str]:
    """The anchors GitHub makes for a page's headings (lower case, punctuation
    dropped, spaces to hyphens, repeats numbered), and explicit ``<a id>``s."""
    text = FENCE.sub("", path.read_text())
    seen: dict[str, int] = {}
    found = set(HTML_ID.findall(text))
    for title in HEADING.findall(text):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def test_no_page_of_docs_or_specs_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in pages("docs", "specs")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines (split the page, or move history to a dated file): {long}"


def test_the_specs_index_links_every_spec_page() -> None:
    index = (ROOT / "specs" / "README.md").read_text()
    linked = {(ROOT / "specs" / (a or b).split("#")[0]).resolve() for a, b in LINK.findall(index)}
    missing = [str(p.relative_to(ROOT)) for p in pages("specs") if p.name != "README.md" and p not in linked]
    assert not missing, f"specs/README.md does not link: {missing}"


def test_every_local_link_and_anchor_resolves() -> None:
    broken = []
    for page in [ROOT / "README.md", *pages("docs", "specs", "benchmarks/results")]:
        for a, b in LINK.findall(FENCE.sub("", page.read_text())):
            target = a or b
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked here
            file_part, _, anchor = target.partition("#")
            dest = (page.parent / file_part).resolve() if file_part else page
            if not dest.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_nothing_cites_a_design_document_outside_the_repository() -> None:
    cited = re.compile(r"DESIGN\.md|STYLE\.md|DESIGN §")
    files = [ROOT / "README.md", *pages("docs", "specs", "benchmarks")]
    files += sorted(p for folder in ("src", "tests", "simulator", "benchmarks") for p in (ROOT / folder).rglob("*.py"))
    this = Path(__file__).resolve()
    offenders = [str(p.relative_to(ROOT)) for p in files if p != this and cited.search(p.read_text())]
    assert not offenders, f"cite the specs/ page instead: {offenders}"


def test_each_numbered_decision_renders_with_its_own_number() -> None:
    """A Markdown list numbers its items from the first one: a decision that does not follow
    its predecessor's number (a range of another issue) must start a new list, after a heading."""
    previous = None
    for line in "\n".join(p.read_text() for p in sorted((ROOT / "specs").glob("decisions*.md"))).splitlines():
        if line.startswith("#"):
            previous = None
        found = re.match(r"(\d+)\. <a id=\"d\1\">", line)
        if found:
            number = int(found.group(1))
            assert previous is None or number == previous + 1, f"decision {number} follows {previous} in one list"
            previous = number
