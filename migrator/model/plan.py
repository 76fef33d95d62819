"""The Plan: what `migrate plan` writes and `migrate execute --plan` runs.

A Plan is data (frozen pydantic) with a canonical JSON form. Its `fingerprint` covers only what
must still hold at execute time (service, sites, steps with their arguments, gates and undo,
configs after the change, each site's leader and members with their roles, the hook commands it
runs), never LSNs, lag, timestamps or finding texts, so a plan stays valid while WAL moves and
goes stale when the topology (or a hook) does. The trust warnings (unknown SSH host keys,
passwords over plain http) are in the plan and its JSON but not in the fingerprint: they change
no step, and `migrate execute` prints the inventory's current ones when it starts, so a reviewed
plan cannot hide a new exposure. Plans never hold a secret: arguments name users at most, never passwords or
secret references.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, computed_field, model_validator

from migrator.model.findings import Finding, Verdict, blocking
from migrator.model.trust_text import unknown_host_key_warnings

PLAN_FORMAT = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


# --- topology ---------------------------------------------------------------------------------


class MemberView(_Frozen):
    name: str
    host: str
    role: str | None = None  # primary | standby_leader | replica | demoted | None (unknown)
    state: str | None = None  # Patroni's state: running, streaming, stopped...
    timeline: int | None = None
    writable: bool | None = None
    replay_lag_bytes: int | None = None  # behind the service's primary; None when not known
    patroni_version: str | None = None
    error: str | None = None  # why part of the member could not be observed


class SiteView(_Frozen):
    name: str
    scope: str
    role: Literal["primary", "standby", "unknown"]  # unknown: no config and no member observed
    follows: str | None = None  # the site a standby cluster replicates from
    leader: str | None = None  # None: not known yet (see leader_note)
    leader_note: str | None = None
    replicas: tuple[str, ...] = ()
    timelines: tuple[int, ...] = ()
    replay_lag_bytes: int | None = None  # the largest known member lag; None when none is known
    predicted: bool = False  # True for the topology after the switchover
    members: tuple[MemberView, ...] = ()


# --- steps ------------------------------------------------------------------------------------


class PlanGate(_Frozen):
    wait_for: str
    threshold: str | None = None
    timeout_seconds: float


class PlanUndo(_Frozen):
    kind: str  # "none" when nothing is to undo
    description: str | None = None


class PlanStep(_Frozen):
    id: str
    phase: str
    kind: str
    title: str
    args: dict[str, Any] = {}
    gate: PlanGate | None = None
    undo: PlanUndo
    manual: tuple[str, ...] = ()
    write_unavailable: bool = False
    already_satisfied: bool = False
    when: str | None = None  # the playbook condition that selected the step, for the report

    def fingerprint_part(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "phase": self.phase,
            "args": self.args,
            "gate": self.gate.model_dump(mode="json") if self.gate else None,
            "undo": self.undo.kind,
            "write_unavailable": self.write_unavailable,
        }


class PlanHook(_Frozen):
    """A command of the inventory's `hooks` that this plan runs (migrator/run/hooks.py)."""

    name: str  # before_demote | before_promote | after_promote | on_undo
    command: str
    timeout_seconds: float
    when: str  # when it runs and what its failure does

    def fingerprint_part(self) -> dict[str, Any]:
        return {"name": self.name, "command": self.command, "timeout_seconds": self.timeout_seconds}


def deadline_seconds(step: PlanStep, connect_timeout: float) -> float:
    """How long a step may take: its gate's timeout, else six network timeouts. The engine's step
    and the DCS hold before it both wait this long."""
    return step.gate.timeout_seconds if step.gate else connect_timeout * 6


class WriteUnavailability(_Frozen):
    path: Literal["graceful-demote", "pause-and-clean-stop"]
    expected_seconds: float  # as measured on the testbed (docs/architecture.md, "Patroni behaviour")
    worst_case_seconds: float  # the catch-up gate's timeout, after which the demotion is undone
    summary: str


