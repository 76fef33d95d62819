"""Every step kind, declared once: what the playbooks, the engine, the DCS hold, the hooks and the
runbook need to know about it.

Pure data (no I/O import), so the playbook loader (model) and the renderers read it without
importing the step classes. Each class in migrator/steps/ names its declaration with
`@step_kind("...")` (migrator/steps/base.py), which refuses a kind that is not declared here;
tests/unit/test_step_registry.py ties playbooks, declarations, classes and runbooks together.

Adding a kind: declare it here, write its class with `@step_kind`, import its module in
migrator/steps/registry.py if it is a new one, and use it in a playbook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# "none" is always allowed: nothing to undo.
NO_UNDO = "none"
# Which connection a kind inside the write-unavailability window wants opened before it starts
# (see Step.warm_up_switchover_connections): the old primary's pg_control wait over SSH, or a
# PostgreSQL session on the target's standby leader.
WarmUp = Literal["token_wait_command", "replay_connection"]
# A `dcs_sites` entry names a plan argument of the step that holds a site name; TARGET is the
# plan's target site.
TARGET = "@target"


@dataclass(frozen=True)
class StepKind:
    name: str
    summary: str
    # The undo kinds a step of this kind may declare in a playbook, besides "none".
    undo: tuple[str, ...] = ()
    # The step changes something in `apply` (else it only waits: its gate).
    changes_state: bool = False
    # The sites whose DCS must answer before the step starts (Patroni changes no role and
    # serves no PATCH /config without it). Empty: the step needs no DCS.
    dcs_sites: tuple[str, ...] = ()
    # While such a step holds for its DCS, the target is primary already (the hold says so).
    dcs_hold_after_promotion: bool = False
    # Sections of runbooks/switchover.md (their <a id>) that apply when the step fails, besides
    # its phase's section, and a runbook page of the kind's own.
    runbook_sections: tuple[str, ...] = ()
    runbook_page: str | None = None
    # Ends the source's role as primary (its before_demote / on_undo hooks run around it).
    demotes: bool = False
    # Sends the promotion: from its attempt on, a failure is never undone by a PATCH.
    promotes: bool = False
    warm_up: WarmUp | None = None
    # Its `files` argument lists the patroni.yml files the plan writes (for the reports).
    writes_member_configs: bool = False
    # Read-only and independent of its neighbours: the engine runs consecutive steps of such
    # kinds at the same time (access proofs with the cascade gate, the final verifies). Only a
    # kind that changes nothing and has no undo may say so (tests/unit/test_overlap.py).
    overlaps: bool = False


_DECLARED: tuple[StepKind, ...] = (
    StepKind("run_preflight", "the checks again, right before the first change"),
    StepKind(
        "ensure_permanent_slot",
        "slots.<name>: {type: physical} in a site's dynamic config",
        undo=("remove_permanent_slot",),  # only if this run added it
        changes_state=True,
        dcs_sites=("site",),
        runbook_sections=("slot-missing",),
    ),
    StepKind("prove_replication_access", "a real replication connection from each follower host", overlaps=True),
    StepKind("validate_standby_cluster", "the rendered section: hosts resolve, port open, slot exists", overlaps=True),
    StepKind(
        "wait_cascade",
        "leader -> standby leader -> replicas streaming, lag gate",
        dcs_sites=("source", "target"),
        runbook_sections=("follows-a-replica", "slot-missing"),
        overlaps=True,
    ),
    # The demotion is only worth starting when the promotion that must follow can happen.
    StepKind(
        "demote_site",
        "PATCH standby_cluster onto the source (Patroni >= 4.1)",
        undo=("undo_demote",),  # PATCH standby_cluster: null on the source again
        changes_state=True,
        dcs_sites=("site", TARGET),
        runbook_sections=("undo-failed", "hooks"),
        demotes=True,
    ),
    # The older path's config changes (pause, resume as a standby) go through the DCS as well.
    StepKind(
        "pause_site",
        "PATCH pause: true and wait until every member reports it",
        undo=("resume_site",),  # PATCH pause: null
        changes_state=True,
        dcs_sites=("site",),
        runbook_sections=("older-patroni", "undo-failed"),
    ),
    StepKind(
        "stop_postgres",
        "pg_ctl stop -m fast -w over SSH (Patroni < 4.1 path)",
        undo=("start_postgres",),  # pg_ctl start on the stopped primary, wait until writable
        changes_state=True,
        runbook_sections=("older-patroni", "undo-failed", "hooks"),
        demotes=True,
    ),
    StepKind(
        "prove_not_writable", "no member of the site accepts writes", runbook_sections=("two-primaries", "undo-failed")
    ),
    StepKind(
        "read_token",
        "pg_controldata: shut down + latest checkpoint = the token",
        runbook_sections=("undo-failed",),
        warm_up="token_wait_command",
    ),
    StepKind(
        "wait_replay_past_token",
        "target standby leader's replay LSN > token",
        runbook_sections=("catch-up-timed-out", "undo-failed"),
        warm_up="replay_connection",
    ),
    StepKind(
        "promote_site",
        "PATCH standby_cluster: null on the target",
        undo=("reverse_switchover",),  # past promotion: the same protocol with the sites swapped
        changes_state=True,
        dcs_sites=("site",),
        runbook_sections=("promotion-not-confirmed", "hooks"),
        promotes=True,
    ),
    StepKind(
        "wait_patroni_stopped",
        "GET /patroni says state stopped (Patroni < 4.1 path)",
        runbook_sections=("older-patroni", "promotion-not-confirmed"),
    ),
    StepKind(
        "resume_as_standby",
        "PATCH standby_cluster + pause: null (Patroni < 4.1 path)",
        changes_state=True,
        dcs_sites=("site",),
        runbook_sections=("older-patroni", "promotion-not-confirmed"),
    ),
    StepKind(
        "wait_repoint",
        "the old site streams the new timeline, no rewind, lag gate",
        dcs_sites=("site",),
        dcs_hold_after_promotion=True,
        runbook_sections=("source-diverged", "slot-missing", "promotion-not-confirmed"),
    ),
    StepKind(
        "verify_single_writer",
        "exactly one writable member, in the target site",
        runbook_sections=("two-primaries", "promotion-not-confirmed"),
        overlaps=True,
    ),
    StepKind(
        "verify_slots_active",
        "the new standby leader's slot is active on the new primary",
        runbook_sections=("follows-a-replica", "promotion-not-confirmed"),
        overlaps=True,
    ),
    StepKind(
        "verify_write_visible",
        "a WAL record written on the target is replayed in the source",
        runbook_sections=("promotion-not-confirmed",),
        overlaps=True,
    ),
    StepKind("run_seed_preflight", "seeding: the target is empty and safe to build (seed.yml)"),
    StepKind(
        "write_patroni_configs",
        "seeding: each target member's patroni.yml over SSH, 0600",
        undo=("restore_patroni_configs",),  # back-ups back in place, written files moved aside
        changes_state=True,
        writes_member_configs=True,
    ),
    StepKind(
        "start_seed_leader",
        "seeding: Patroni on the first member, base backup, standby leader",
        undo=("unseed_members",),  # stop Patroni, data directories moved aside
        changes_state=True,
    ),
    StepKind(
        "start_seed_replicas",
        "seeding: the other members one by one, cascading",
        undo=("unseed_members",),
        changes_state=True,
    ),
    StepKind(
        "wipe_target",
        "re-seeding: stop the target, data aside, DCS keys removed",
        changes_state=True,
        runbook_page="runbooks/slot-or-wal-gone.md",
    ),
    # A PATCH of the standby site's host list or of synchronous settings is a config change too.
    StepKind(
        "repoint_standby_cluster",
        "the target's standby_cluster.host -> every source member",
        undo=("restore_standby_cluster",),  # PATCH back the host/port the step replaced
        changes_state=True,
        dcs_sites=("site",),
        runbook_sections=("follows-a-replica",),
        runbook_page="runbooks/standby-follows-replica.md",
    ),
    StepKind(
        "set_dynamic_config",
        "top-level dynamic-config keys (synchronous mode) of a site",
        undo=("restore_dynamic_config",),  # PATCH back the keys the step replaced
        changes_state=True,
        dcs_sites=("site",),
        runbook_sections=("undo-failed",),
        runbook_page="runbooks/synchronous-mode.md",
    ),
    # --- reattach (playbooks/reattach.yml): the old site back as a standby after a failover ---
    StepKind("run_reattach_preflight", "reattach: the new site has one writer, the old site none"),
    StepKind(
        "write_standby_cluster_dcs",
        "reattach: standby_cluster written into the stopped site's DCS key (compare-and-set)",
        changes_state=True,  # straight to etcd (no Patroni of the site runs): no DCS hold
        runbook_page="runbooks/reattach.md",
    ),
    StepKind(
        "rewind_or_set_aside",
        "reattach: a diverged member rewound (pg_rewind) or its data moved aside for a re-clone",
        changes_state=True,
        runbook_page="runbooks/reattach.md",
    ),
    StepKind(
        "start_reattached_members",
        "reattach: Patroni started member by member, never writable, streaming, lag gate",
        changes_state=True,
        runbook_page="runbooks/reattach.md",
    ),
    StepKind(
        "verify_promotion_point",
        "the new primary's timeline forked after the token",
        runbook_sections=("promotion-not-confirmed",),
        runbook_page="runbooks/standby-leader-changes.md",
    ),
    # --- `migrate failover` (migrator/steps/fence.py): the source is failing, fence it first ---
    StepKind(
        "fence_source_config",
        "failover: standby_cluster into the failing source's DCS, where it still answers",
        changes_state=True,
        dcs_sites=("site",),
        runbook_page="runbooks/failover.md",
    ),
    StepKind(
        "fence_member",
        "failover: stop Patroni, pg_ctl stop -m fast, fence marker (or --fenced / hooks.fence)",
        changes_state=True,
        runbook_page="runbooks/failover.md",
    ),
    StepKind(
        "prove_failover",
        "failover: token from the fenced members' pg_control; target replays past it, or the gap is stated",
        runbook_page="runbooks/failover.md",
    ),
    StepKind(
        "promote_failover",
        "failover: PATCH standby_cluster: null on the target, writer on a timeline forked at the proven point",
        changes_state=True,
        dcs_sites=("site",),
        runbook_page="runbooks/failover.md",
        promotes=True,
    ),
    StepKind(
        "verify_failover",
        "failover: one writable member, in the target; none in the fenced source",
        runbook_page="runbooks/failover.md",
    ),
)

KINDS: dict[str, StepKind] = {kind.name: kind for kind in _DECLARED}
# The loader rejects other kinds, so a misspelt kind fails when the playbook is read, not
# half-way through a switchover.
STEP_KINDS = frozenset(KINDS)
UNDO_KINDS = frozenset({NO_UNDO, *(undo for kind in _DECLARED for undo in kind.undo)})
PROMOTING_KINDS = tuple(kind.name for kind in _DECLARED if kind.promotes)
DEMOTING_KINDS = tuple(kind.name for kind in _DECLARED if kind.demotes)


def declared(kind: str) -> StepKind | None:
    """The declaration of `kind`; None for a kind no playbook of this version can name (a plan
    file from elsewhere: the engine refuses to run it)."""
    return KINDS.get(kind)


def promotes(kind: str) -> bool:
    found = KINDS.get(kind)
    return found is not None and found.promotes


# Each hook: the step kinds it belongs to (the plan lists it only with one of them), and when
# it runs and what its failure does, as the plan and the runbook say it.
HOOK_POINTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "before_demote",
        DEMOTING_KINDS,
        "right before the source is demoted (its standby_cluster PATCH, or the clean stop on the "
        "Patroni < 4.1 path), e.g. pgbouncer PAUSE; a failure stops the run with nothing demoted "
        "and undoes the earlier steps",
    ),
    (
        "before_promote",
        PROMOTING_KINDS,
        "right before the promotion PATCH, inside the write-unavailability window; a failure stops "
        "the run before that PATCH is sent and undoes the demotion (exit 3)",
    ),
    (
        "after_promote",
        PROMOTING_KINDS,
        "once the new primary is proven to have every commit (its timeline forked after the token), "
        "e.g. move DNS/VIP/pgbouncer; a failure is a warning (exit 1): the database move stands, "
        "move the traffic by hand",
    ),
    (
        "on_undo",
        DEMOTING_KINDS,
        "after the tool undid the demotion and the source takes writes again, e.g. pgbouncer "
        "RESUME; a failure is a warning in the outcome, the undo stands",
    ),
)
HOOK_KINDS = {name: kinds for name, kinds, _ in HOOK_POINTS}
