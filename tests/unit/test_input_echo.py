"""What a bad input looks like when it is quoted back: escaped, cut, and with the fix named
(flaws the fuzzer found: raw control characters and 100 KB values in error lines, `--dc` without
a value pointing at `migrate --help`, `port: true` taken as port 1)."""

from __future__ import annotations

import pytest

from migrator import cli
from migrator.errors import InventoryError, escape_controls, one_line, shown
from migrator.model.inventory import load_inventory
from tests.unit.test_inventory import FIXTURE, write_two_sites

ESC = "\x1b"
HUGE = "v" * 100_000


def _one_error_line(capsys, argv: list[str]) -> tuple[int, str]:
    code = cli.run(argv)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err[:500]
    return code, err.rstrip("\n")


def test_shown_escapes_control_characters_and_cuts_long_values():
    assert shown("dc1\x1b[2J\x07\x00") == "dc1\\x1b[2J\\x07\\x00"
    assert shown("a\nb\tc") == "a\\nb\\tc"
    assert shown("evil\u202egnp.exe") == "evil\\u202egnp.exe"  # a bidi override is not printed
    assert shown("dc2") == "dc2" and shown("Zürich") == "Zürich"
    cut = shown(HUGE)
    assert len(cut) == 60 and cut.endswith("...")
    assert escape_controls("plain text") == "plain text"


def test_one_line_collapses_whitespace_and_escapes_what_a_terminal_would_act_on():
    assert one_line("a\n  b\x1b]0;title\x07") == "a b\\x1b]0;title\\x07"


@pytest.mark.parametrize(("old", "new", "where"), [
    ("name: east-1", "name: \"east-1\\e[31m\\x07" + "z" * 100_000 + "\"", "member name"),
    ("host: 127.0.91.1\n", "host: \"127.0.91.1/\\e[2J" + "h" * 100_000 + "\"\n", "host"),
    ("api_url: http://127.0.91.1:8008/", "api_url: \"ftp://\\e[2J" + "u" * 100_000 + "\"", "URL"),
    ("data_dir: /srv/pg/{member}", "data_dir: \"srv\\e[2J" + "p" * 100_000 + "\"", "absolute path"),
    # (an explicit `? key` because YAML caps implicit keys at 1,024 characters)
    ("service: shop", "service: shop\n? \"k\\e[2J" + "k" * 100_000 + "\"\n: 1", "unknown key"),
])
def test_inventory_errors_quote_values_escaped_and_cut(tmp_path, monkeypatch, capsys, old, new, where):
    monkeypatch.setenv("MIGRATOR_TEST_SUPERUSER", "su")
    monkeypatch.setenv("MIGRATOR_TEST_ETCD", "etcd")
    text = FIXTURE.read_text()
    assert old in text
    path = write_two_sites(tmp_path, text.replace(old, new, 1))
    code, line = _one_error_line(capsys, ["check", "-i", str(path)])
    assert code == 2 and where in line
    assert ESC not in line and "\x07" not in line and "\\x1b" in line
    assert len(line) < 600, len(line)
    assert "..." in line


def test_unknown_site_is_quoted_escaped_and_cut(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MIGRATOR_TEST_SUPERUSER", "su")
    monkeypatch.setenv("MIGRATOR_TEST_ETCD", "etcd")
    path = write_two_sites(tmp_path)
    code, line = _one_error_line(capsys, ["plan", "-i", str(path), "--dc", "x\x1b[31m" + HUGE])
    assert code == 2
    assert line.startswith("migrate: error: no site 'x\\x1b[31mvvv") and "...'" in line
    assert line.endswith("sites: dc-east, dc-west") and len(line) < 200


def test_a_long_bad_choice_is_cut_and_the_choices_still_shown(tmp_path, capsys):
    path = write_two_sites(tmp_path)
    code, line = _one_error_line(capsys, ["plan", "-i", str(path), "--dc", "dc-west",
                                          "--format", "\x1b[5m" + HUGE])
    assert code == 2 and ESC not in line and len(line) < 300
    assert "'text', 'md', 'json', 'runbook'" in line and "see 'migrate plan --help'" in line


@pytest.mark.parametrize(("argv", "expected"), [
    (["plan", "-i", "inv.yml", "--dc"],
     "migrate: error: option --dc needs a value (the site that becomes primary); write --dc NAME "
     "(see 'migrate plan --help')"),
    (["execute", "--dc"],
     "migrate: error: option --dc needs a value (the site that becomes primary); write --dc NAME "
     "(see 'migrate execute --help')"),
    (["check", "-i"],
     "migrate: error: option -i needs a value (inventory YAML (also from MIGRATOR_INVENTORY)); "
     "write -i FILE (see 'migrate check --help')"),
])
def test_an_option_without_its_value_is_named_with_the_fix(capsys, argv, expected):
    code, line = _one_error_line(capsys, argv)
    assert (code, line) == (2, expected)


@pytest.mark.parametrize(("old", "new", "path"), [
    ("    ssh:\n      port: 2222", "    ssh:\n      port: true", "sites.dc-west.ssh.port"),
    ("      api_url: http://127.0.91.1:8008/",
     "      api_url: http://127.0.91.1:8008/\n      pg_port: false", "sites.dc-east.members[0].pg_port"),
    ("service: shop", "service: shop\ngates:\n  max_replay_lag_bytes: false",
     "gates.max_replay_lag_bytes"),
    ("service: shop", "service: shop\ngates:\n  catchup_timeout_seconds: true",
     "gates.catchup_timeout_seconds"),
])
def test_a_boolean_is_not_taken_for_a_number(tmp_path, monkeypatch, old, new, path):
    monkeypatch.setenv("MIGRATOR_TEST_SUPERUSER", "su")
    monkeypatch.setenv("MIGRATOR_TEST_ETCD", "etcd")
    text = FIXTURE.read_text()
    assert old in text
    with pytest.raises(InventoryError) as caught:
        load_inventory(write_two_sites(tmp_path, text.replace(old, new, 1)))
    assert path in caught.value.message
    assert "got true" in caught.value.message or "got false" in caught.value.message


def test_numbers_written_as_numbers_still_load(tmp_path, monkeypatch):
    monkeypatch.setenv("MIGRATOR_TEST_SUPERUSER", "su")
    monkeypatch.setenv("MIGRATOR_TEST_ETCD", "etcd")
    text = FIXTURE.read_text().replace("service: shop", "service: shop\ngates:\n"
                                       "  catchup_timeout_seconds: 5\n  lag_window_seconds: 2.5", 1)
    inventory = load_inventory(write_two_sites(tmp_path, text))
    assert inventory.gates.catchup_timeout_seconds == 5.0 and inventory.gates.lag_window_seconds == 2.5
    assert inventory.sites["dc-west"].ssh.port == 2222
