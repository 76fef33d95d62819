"""pg_control, the token's source of truth: the parsing of what the one command that reads it
prints (the command itself, `controldata_command`, is in migrator/adapters/remote.py)."""

from __future__ import annotations


def parse_controldata(text: str) -> dict[str, str]:
    facts = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            facts[key.strip()] = value.strip()
    return facts


def controldata_failure(exit_code: str, stderr: str) -> str | None:
    """None when the pg_controldata command succeeded, else one line: its exit code and the
    first line it wrote on stderr (the reason: no such file, permission denied, sudo...)."""
    code = exit_code.strip()
    if code == "0":
        return None
    reason = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    if code == "124":
        reason = reason or "did not finish in time"
    what = f"exit {code}" if code else "no exit code"
    return f"{what}: {reason[:200]}" if reason else what
