"""Holding a run while a site's DCS does not answer.

Patroni cannot change a site's role without that site's DCS, and its REST API's GET and PATCH
/config hang while the DCS is down. So a step that changes a site's dynamic config or waits for
Patroni to act there (slots, cascade, demotion, promotion, repoint) never starts on a DCS that
does not answer: before it, the engine asks etcd itself, then Patroni's GET /config through it,
and while either does not answer it holds, with a countdown, up to the step's own gate deadline.
A DCS that is back in time lets the run continue from fresh observation; one that is not ends
the step with `DcsUnavailable`, a gate timeout, so what the run changed is undone where that is
safe (before the promotion) and the run stops with the next step named (after it).

The steps in the write-unavailability window that only read PostgreSQL and pg_control (proving
the source read-only, the token, the catch-up) need no DCS, and the promotion needs only the
target's: the source's standby_cluster section is already in its DCS, and no Patroni promotes
anything without its DCS, failsafe_mode or not (failsafe_mode only keeps a running primary).
"""

from __future__ import annotations

import time
from typing import Any

from migrator.adapters.dcs import site_dcs
from migrator.errors import GateTimeout, UnreachableError
from migrator.model.plan import PlanStep, deadline_seconds
from migrator.render.wait_line import WaitLine as Countdown
from migrator.steps.kinds import TARGET, declared

POLL_SECONDS = 1.0
SETTLED_PROBES = 2


class DcsUnavailable(GateTimeout):
    """A DCS a step needs did not answer before the step's deadline."""


def sites_needed(spec: PlanStep, target: str) -> list[str]:
    """Which sites' DCS the step needs before it starts (its kind's `dcs_sites`: plan arguments
    naming a site, or the plan's target)."""
    names = []
    found = declared(spec.kind)
    for arg in found.dcs_sites if found else ():
        name = target if arg == TARGET else spec.args.get(arg)
        if name and name not in names:
            names.append(name)
    return names


def etcd_problem(live: Any, site_name: str) -> str | None:
    """Why the site's etcd does not answer; None when it does."""
    site = live.site(site_name)
    try:
        site_dcs(site, live.timeout, site_name).client()
    except UnreachableError as exc:
        return f"{site_name}'s etcd does not answer ({exc})"
    return None


def dcs_problem(live: Any, site_name: str) -> str | None:
    """Why Patroni in `site_name` cannot use its DCS now; None when etcd and GET /config answer."""
    problem = etcd_problem(live, site_name)
    if problem:
        return problem
    try:
        live.config(site_name)  # read through Patroni: it hangs until Patroni is back on etcd
    except UnreachableError as exc:
        return f"{site_name}'s Patroni does not serve its config from etcd yet ({exc})"
    return None


def hold_for_dcs(
    ctx: Any, sites: list[str], seconds: float, before: str, record: Any = lambda event, **fields: None, state: str = ""
) -> float:
    """Return at once when every named site's DCS answers; otherwise hold, counting down, until
    they all do (returns the seconds held) or `seconds` passed (DcsUnavailable)."""
    live = ctx.live
    problems = _problems(live, sites)
    if not problems:
        return 0.0
    started = time.monotonic()
    deadline = started + seconds
    record("dcs-hold", before=before, problems=problems, seconds=seconds)
    ctx.progress(
        f"HOLD before {before}: {'; '.join(problems)}; nothing is changed while it lasts, giving up in {seconds:.0f}s"
    )
    countdown = Countdown(ctx.progress)
    clean_probes = 0
    last = problems
    try:
        # Back means answering on SETTLED_PROBES probes in a row: right after etcd returns,
        # Patroni may answer a GET /config while its writes still hang for a few seconds.
        while clean_probes < SETTLED_PROBES:
            left = deadline - time.monotonic()
            if left <= 0:
                record("dcs-hold-expired", before=before, problems=last)
                raise DcsUnavailable(
                    f"{'; '.join(last)}: held {seconds:.0f}s before {before} and it "
                    f"did not recover, so that step was not started{state} "
                    "(runbooks/dcs-outage.md)"
                )
            countdown.show(
                f"HOLD before {before}: waiting for the DCS, {left:.0f}s left: "
                f"{'; '.join(problems) or 'answering again, settling'}"
            )
            ctx.journal_sample(
                before=before, waiting_for="dcs", detail="; ".join(problems) or "settling", seconds_left=round(left, 1)
            )
            time.sleep(min(POLL_SECONDS, max(left, 0.05)))
            getattr(ctx, "check_lock", lambda: None)()  # a lock lost during the hold stops the run
            problems = _problems(live, sites)
            clean_probes = 0 if problems else clean_probes + 1
            last = problems or last
    finally:
        countdown.clear()
    held = round(time.monotonic() - started, 1)
    record("dcs-back", before=before, held_seconds=held)
    ctx.progress(f"the DCS of {', '.join(sites)} answers again after {held:.1f}s; continuing from fresh observation")
    return held


def _problems(live: Any, sites: list[str]) -> list[str]:
    return [p for p in (dcs_problem(live, s) for s in sites) if p]


def hold_before_step(spec: PlanStep, ctx: Any, journal: Any, migration_id: str) -> float:
    """The engine's call before a step starts (before its `step-started` record, so a promotion
    held and abandoned here was never started)."""
    sites = sites_needed(spec, ctx.plan.target)
    if not sites:
        return 0.0

    def record(event: str, **fields: Any) -> None:
        journal.append(event, migration=migration_id, step=spec.id, **fields)

    seconds = deadline_seconds(spec, ctx.inventory.gates.connect_timeout_seconds)
    state = ""
    found = declared(spec.kind)
    if found and found.dcs_hold_after_promotion:  # after the promotion's gate, which saw the new primary
        state = (
            f" ({ctx.plan.target} is primary and takes writes; {', '.join(sites)} stays read-only "
            "and follows it once its DCS is back)"
        )
    return hold_for_dcs(ctx, sites, seconds, spec.id, record, state)


def source_after_undo(live: Any, source: str) -> str:
    """The source's state after a run stopped before the promotion, as the sites say it, not as
    the plan assumed it: with failsafe_mode off Patroni itself keeps a primary read-only while its
    DCS is down, and the one-line verdict must not claim otherwise."""
    try:
        writers = live.writable(source)
    except Exception:  # noqa: BLE001 - the verdict must be written whatever the sites answer
        writers = []
    if len(writers) == 1:
        return f"{source} is still primary, nothing lost: back where it started ({writers[0]} takes writes)"
    if writers:
        return (
            f"{source} has {len(writers)} writable members ({', '.join(writers)}): see "
            "runbooks/switchover.md, 'two primaries'"
        )
    problem = etcd_problem(live, source)
    if problem:
        return (
            f"no site was promoted, nothing lost; {source} takes no writes while {problem} "
            "(Patroni keeps its primary read-only without its DCS when failsafe_mode is off) and "
            "is primary again once its etcd is back: see runbooks/dcs-outage.md"
        )
    return (
        f"no site was promoted, nothing lost, but no {source} member takes writes yet: check "
        "`migrate status` (runbooks/switchover.md, 'undo failed')"
    )
