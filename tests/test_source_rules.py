"""The rules issue 30 set for ``src/hotreload`` (specs/style.md), checked on the source:

* no process-wide tuning from library code: no ``ctypes`` or ``mmap``, no ``os.writev``,
  ``sync_file_range`` or malloc call, no switch interval or ``gc`` freezing (deployments set
  such things, docs/deploy.md);
* dulwich is a dependency, not a fork: outside ``git/compat.py`` nothing assigns into a
  dulwich class or module, imports a private dulwich name, or overrides a private method of
  a dulwich class (each reach lives in compat.py with its test in test_compat.py);
* the size the maintainers carry: no file over 600 lines, and the package within the
  ceiling of decision 186 (raising it is a decision of its own, with its reason).

Each checker is also run on a snippet that breaks its rule, so a checker that cannot fail fails
here. The dulwich check follows names bound from dulwich, not objects reached through instances
(``repo.object_store``): a reach through an instance is for review to find.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "hotreload"
COMPAT = PACKAGE / "git" / "compat.py"
MAX_FILE_LINES = 600
MAX_PACKAGE_LINES = 10_757  # decisions 186 and 188
BANNED_MODULES = {"ctypes", "mmap"}
BANNED_CALLS = {"writev", "sync_file_range", "malloc_trim", "mallopt", "malloc", "setswitchinterval", "freeze"}


def sources() -> dict[Path, str]:
    return {path: path.read_text() for path in sorted(PACKAGE.rglob("*.py"))}


def tuning(source: str) -> list[str]:
    """Imports of ``ctypes``/``mmap`` and calls of the banned functions (by any spelling)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in BANNED_MODULES]
        elif isinstance(node, ast.ImportFrom):
            if (node.module or "").split(".")[0] in BANNED_MODULES:
                found.append(node.module or "")
            found += [f"imports {a.name}" for a in node.names if a.name in BANNED_CALLS]
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in BANNED_CALLS:
                found.append(f"{name}()")
            found += [a.value for a in node.args if isinstance(a, ast.Constant) and a.value in BANNED_MODULES]
    return found


def dulwich_reaches(source: str) -> list[str]:
    """Assignments into names bound from dulwich, private dulwich imports, and private
    methods defined in a subclass of a dulwich class."""
    tree = ast.parse(source)
    bound: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "dulwich":
            for alias in node.names:
                bound.add(alias.asname or alias.name)
                if alias.name.startswith("_"):
                    found.append(f"imports {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names if a.name.split(".")[0] == "dulwich")

    def root(expr: ast.expr) -> str:
        while isinstance(expr, ast.Attribute):
            expr = expr.value
        return expr.id if isinstance(expr, ast.Name) else ""

    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else (
            [node.target] if isinstance(node, ast.AugAssign | ast.AnnAssign) else [])
        found += [f"assigns {ast.unparse(t)}" for t in targets
                  if isinstance(t, ast.Attribute) and root(t) in bound]
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr" and node.args \
                and root(node.args[0]) in bound:
            found.append(f"setattr({ast.unparse(node.args[0])}, ...)")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__") \
                and root(node) in bound:
            found.append(f"reads {ast.unparse(node)}")
        if isinstance(node, ast.ClassDef) and any(root(base) in bound for base in node.bases):
            found += [f"overrides {node.name}.{item.name}" for item in node.body
                      if isinstance(item, ast.FunctionDef) and item.name.startswith("_")
                      and not item.name.startswith("__")]
    return found


def test_no_process_wide_tuning_in_library_code() -> None:
    offenders = {str(p.relative_to(PACKAGE)): found for p, text in sources().items() if (found := tuning(text))}
    assert not offenders, f"set it in the deployment's environment instead (docs/deploy.md): {offenders}"


def test_the_tuning_check_finds_what_it_bans() -> None:
    snippet = ("import ctypes\nfrom mmap import mmap\nos.writev(fd, parts)\nlibc.malloc_trim(0)\nlibc.mallopt(-8, 1)\n"
               "from os import sync_file_range as sfr\nimportlib.import_module('ctypes')\n"
               "sys.setswitchinterval(0.0005)\ngc.freeze()\n")
    assert sorted(tuning(snippet)) == sorted([
        "ctypes", "mmap", "writev()", "malloc_trim()", "mallopt()", "imports sync_file_range", "ctypes",
        "setswitchinterval()", "freeze()"])


def test_every_reach_into_dulwich_is_in_compat() -> None:
    offenders = {str(p.relative_to(PACKAGE)): found for p, text in sources().items()
                 if p != COMPAT and (found := dulwich_reaches(text))}
    assert not offenders, f"move the reach into git/compat.py, with a test in test_compat.py: {offenders}"


def test_the_dulwich_check_finds_what_it_bans() -> None:
    snippet = ("from dulwich.pack import Pack, _private\nimport dulwich.client\n"
               "Pack.name = property(lambda self: 1)\nsetattr(Pack, 'x', 1)\n"
               "dulwich.client.TCPGitClient.timeout = 5\nPack._cache\n"
               "class Mine(Pack):\n    def _helper(self): ...\n    def __init__(self): ...\n")
    assert sorted(dulwich_reaches(snippet)) == sorted([
        "imports dulwich.pack._private", "assigns Pack.name", "setattr(Pack, ...)",
        "assigns dulwich.client.TCPGitClient.timeout", "reads Pack._cache", "overrides Mine._helper"])
    assert dulwich_reaches(COMPAT.read_text()), "compat.py's own reach is what the check finds"


def test_no_file_over_600_lines_and_the_package_within_its_ceiling() -> None:
    lines = {str(p.relative_to(PACKAGE)): len(text.splitlines()) for p, text in sources().items()}
    long = {name: n for name, n in lines.items() if n > MAX_FILE_LINES}
    assert not long, f"over {MAX_FILE_LINES} lines: split by what the parts do: {long}"
    total = sum(lines.values())
    assert total <= MAX_PACKAGE_LINES, (
        f"src/hotreload is {total} lines, over the {MAX_PACKAGE_LINES} of decisions 186 and 188: "
        "make room (dead code, one way of doing a thing, a maintained library) or record a new ceiling")
