"""The package layers of docs/architecture.md hold: no module imports from a layer above its own
(parsed with `ast`, every import in a module, those inside functions too), and no module imports
itself back through others. A new upward import fails here; one that is meant goes into
`DELIBERATE` with its reason."""

from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "migrator"

# The layers each layer may import (besides itself). `errors`, `durable` and `resources` (where
# the shipped playbooks, templates and runbooks are) sit below every layer; `cli` above all of them.
BASE = {"errors", "durable", "resources"}
MAY_IMPORT: dict[str, set[str]] = {
    "top": set(),
    "errors": set(),
    "durable": set(),
    "resources": set(),
    "model": BASE,
    "rules": BASE | {"model"},
    "adapters": BASE | {"model"},
    "checks": BASE | {"model", "rules"},
    "observe": BASE | {"model", "adapters"},
    # preflight() is "observe + check": planning reads a fresh snapshot itself.
    "planning": BASE | {"model", "rules", "checks", "observe"},
    "render": BASE | {"model"},
    # Steps are the run's machinery: they re-observe and re-check right before acting (planning's
    # preflight), wait with adapters.bounded, and run the hooks and the DCS hold. run/ imports the
    # registry of step classes; the two packages are one layer.
    "steps": BASE | {"model", "rules", "adapters", "observe", "checks", "planning", "run"},
    "run": BASE | {"model", "rules", "adapters", "observe", "checks", "planning", "steps"},
    # The command line's own options: logging, colour, the masking of secrets in log lines.
    "output_options": BASE | {"model"},
    "cli": BASE
    | {"top", "output_options", "model", "rules", "adapters", "observe", "checks", "planning", "render", "run", "steps"},
    # The fleet's child launcher: one warm interpreter holding every module, forking `cli` runs.
    "launcher": BASE | {"top", "cli", "model", "run"},
}

# Single imports across those lines, each with its reason: (importing module, imported module).
DELIBERATE: dict[tuple[str, str], str] = {
    ("migrator.model.playbook", "migrator.steps.kinds"): "the loader refuses undeclared kinds; kinds is pure data",
    ("migrator.planning.seed", "migrator.steps.kinds"): "pure data: a kind's declaration",
    ("migrator.planning.hooks", "migrator.steps.kinds"): "pure data: the hook table beside the kinds",
    ("migrator.render.plan_report", "migrator.steps.kinds"): "pure data: runbook pages, promoting kinds, hooks",
    ("migrator.planning.switchover", "migrator.adapters.remote"): "pure text: the runuser/sudo prefix of a command",
    # The outcome of a run is a view of that run: its journal and the engine's Outcome.
    ("migrator.render.run_outcome", "migrator.run.engine"): "a run's Outcome and its journal summary",
    ("migrator.render.run_outcome", "migrator.run.journal"): "a run's journal",
    ("migrator.render.run_json", "migrator.run.engine"): "a run's Outcome as a JSON document",
    ("migrator.render.run_json", "migrator.run.journal"): "a run's journal as a JSON document",
    # `check --format prometheus|nagios`: observe, check and render in one place, like cli.
    ("migrator.run.probe", "migrator.render.probe"): "the probe's glue renders what it observed",
    ("migrator.run.init", "migrator.render.inventory_file"): "init's glue writes what it discovered",
    # A gate's wait is shown to the operator as one line rewritten in place (or a line every 5 s).
    ("migrator.steps.base", "migrator.render.wait_line"): "the progress line of a gate's wait",
    ("migrator.run.dcs_hold", "migrator.render.wait_line"): "the DCS hold's countdown line",
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> str:
    parts = module.split(".")
    return "top" if len(parts) == 1 else parts[1]


@lru_cache(maxsize=1)
def imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports (a name imported from a
    package counts as its submodule when there is one)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    found: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("migrator"):
                module = str(node.module)
                subs = {f"{module}.{alias.name}" for alias in node.names} & modules.keys()
                targets |= subs or {module}
            elif isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names if alias.name.split(".")[0] == "migrator"}
        found[name] = targets - {name}
    return found


def wrong_direction() -> list[str]:
    wrong = []
    for module, targets in sorted(imports().items()):
        own = layer_of(module)
        for target in sorted(targets):
            other = layer_of(target)
            if other != own and other not in MAY_IMPORT[own] and (module, target) not in DELIBERATE:
                wrong.append(f"{module} -> {target} ({own} may import {sorted(MAY_IMPORT[own])})")
    return wrong


def test_every_package_of_migrator_has_its_layer_declared():
    assert {layer_of(m) for m in imports()} <= MAY_IMPORT.keys()


def test_no_module_imports_from_a_layer_above_its_own():
    assert wrong_direction() == []


def test_the_pure_layers_import_nothing_that_runs_or_renders():
    """The rule in its plain words: model, rules and adapters import nothing of planning, run,
    steps, render or the CLI; planning and render nothing of run (beyond DELIBERATE)."""
    above = {"model": {"planning", "run", "steps", "render", "cli"}, "planning": {"run"}, "render": {"run"}}
    above["rules"] = above["adapters"] = above["model"]
    crossing = [
        (module, target)
        for module, targets in imports().items()
        for target in targets
        if layer_of(target) in above.get(layer_of(module), set()) and (module, target) not in DELIBERATE
    ]
    assert crossing == []


def test_every_deliberate_exception_is_still_an_import():
    """An exception that no longer happens is removed from the table, so the table stays true."""
    stale = [pair for pair in DELIBERATE if pair[1] not in imports().get(pair[0], set())]
    assert stale == []


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    state: dict[str, int] = {}
    found: list[list[str]] = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                found.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    return found


def test_no_import_cycle_between_modules():
    assert cycles(imports()) == []


def test_a_planted_cycle_is_found():
    planted = dict(imports())
    planted["migrator.model.state"] = planted["migrator.model.state"] | {"migrator.model.plan"}
    planted["migrator.model.plan"] = planted["migrator.model.plan"] | {"migrator.model.state"}
    assert any({"migrator.model.plan", "migrator.model.state"} <= set(cycle) for cycle in cycles(planted))


def test_the_check_finds_an_upward_import(monkeypatch):
    """The test itself can fail: a model module importing the engine is reported."""
    planted = dict(imports())
    planted["migrator.model.plan"] = planted["migrator.model.plan"] | {"migrator.run.engine"}
    monkeypatch.setattr(__import__(__name__, fromlist=["imports"]), "imports", lambda: planted)
    assert any(line.startswith("migrator.model.plan -> migrator.run.engine") for line in wrong_direction())
