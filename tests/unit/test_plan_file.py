"""The plan file kept in the state directory: secrets copied from a dynamic config are masked,
and the steps a resume runs again are left exactly as planned, even when a password equals a
word they contain."""

from __future__ import annotations

from migrator.model.plan import Plan
from migrator.model.plan_file import private_plan_json
from migrator.model.secrets import MASK
from tests.helpers.snapshots import load_baseline, with_config
from tests.unit.test_planner import make_plan


def test_a_secret_in_a_dynamic_config_is_masked_in_the_plan_file():
    state = with_config(load_baseline(), "dc1", {"note": "scp %p backup@archive: # pw s3cr3t-Pw"})
    plan = make_plan(state)
    assert "s3cr3t-Pw" in plan.to_json()
    text = private_plan_json(plan, ["s3cr3t-Pw"])
    assert "s3cr3t-Pw" not in text and f"# pw {MASK}" in text
    assert Plan.from_json(text).steps == plan.steps


def test_a_password_equal_to_a_word_of_the_steps_leaves_the_steps_whole():
    plan = make_plan()
    # A lab password that is also the superuser's name and part of every PostgreSQL path.
    assert "postgres" in "".join(str(s.args) for s in plan.steps)
    again = Plan.from_json(private_plan_json(plan, ["postgres"]))
    assert again.steps == plan.steps
    assert (again.source, again.target) == (plan.source, plan.target)
    assert again.fingerprint == plan.fingerprint
