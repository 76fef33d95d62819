"""The failover plan: what answered on the failing source site, how each of its members is fenced,
what the no-loss proof can say before anything is touched, and the steps the engine runs.

Plain data (frozen pydantic). `migrate plan --failover` renders it (migrator/render/failover_report.py);
`migrate failover` runs its `plan` (an ordinary engine Plan whose playbook is "failover").
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from migrator.model.plan import Plan

# How a source member is kept from taking writes before the target is promoted:
# ssh       Patroni stopped with the site's stop_command, `pg_ctl stop -m fast`, a fence marker
# operator  the operator says it is fenced by other means (--fenced MEMBER: powered off...)
# hook      the inventory's `hooks.fence` command, run on the operator's machine, exit 0 = fenced
# unfenced  none of these: the failover is refused
FenceMethod = Literal["ssh", "operator", "hook", "unfenced"]
# lossless       the target has replayed past the highest shutdown checkpoint of the fenced members
# gap            it has not and cannot (the range, its size and who holds it are stated)
# unknown        no fenced member's pg_control could be read: the loss cannot be bounded
# after-fencing  the members still run: the token is read from pg_control once they are stopped
ProofStatus = Literal["lossless", "gap", "unknown", "after-fencing"]

FENCE_MARKER = "MIGRATOR-FENCED"  # written beside each fenced member's patroni.yml


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MemberReach(_Frozen):
    """One source member as the observation found it: what answered, and its pg_control."""

    name: str
    host: str
    rest: str | None = None  # None: answered; else why not
    postgres: str | None = None
    ssh: str | None = None
    role: str | None = None  # by its own Patroni, when that answered
    writable: bool | None = None  # None: PostgreSQL did not answer
    control_state: str | None = None  # pg_controldata's "Database cluster state"
    checkpoint: int | None = None  # its latest checkpoint (the token once it is shut down)
    checkpoint_timeline: int | None = None


class Fence(_Frozen):
    member: str
    method: FenceMethod
    detail: str


class Proof(_Frozen):
    status: ProofStatus
    summary: str  # one line, as the report prints it
    token: int | None = None
    token_member: str | None = None
    target_member: str | None = None  # the target's standby leader
    target_replayed: int | None = None
    gap_bytes: int | None = None
    holders: tuple[str, ...] = ()  # members whose pg_control goes past the target's replay
    unread: tuple[str, ...] = ()  # fenced members whose pg_control cannot be read


class FailoverPlan(_Frozen):
    service: str
    source: str
    target: str
    observed_at: str
    dcs: dict[str, str | None]  # per site: None when its etcd answered, else why not
    members: tuple[MemberReach, ...]
    fences: tuple[Fence, ...]
    proof: Proof
    blocked: tuple[str, ...] = ()  # why `migrate failover` would refuse now, one line each
    accept_data_loss: bool = False
    plan: Plan

    @property
    def executable(self) -> bool:
        return not self.blocked


# The keys only a failover plan's document has (`render_failover(..., "json")`): a switchover
# plan has none of them.
FAILOVER_DOCUMENT_KEYS = frozenset({"fences", "proof", "plan"})


def is_failover_document(data: Any) -> bool:
    """Whether `data` (a parsed JSON document) is a failover plan as `plan --failover --out` writes it."""
    return isinstance(data, dict) and FAILOVER_DOCUMENT_KEYS <= data.keys()
