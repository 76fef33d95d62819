"""The switchover playbook as data: it loads, it follows the protocol's phases, and a broken
playbook fails at load time with the file, the step id and the line."""

from __future__ import annotations

from pathlib import Path

import pytest

from migrator.model.playbook import (
    STEP_KINDS,
    SWITCHOVER_PHASES,
    SWITCHOVER_PLAYBOOK,
    Playbook,
    PlaybookError,
    load_playbook,
    parse_playbook,
    switchover_playbook,
)

WINDOW_PHASES = {"demote", "token", "catch-up", "promote"}

MINIMAL = """\
name: tiny
description: two steps
phases: [preflight, demote]
steps:
  - id: first
    phase: preflight
    kind: run_preflight
    title: "check {{ source.name }}"
    undo: none
  - id: second
    phase: demote
    kind: demote_site
    title: "demote {{ source.name }}"
    args:
      site: source.name
    gate:
      wait_for: "{{ source.name }} read-only"
      timeout: gates.promote_timeout_seconds
    undo:
      kind: undo_demote
      description: put it back
    write_unavailable: true
"""


def broken(old: str, new: str) -> str:
    assert old in MINIMAL
    return MINIMAL.replace(old, new, 1)


def load_error(text: str) -> str:
    with pytest.raises(PlaybookError) as caught:
        parse_playbook(text, source="playbooks/tiny.yml")
    return str(caught.value)


# --- the packaged playbook --------------------------------------------------------------------


def test_switchover_playbook_loads_with_the_protocol_phases_in_order():
    playbook = switchover_playbook()
    assert isinstance(playbook, Playbook)
    assert playbook.phases == list(SWITCHOVER_PHASES)
    positions = [playbook.phases.index(s.phase) for s in playbook.steps]
    assert positions == sorted(positions)
    assert {s.phase for s in playbook.steps} == set(SWITCHOVER_PHASES)
    assert playbook.source_file == str(SWITCHOVER_PLAYBOOK)


def test_every_step_names_a_known_kind_a_title_an_undo_and_a_manual_equivalent():
    for step in switchover_playbook().steps:
        assert step.kind in STEP_KINDS
        assert step.title and step.undo.kind
        assert step.manual, step.id


def test_write_unavailable_steps_sit_between_demote_and_promote():
    flagged = [s for s in switchover_playbook().steps if s.write_unavailable]
    assert flagged
    assert {s.phase for s in flagged} <= WINDOW_PHASES
    assert any(s.kind == "promote_site" for s in flagged)


def test_both_demotion_paths_are_selected_by_graceful_demote():
    steps = {s.id: s for s in switchover_playbook().steps}
    assert steps["demote-source"].when == "graceful_demote"
    for step_id in ("pause-source", "stop-source-primary", "wait-source-stopped",
                    "resume-source-as-standby"):
        assert steps[step_id].when == "not graceful_demote", step_id
    unconditional = [s.id for s in steps.values() if s.when is None]
    assert {"read-token", "catch-up", "promote-target", "wait-repoint"} <= set(unconditional)


def test_steps_that_gate_have_a_timeout_from_the_inventory_gates():
    for step in switchover_playbook().steps:
        if step.gate is not None:
            assert "gates." in step.gate.timeout, step.id


def test_minimal_playbook_parses():
    playbook = parse_playbook(MINIMAL, source="tiny.yml")
    assert [s.id for s in playbook.steps] == ["first", "second"]
    assert playbook.steps[0].undo.kind == "none"


# --- errors: file, step id, line --------------------------------------------------------------


def test_unknown_key_in_a_step_names_file_step_and_line():
    message = load_error(broken("    write_unavailable: true", "    write_unavailble: true"))
    assert message.startswith("playbook playbooks/tiny.yml: step 'second' (line 22): ")
    assert "unknown key 'write_unavailble'" in message


def test_unknown_step_kind_is_refused_at_load_time():
    message = load_error(broken("kind: demote_site", "kind: demote_sites"))
    assert "step 'second'" in message and "unknown step kind 'demote_sites'" in message


def test_unknown_undo_kind_is_refused():
    message = load_error(broken("kind: undo_demote", "kind: undo_everything"))
    assert "step 'second'" in message and "undo.kind" in message


def test_jinja_syntax_error_in_args_names_the_step():
    message = load_error(broken("site: source.name", "site: source.name +"))
    assert "step 'second'" in message and "args" in message and "does not parse" in message


def test_jinja_syntax_error_in_a_template_names_the_step():
    message = load_error(broken('title: "check {{ source.name }}"',
                                'title: "check {{ source.name"'))
    assert "step 'first'" in message and "title" in message


def test_steps_out_of_phase_order_are_refused():
    message = load_error(broken("phases: [preflight, demote]", "phases: [demote, preflight]"))
    assert "step 'second'" in message and "phase order" in message


def test_a_phase_not_in_the_playbook_is_refused():
    message = load_error(broken("phase: demote", "phase: demolish"))
    assert "step 'second'" in message and "demolish" in message


def test_duplicate_step_ids_are_refused():
    message = load_error(broken("id: second", "id: first"))
    assert "used twice" in message


def test_missing_required_key_is_named():
    message = load_error(broken("    undo: none\n", ""))
    assert "step 'first'" in message and "missing required key 'undo'" in message


def test_yaml_syntax_error_names_the_line():
    message = load_error(MINIMAL + "  - id: [unclosed\n")
    assert message.startswith("playbook playbooks/tiny.yml: line")


def test_missing_file_is_a_playbook_error(tmp_path: Path):
    with pytest.raises(PlaybookError, match="file not found"):
        load_playbook(tmp_path / "nope.yml")


def test_playbook_error_is_a_usage_class_error():
    assert PlaybookError("x").exit_code == 2
