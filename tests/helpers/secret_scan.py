"""Find test passwords in what the suite left behind: plans, reports, journals, logs.

The testbed draws new passwords each time it is built, so every generation the session saw is
remembered (`remember`) and the scan looks for all of them. A file whose whole content is one
password is where a test keeps it (a `file:` secret), not an artifact, and is not a hit.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Every password the session gave the tool; filled by the fixtures and by tests that rebuild.
SEEN: set[str] = set()
# The base directory of every testbed the session built (their logs are artifacts too).
BASES: set[str] = set()
# What tests/e2e/test_bad_credentials.py puts in its wrong-password file.
EXTRA_TEST_PASSWORDS = ("not-the-password",)
MAX_BYTES = 64 * 1024 * 1024


def remember(testbed) -> None:
    """Add the testbed's current passwords (if it has any on disk) to SEEN."""
    BASES.add(str(testbed.base))
    secrets_dir = Path(testbed.base) / "secrets"
    if not secrets_dir.is_dir():
        return
    for path in secrets_dir.iterdir():
        value = path.read_text().strip()
        if value:
            SEEN.add(value)


def kind_of(path: Path) -> str:
    name = path.name
    if name == "journal.jsonl":
        return "journal"
    if name.startswith("plan") or name.startswith("runbook"):
        return "plan"
    if name.startswith("report"):
        return "report"
    if name.endswith(".log"):
        return "log"
    return "other"


@dataclass
class ScanResult:
    scanned: Counter = field(default_factory=Counter)  # kind -> files
    hits: list[str] = field(default_factory=list)  # "file: which password"


def scan(files: Iterable[Path], passwords: dict[str, str]) -> ScanResult:
    """passwords: label -> value; the label (never the value) is what a hit reports."""
    result = ScanResult()
    needles = {label: value.encode() for label, value in passwords.items() if value}
    for path in files:
        try:
            data = path.read_bytes()[:MAX_BYTES]
        except OSError:
            continue
        if data.strip() in needles.values():
            continue  # a secret file, not an artifact
        result.scanned[kind_of(path)] += 1
        for label, needle in needles.items():
            if needle in data:
                result.hits.append(f"{path}: contains {label}")
    return result


def artifacts(basetemp: Path, *testbed_bases: Path) -> list[Path]:
    """Every file under pytest's base temporary directory (state dirs, --out files, inventories)
    and every log of the testbed(s) (Patroni, PostgreSQL, etcd, sshd). The testbed's patroni.yml,
    pgpass and secrets hold the passwords by design and are not artifacts of the tool."""
    files = [p for p in basetemp.rglob("*") if p.is_file() and not p.is_symlink()]
    for base in testbed_bases:
        files += [p for p in base.rglob("*.log") if p.is_file()]
    return files


# Tests whose runs leave journals, plans and reports behind; the suite verdict needs one of them.
PRODUCERS = ("test_execute.py::test_execute_to_dc2_and_roll_back_under_load_twice",
             "test_machine_crash.py::", "test_plan_and_check.py::")
# What the whole suite must have left, so that the scan cannot pass by finding nothing to scan.
MINIMUM = {"journal": 2, "plan": 3, "report": 2, "log": 8}


def producers_among(nodeids: Iterable[str]) -> list[str]:
    return [n for n in nodeids if any(p in n for p in PRODUCERS)]


def suite_verdict(seen: Iterable[str], basetemps: Iterable[Path], testbed_bases: Iterable[Path],
                  producers: list[str]) -> tuple[list[str], ScanResult, int]:
    """Scan every artifact the suite left (one basetemp per pytest process, every testbed base)
    for every password it saw. Returns (problems, what was scanned, how many passwords); no
    problem means: the passwords were read, no artifact holds one, and enough of each kind of
    artifact was scanned for that to mean something."""
    seen = set(seen)
    passwords = {f"test password #{n}": value for n, value in enumerate(sorted(seen), 1)}
    passwords.update({f"'{p}'": p for p in EXTRA_TEST_PASSWORDS})
    if len(seen) < 3:
        return ["the testbed's passwords were not read"], ScanResult(), len(passwords)
    bases = [Path(b) for b in testbed_bases]
    files = [f for temp in basetemps for f in artifacts(Path(temp), *bases)]
    # Each base's logs once, however many basetemps there are.
    files = list(dict.fromkeys(files))
    result = scan(files, passwords)
    problems = list(result.hits)
    short = {kind: (result.scanned[kind], least) for kind, least in MINIMUM.items()
             if result.scanned[kind] < least}
    if short:
        problems.append(f"too few artifacts scanned (found, minimum): {short}; from {producers[:3]}")
    return problems, result, len(passwords)
