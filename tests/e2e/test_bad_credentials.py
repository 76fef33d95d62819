"""Wrong credentials in the inventory: one line naming the member and the fix, exit 1, and
nothing changed on either site (issue 6, case 10, second half)."""

from __future__ import annotations

import subprocess

import pytest

from tests.e2e.test_execute import assert_primary_site, explain, migrate
from tests.testbed import SITE_BY_NAME

pytestmark = pytest.mark.testbed


def _variant(baseline, tmp_path, what: str) -> str:
    text = baseline.inventory_path.read_text()
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    base = str(baseline.base)
    if what == "postgres password":
        text = text.replace(f"file:{base}/secrets/superuser", f"file:{wrong}")
    elif what == "REST password":
        text = text.replace(f"file:{base}/secrets/restapi", f"file:{wrong}")
    else:  # an SSH key the hosts do not know
        key = tmp_path / "other_key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        text = text.replace(f"key_file: {base}/ssh/id_ed25519", f"key_file: {key}")
    path = tmp_path / "inventory.yml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(("what", "says"), [
    ("postgres password", "refused the password of user postgres; check the credentials"),
    ("REST password", "refused the credentials (401); check rest_api.username/password"),
    ("SSH key", "was refused; install the public key"),
])
def test_wrong_credentials_fail_in_one_line_and_change_nothing(baseline, tmp_path, what, says):
    configs = {name: baseline.get_config(site) for name, site in SITE_BY_NAME.items()}
    out = migrate("execute", "-i", _variant(baseline, tmp_path, what), "--dc", "dc2", "--yes",
                  "--state-dir", str(tmp_path / "state"))
    assert out.returncode == 1, explain(out)
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr + out.stdout
    assert says in out.stderr
    assert any(m in out.stderr for m in ("dc1-a", "dc1-b", "dc2-a", "dc2-b"))
    assert_primary_site(baseline, SITE_BY_NAME["dc1"])
    assert {name: baseline.get_config(site) for name, site in SITE_BY_NAME.items()} == configs
