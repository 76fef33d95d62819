"""The journal masks secrets value by value and keeps what resume reads back intact."""

from __future__ import annotations

import json

from migrator.run.engine import latest_migration
from migrator.run.journal import Journal
from migrator.model.secrets import MASK


def test_a_secret_in_a_value_is_masked_and_the_line_is_still_json(tmp_path):
    secret = 'pa"ss\\word'  # quotes and backslashes change in JSON: masking the text would miss it
    journal = Journal(tmp_path, [secret])
    journal.append("step-failed", migration="m1", step="demote-source",
                   error=f"connection failed: password={secret}", facts={"detail": [secret]})
    text = journal.path.read_text()
    assert "pa\\\"ss" not in text and "ss\\\\word" not in text
    record = json.loads(text)
    assert record["error"] == f"connection failed: password={MASK}"
    assert record["facts"] == {"detail": [MASK]}


def test_a_secret_equal_to_an_identifier_does_not_change_what_resume_reads(tmp_path):
    # A weak password that equals an event name, a step id, a site or a word of the state path.
    secrets = ["step-started", "demote-source", "dc2", "state", "event"]
    journal = Journal(tmp_path, secrets)
    plan_file = tmp_path / "state" / "plan.json"
    journal.append("migration-started", migration="m1", plan_file=str(plan_file),
                   source="dc1", target="dc2")
    journal.append("step-started", migration="m1", step="demote-source", kind="demote_site")
    journal.append("step-applied", migration="m1", step="demote-source",
                   facts={"note": "dc2 demote-source"})
    migration = latest_migration(journal)
    assert migration is not None
    assert (migration.target, migration.plan_file) == ("dc2", plan_file)
    assert migration.started == {"demote-source"}
    assert migration.applied == {"demote-source": {"note": f"{MASK} {MASK}"}}
