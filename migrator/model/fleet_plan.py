"""The fleet plan: one row per service of a fleet, each with the full plan `migrate plan --out`
would write for it, and the fleet fingerprint over them.

The fleet fingerprint is the hash of the sorted (service, plan fingerprint) pairs, so it does not
depend on the order the services were observed in, and changes when any one service's plan does
(a blocked service without a plan counts with a null fingerprint). A later `fleet execute --plan`
compares each service's stored plan fingerprint with a fresh one, per service, as `execute --plan`
does for one service.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field, model_validator

from migrator.model.plan import Plan, fingerprint_of

FLEET_PLAN_FORMAT = 1
Verdict = Literal["executable", "no-op", "blocked", "skipped"]
Proposal = Literal["switchover", "seed", "reseed", "noop"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FleetServicePlan(_Frozen):
    service: str
    inventory: str  # the inventory file, as the fleet file's directory joined with its entry
    wave: int
    verdict: Verdict  # skipped: blocked, and --skip-blocked leaves it out of the run
    proposal: Proposal | None = None  # None: no plan could be made (see blocking)
    source: str | None = None
    target: str
    blocking: str | None = None  # the first blocking finding with its fix, or why no plan was made
    write_unavailable_seconds: float | None = None  # expected (as measured on the testbed)
    worst_case_seconds: float | None = None  # the catch-up gate's timeout
    demote_path: str | None = None  # graceful-demote (Patroni >= 4.1) or pause-and-clean-stop
    patroni_versions: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    fingerprint: str | None = None
    plan: dict[str, Any] | None = None  # the plan as `migrate plan --out` writes it (secrets masked)

    def stored_plan(self) -> Plan | None:
        return None if self.plan is None else Plan.model_validate(self.plan)


class FleetWavePlan(_Frozen):
    number: int
    services: tuple[str, ...]
    implicit: bool = False


class FleetPlan(_Frozen):
    format: int = FLEET_PLAN_FORMAT
    kind: Literal["fleet-plan"] = "fleet-plan"
    fleet: str
    target: str
    observed_at: str
    parallel: int
    max_failures: int
    pause_between_waves: bool
    skip_blocked: bool
    waves: tuple[FleetWavePlan, ...]
    services: tuple[FleetServicePlan, ...]  # in wave order
    fingerprint: str

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # `totals` is derived, not stored: a fleet plan read back from its JSON recomputes it.
        if isinstance(data, dict) and "totals" in data:
            data = {k: v for k, v in data.items() if k != "totals"}
        return data

    @computed_field  # type: ignore[prop-decorator]
    @property
    def totals(self) -> dict[str, Any]:
        counts = {verdict: 0 for verdict in ("executable", "no-op", "blocked", "skipped")}
        for row in self.services:
            counts[row.verdict] += 1
        moving = [
            row.write_unavailable_seconds
            for row in self.services
            if row.verdict == "executable" and row.write_unavailable_seconds is not None
        ]
        return {
            "services": len(self.services),
            **counts,
            "expected_write_unavailable_seconds_max": max(moving) if moving else None,
            "expected_write_unavailable_seconds_sum": round(sum(moving), 3) if moving else None,
        }

    @property
    def exit_code(self) -> int:
        """0 when every service can run (or has nothing to do), or --skip-blocked set the others
        aside; 1 when any is blocked."""
        return 1 if any(row.verdict == "blocked" for row in self.services) else 0


def fleet_fingerprint(pairs: list[tuple[str, str | None]]) -> str:
    """The hash of the sorted (service, plan fingerprint) pairs."""
    return fingerprint_of(
        {
            "services": [
                [service, fingerprint]
                for service, fingerprint in sorted(pairs, key=lambda pair: (pair[0], pair[1] or ""))
            ]
        }
    )
