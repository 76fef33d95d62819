"""What the wheel carries (pyproject.toml) and where the tool finds its shipped files
(migrator/resources.py). The installed wheel itself is proven in tests/e2e/test_wheel.py."""

from __future__ import annotations

import ast
import fnmatch
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

from migrator.render.plan_report import RUNBOOK_DOC, runbook_link
from migrator.resources import SHIPPED, shipped_dir, shipped_file, shown_path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]

# Imported only where another import failed (cli.py: an older typer without its own click, which
# then depends on click itself); nothing to declare.
FALLBACK_IMPORTS = {"click"}


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_package_of_migrator_is_in_the_wheel():
    found = {
        ".".join(init.parent.relative_to(REPO_ROOT).parts) for init in (REPO_ROOT / "migrator").rglob("__init__.py")
    }
    missing = sorted(found - set(SETUPTOOLS["packages"]))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml, or the wheel lacks them"


def test_playbooks_templates_and_runbooks_are_mapped_into_the_package_with_every_file():
    for name in SHIPPED:
        package = f"migrator.{name}"
        assert package in SETUPTOOLS["packages"], package
        assert SETUPTOOLS["package-dir"][package] == name
        globs = SETUPTOOLS["package-data"][package]
        files = [p.name for p in (REPO_ROOT / name).iterdir() if p.is_file()]
        unshipped = [f for f in files if not any(fnmatch.fnmatch(f, g) for g in globs)]
        assert files and not unshipped, f"{name}/{unshipped} match none of {globs} in [tool.setuptools.package-data]"


def _third_party_imports() -> dict[str, str]:
    """Top-level module -> the first file that imports it, for every absolute import in migrator/."""
    found: dict[str, str] = {}
    for path in sorted((REPO_ROOT / "migrator").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("migrator", "__future__"):
                    found.setdefault(top, str(path.relative_to(REPO_ROOT)))
    return found


def test_every_module_the_tool_imports_is_a_declared_dependency():
    declared = {_normalized(re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0]) for req in PYPROJECT["project"]["dependencies"]}
    distributions = packages_distributions()
    undeclared = []
    for module, where in _third_party_imports().items():
        if module in FALLBACK_IMPORTS:
            continue
        provided_by = {_normalized(d) for d in distributions.get(module, [module])}
        if not provided_by & declared:
            undeclared.append(f"{module} ({where}; distribution {sorted(provided_by)})")
    assert not undeclared, f"declare in pyproject.toml [project] dependencies: {undeclared}"


def test_paramiko_is_imported_and_declared():
    """The case the issue named: adapters/ssh.py imports paramiko itself, not only through fabric."""
    assert "paramiko" in _third_party_imports()
    assert any(req.startswith("paramiko") for req in PYPROJECT["project"]["dependencies"])


# --- finding the shipped files ----------------------------------------------------------------


def test_in_the_source_tree_the_shipped_directories_are_the_top_level_ones():
    for name in SHIPPED:
        assert shipped_dir(name) == REPO_ROOT / name
    assert shipped_file("runbooks/seed.md") == REPO_ROOT / "runbooks" / "seed.md"


def test_a_runbook_link_is_repo_relative_inside_the_tree_and_absolute_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO_ROOT)
    assert runbook_link(f"{RUNBOOK_DOC}#phase-demote") == "runbooks/switchover.md#phase-demote"
    monkeypatch.chdir(tmp_path)
    link = runbook_link(f"{RUNBOOK_DOC}#phase-demote")
    page, _, anchor = link.partition("#")
    assert Path(page).is_absolute() and Path(page).is_file() and anchor == "phase-demote"
    assert shown_path(tmp_path / "x") == "x"
