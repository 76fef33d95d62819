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
# What tests/e2e/test_bad_credentials.py puts in its wrong-password file.
EXTRA_TEST_PASSWORDS = ("not-the-password",)
MAX_BYTES = 64 * 1024 * 1024


def remember(testbed) -> None:
    """Add the testbed's current passwords (if it has any on disk) to SEEN."""
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


def artifacts(basetemp: Path, testbed_base: Path) -> list[Path]:
    """Every file under pytest's base temporary directory (state dirs, --out files, inventories)
    and every log of the testbed (Patroni, PostgreSQL, etcd, sshd). The testbed's patroni.yml,
    pgpass and secrets hold the passwords by design and are not artifacts of the tool."""
    files = [p for p in basetemp.rglob("*") if p.is_file() and not p.is_symlink()]
    files += [p for p in testbed_base.rglob("*.log") if p.is_file()]
    return files
