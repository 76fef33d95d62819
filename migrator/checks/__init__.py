"""Preflight checks: pure functions over one snapshot, one Finding per check.

`run_checks(inventory, state, source, target)` runs every check in `CHECK_IDS` order (the table
`ORDER` below) and returns one `Finding` each: ok / warn / block, a one-line finding that names
the sites, members and values observed, and a one-line fix (None when ok). No I/O: the planner calls this on the
snapshot that migrator/observe/observer.py built, and tests call it on fixtures.

Each check is a small function registered with `@check("id")` (migrator/checks/base.py) in the
module of its topic: topology.py, replication.py, synchronous.py, settings.py (seed.py holds the
checks of an empty target, run by planning, not here). It returns an `Outcome`: the text to show
when all is well and the list of `Issue`s it found; `run_checks` turns that into the
Finding (the worst issue decides the verdict, texts and fixes are joined with "; ").

Conventions shared by all checks:
- Missing inputs (a member unreachable, a probe failed, a setting not collected) are said, never
  guessed: block when the switchover depends on that input (the two leaders, the slot, the lag),
  warn otherwise. Replicas' missing data is left to `members-reachable`, which reports every probe
  error once, so one member down does not turn every other check into a warning.
- "Involved" sites are the source and the target. Topology checks (single writer, lineage,
  names, DCS, pause, Patroni version, watchdog) look at every site of the snapshot; settings
  checks look at the involved sites only.
- When the target is already the primary site (the move is done: the source follows it, or
  source == target because the planner derives the source from the primary site), the
  direction-dependent checks say "not applicable" and stay ok; `source-is-primary` warns with
  "nothing to move", and the planner turns that state into an empty plan.
- A check that raises on an unexpected snapshot becomes a BLOCK finding naming the exception,
  never a crash of the whole preflight.
"""

from __future__ import annotations

from collections.abc import Iterable

from migrator.checks import replication, settings, synchronous, topology
from migrator.checks.base import REGISTERED, SEVERITY, CheckFunction, Context, Outcome, short, truthy
from migrator.errors import UsageError, one_line
from migrator.model.findings import Finding, Verdict
from migrator.model.inventory import Inventory
from migrator.model.state import ServiceState

# The order the checks run in, which is the order of the findings in every report and plan (and
# so part of a plan's fingerprint): change it only on purpose. A check registered in a topic
# module and missing here, or named here and registered nowhere, fails at import.
ORDER: tuple[str, ...] = (
    "members-reachable",
    "dcs-quorum",
    "paused",
    "system-identifier",
    "unique-member-names",
    "single-writer",
    "source-is-primary",
    "token-readable",
    "target-follows-source-leader",
    "target-replicas-cascade",
    "slot-for-target",
    "slot-for-source",
    "replay-lag",
    "synchronous-mode",
    "nofailover-target",
    "patroni-version",
    "rewind-fallback",
    "walsender-headroom",
    "slot-headroom",
    "max-slot-wal-keep-size",
    "logical-slots",
    "archiving",
    "watchdog",
    "target-wal-available",
    "pause-path-reaches-source",
    "synchronous-mode-target",
    "orphaned-standby",
)
TOPICS = (topology, replication, synchronous, settings)  # imported for their @check registrations

if set(ORDER) != set(REGISTERED) or len(ORDER) != len(set(ORDER)):
    raise ImportError(
        f"checks ORDER and the registered checks differ: only ordered {sorted(set(ORDER) - set(REGISTERED))}, "
        f"only registered {sorted(set(REGISTERED) - set(ORDER))}"
    )

CHECKS: tuple[tuple[str, CheckFunction], ...] = tuple((check_id, REGISTERED[check_id]) for check_id in ORDER)
CHECK_IDS: tuple[str, ...] = ORDER
# Read by other modules and tests from here, as before the checks were split by topic.
__all__ = ["CHECKS", "CHECK_IDS", "ORDER", "run_checks", "short", "truthy", "worst"]


def _finding(check_id: str, result: Outcome) -> Finding:
    if not result.issues:
        return Finding(check=check_id, verdict=Verdict.OK, finding=one_line(result.ok))
    issues = sorted(result.issues, key=lambda i: -SEVERITY[i.verdict])  # stable: blocks first
    sites = {i.site for i in issues}
    return Finding(
        check=check_id,
        verdict=issues[0].verdict,
        finding=one_line("; ".join(i.text for i in issues)),
        fix=one_line("; ".join(dict.fromkeys(i.fix for i in issues))),
        site=sites.pop() if len(sites) == 1 else None,
        members=tuple(dict.fromkeys(m for i in issues for m in i.members)),
    )


def _run_one(check_id: str, function: CheckFunction, ctx: Context) -> Finding:
    try:
        return _finding(check_id, function(ctx))
    except Exception as exc:  # noqa: BLE001 - one odd snapshot must not hide the other findings
        return Finding(
            check=check_id,
            verdict=Verdict.BLOCK,
            finding=one_line(f"the check could not read this snapshot: {type(exc).__name__}: {exc}"),
            fix="report this as a bug in migrator, with the snapshot (migrate status --json)",
        )


def run_checks(inventory: Inventory, state: ServiceState, source: str, target: str) -> list[Finding]:
    """One Finding per id in CHECK_IDS, in that order. Raises UsageError only for a site that
    is not in both the inventory and the snapshot; never for what the snapshot contains.
    source == target is allowed: it is how "the target is already primary" arrives."""
    for role, name in (("source", source), ("target", target)):
        if name not in inventory.sites or name not in state.sites:
            raise UsageError(
                f"{role} site '{name}' is not in the inventory and the snapshot; sites: {', '.join(inventory.sites)}"
            )
    ctx = Context(inventory, state, source, target)
    return [_run_one(check_id, function, ctx) for check_id, function in CHECKS]


def worst(findings: Iterable[Finding]) -> Verdict:
    """The most severe verdict among `findings` (OK when there are none)."""
    return max((f.verdict for f in findings), key=SEVERITY.__getitem__, default=Verdict.OK)