# --- the plan ---------------------------------------------------------------------------------


class Plan(_Frozen):
    format: int = PLAN_FORMAT
    service: str
    playbook: str
    source: str
    target: str
    observed_at: str
    noop_reason: str | None = None
    graceful_demote: bool
    findings: tuple[Finding, ...] = ()
    executable: bool
    topology_before: dict[str, SiteView]
    topology_after: dict[str, SiteView]
    config_before: dict[str, dict[str, Any]]
    config_after: dict[str, dict[str, Any]]
    config_diff: dict[str, str]  # unified diff per site; "" when unchanged
    steps: tuple[PlanStep, ...] = ()
    write_unavailability: WriteUnavailability | None = None  # None for a no-op plan
    insecure_ssh_sites: tuple[str, ...] = ()  # sites whose inventory accepts unknown host keys
    hooks: tuple[PlanHook, ...] = ()  # the commands this plan runs on the operator's machine
    # trust.insecure_transport_warnings at plan time: passwords over plain http or unverified TLS.
    # Stored as the lines themselves (they name URLs, which the plan has no other place for).
    insecure_transport: tuple[str, ...] = ()
    fingerprint: str

    # In the JSON plan too, so a machine reader cannot miss it. The ignore: mypy does not support a
    # decorator over @property, and this is pydantic's documented form.
    @computed_field  # type: ignore[prop-decorator]
    @property
    def warnings(self) -> list[str]:
        return unknown_host_key_warnings(self.insecure_ssh_sites) + list(self.insecure_transport)

    @model_validator(mode="before")
    @classmethod
    def _drop_derived(cls, data: Any) -> Any:
        # `warnings` is derived, not stored: a plan read back from its JSON recomputes it.
        if isinstance(data, dict) and "warnings" in data:
            data = {k: v for k, v in data.items() if k != "warnings"}
        return data

    # --- fingerprint ----------------------------------------------------------------------

    def fingerprint_material(self) -> dict[str, Any]:
        """What must still match at execute time (no LSNs, lag, timestamps or finding texts)."""
        # Hooks only when there are some, so a plan without hooks keeps the fingerprint it had
        # before hooks were part of the plan.
        hooks = {"hooks": [hook.fingerprint_part() for hook in self.hooks]} if self.hooks else {}
        return {
            **hooks,
            "format": self.format,
            "service": self.service,
            "playbook": self.playbook,
            "source": self.source,
            "target": self.target,
            "noop": self.noop_reason is not None,
            "steps": [step.fingerprint_part() for step in self.steps],
            "config_after": self.config_after,
            "sites": {
                name: {
                    "role": site.role,
                    "leader": site.leader,
                    "members": {m.name: m.role for m in site.members},
                }
                for name, site in self.topology_before.items()
            },
        }

    def compute_fingerprint(self) -> str:
        return fingerprint_of(self.fingerprint_material())

    # --- views ----------------------------------------------------------------------------

    @property
    def blocking_findings(self) -> list[Finding]:
        return blocking(list(self.findings))

    @property
    def verdict(self) -> str:
        return "executable" if self.executable else "BLOCKED"

    def ordered_findings(self) -> list[Finding]:
        """Blocking first, then warnings, then ok; stable within each verdict."""
        rank = {Verdict.BLOCK: 0, Verdict.WARN: 1, Verdict.OK: 2}
        return sorted(self.findings, key=lambda f: rank[f.verdict])

    # --- JSON -----------------------------------------------------------------------------

    def to_json(self, *, pretty: bool = False) -> str:
        """Canonical JSON (sorted keys, no whitespace), or indented for people with pretty."""
        data = self.model_dump(mode="json")
        if pretty:
            return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"
        return canonical_json(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        return cls.model_validate_json(text)

    def verify_fingerprint(self) -> bool:
        """The stored fingerprint matches the plan's content (the file was not edited)."""
        return self.fingerprint == self.compute_fingerprint()


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def fingerprint_of(material: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(material).encode("utf-8")).hexdigest()
