"""The simulator checks the service against git, not against the service: none
of its modules imports the service's data model or API (their bugs would agree
with themselves)."""

from __future__ import annotations

import ast
from pathlib import Path

SIMULATOR = Path(__file__).resolve().parent.parent / "simulator"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_simulator_imports_nothing_from_the_services_data_model_or_api() -> None:
    offenders = {
        f"{path.name}: {name}"
        for path in SIMULATOR.glob("*.py")
        for name in imported_modules(path)
        if name.startswith(("hotreload.data", "hotreload.api"))
    }
    assert not offenders, offenders
    assert imported_modules(SIMULATOR / "runner.py") >= {"simulator.truth"}
