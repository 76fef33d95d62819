"""Playbooks, step-kind declarations, step classes and runbooks agree.

A step kind is declared once (migrator/steps/kinds.py) and every layer reads that declaration:
the playbook loader (which kinds exist), the engine (its class, whether it promotes), the DCS hold
(which sites' DCS it needs), the hooks (demotes / promotes), the runbook (sections and page). These
tests fail when a playbook names a kind without a declaration or a class, a class has no
declaration, a declaration names a runbook section that does not exist, or a step that PATCHes a
site's dynamic config would start without that site's DCS hold."""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from migrator.model.playbook import PLAYBOOK_DIR, load_playbook
from migrator.resources import shipped_dir, shipped_file
from migrator.steps import kinds as kinds_module
from migrator.steps.base import Step, step_kind
from migrator.steps.kinds import KINDS, NO_UNDO, TARGET, UNDO_KINDS
from migrator.steps.registry import STEP_CLASSES

PLAYBOOKS = sorted(PLAYBOOK_DIR.glob("*.yml"))
RUNBOOK_DIR = shipped_dir("runbooks")
SWITCHOVER_RUNBOOK = RUNBOOK_DIR / "switchover.md"
# How a step class changes a site's dynamic config: Live.patch_config, directly or through the
# switchover module's compare-and-set helper.
PATCHES_CONFIG = re.compile(r"\b(patch_config|send_config_patch)\(")


def _raw_steps(path: Path) -> list[dict[str, Any]]:
    """The playbook's steps as written (not through the loader, which refuses unknown kinds)."""
    return list((YAML(typ="safe").load(path.read_text()) or {}).get("steps") or [])


def _undo_kind(step: dict[str, Any]) -> str:
    undo = step.get("undo", NO_UNDO)
    return undo if isinstance(undo, str) else undo.get("kind", NO_UNDO)


def _step_classes_defined() -> list[type[Step]]:
    """Every concrete Step subclass of migrator/steps/ (a leading underscore marks a shared base)."""
    found, todo = [], list(Step.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__module__.startswith("migrator.steps.") and not cls.__name__.startswith("_"):
            found.append(cls)
    return found


def _class_source(cls: type[Step]) -> str:
    """The class's own code and that of its shared bases in migrator/steps/ (not Step itself)."""
    return "\n".join(inspect.getsource(base) for base in cls.__mro__
                     if base.__module__.startswith("migrator.steps.") and base is not Step
                     and issubclass(base, Step))


def test_the_shipped_playbooks_are_found():
    assert {p.name for p in PLAYBOOKS} >= {"switchover.yml", "seed.yml"}


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.name)
def test_every_kind_a_playbook_names_has_a_declaration_and_a_class(path):
    for step in _raw_steps(path):
        kind = step["kind"]
        assert kind in KINDS, f"{path.name}: step {step['id']}: kind {kind!r} has no declaration"
        assert kind in STEP_CLASSES, f"{path.name}: step {step['id']}: kind {kind!r} has no step class"


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.name)
def test_every_undo_a_playbook_names_is_declared_by_its_steps_kind(path):
    for step in _raw_steps(path):
        undo = _undo_kind(step)
        assert undo in UNDO_KINDS, f"{path.name}: step {step['id']}: undo {undo!r} is not declared"
        allowed = (NO_UNDO, *KINDS[step["kind"]].undo)
        assert undo in allowed, (f"{path.name}: step {step['id']}: kind {step['kind']} declares the "
                                 f"undo kinds {allowed}, not {undo!r}")


@pytest.mark.parametrize("path", PLAYBOOKS, ids=lambda p: p.name)
def test_every_dcs_site_a_kind_declares_is_an_argument_of_its_steps(path):
    """`dcs_sites` names plan arguments: a misspelt one would silently skip the DCS hold."""
    for step in load_playbook(path).steps:
        for arg in KINDS[step.kind].dcs_sites:
            if arg != TARGET:
                assert arg in step.args, (f"{path.name}: step {step.id}: kind {step.kind} needs the DCS "
                                          f"of its {arg!r} argument, which the step does not pass")


def test_every_step_class_is_registered_with_its_declaration():
    defined = _step_classes_defined()
    assert defined, "no step class found"
    for cls in defined:
        assert getattr(cls, "kind", None) in STEP_CLASSES, f"{cls.__name__} has no @step_kind"
        assert STEP_CLASSES[cls.kind] is cls
        assert cls.declaration is KINDS[cls.kind]
        assert cls.changes_state is KINDS[cls.kind].changes_state


def test_every_declaration_has_a_class():
    assert sorted(set(KINDS) - set(STEP_CLASSES)) == []


def test_a_class_for_an_undeclared_kind_is_refused():
    with pytest.raises(ValueError, match="'no_such_kind' has no declaration in migrator/steps/kinds.py"):
        step_kind("no_such_kind")


def test_a_second_class_for_one_kind_is_refused():
    with pytest.raises(ValueError, match="'read_token' has two classes"):
        step_kind("read_token")(type("AnotherReadToken", (Step,), {}))
    assert STEP_CLASSES["read_token"].__name__ == "ReadToken"


def test_every_declared_runbook_section_and_page_exists():
    anchors = set(re.findall(r'<a id="([^"]+)"></a>', SWITCHOVER_RUNBOOK.read_text()))
    for kind in KINDS.values():
        for section in kind.runbook_sections:
            assert section in anchors, f"{kind.name}: no <a id=\"{section}\"> in {SWITCHOVER_RUNBOOK.name}"
        if kind.runbook_page:
            assert shipped_file(kind.runbook_page).is_file(), f"{kind.name}: {kind.runbook_page} missing"


def test_every_kind_that_patches_a_sites_dynamic_config_declares_the_dcs_it_needs():
    patching = sorted(kind for kind, cls in STEP_CLASSES.items() if PATCHES_CONFIG.search(_class_source(cls)))
    # The scan sees the config changes the protocol is made of (guards the scan itself).
    assert {"ensure_permanent_slot", "demote_site", "promote_site", "pause_site", "resume_as_standby",
            "repoint_standby_cluster", "set_dynamic_config"} <= set(patching)
    for kind in patching:
        assert KINDS[kind].dcs_sites, f"{kind} PATCHes a site's dynamic config but declares no dcs_sites"
        assert KINDS[kind].changes_state, f"{kind} PATCHes a site's dynamic config but declares no change"


def test_a_kind_with_an_undo_changes_state():
    for kind in KINDS.values():
        if kind.undo:
            assert kind.changes_state, f"{kind.name} declares an undo but no change to undo"


def test_exactly_one_kind_promotes_and_the_demoting_kinds_can_be_undone():
    # One per protocol: the switchover's, and the failover's (which follows fences, not a demotion).
    assert [k.name for k in KINDS.values() if k.promotes] == ["promote_site", "promote_failover"]
    assert kinds_module.DEMOTING_KINDS == ("demote_site", "stop_postgres")
    for name in kinds_module.DEMOTING_KINDS:
        assert KINDS[name].undo and KINDS[name].changes_state


def test_the_declarations_import_nothing_that_does_io():
    """The loader and the renderers read the declarations; they must not pull in the adapters."""
    imports = re.findall(r"^(?:from|import) (\S+)", inspect.getsource(kinds_module), re.M)
    assert [name for name in imports if name.startswith("migrator") or name in ("psycopg", "requests")] == []
