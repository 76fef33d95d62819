"""The adapters sit below every layer that uses them (docs/architecture.md): no module of
migrator/adapters/ imports observe, checks, planning, rules, run, steps, render or the CLI, not
even inside a function, where an import hides a cycle from a first look."""

from __future__ import annotations

import ast
from pathlib import Path

import migrator.adapters

ALLOWED = ("migrator.adapters", "migrator.errors", "migrator.model")


def _imports(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_adapters_import_nothing_above_them():
    upward = {
        f"{path.name}: {name}"
        for path in sorted(Path(migrator.adapters.__file__).parent.glob("*.py"))
        for name in _imports(path)
        if name.startswith("migrator") and not name.startswith(ALLOWED)
    }
    assert upward == set()
