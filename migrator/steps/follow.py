"""Waiting for replication to be where the protocol needs it, and proving the result."""

from __future__ import annotations

import time
from typing import Any

from migrator.errors import PreflightError, UnreachableError
from migrator.rules.streaming_evidence import connections_span_window, evidence_holds, patroni_shows_streaming
from migrator.steps.base import Step, step_kind
from migrator.steps.standby_leader import orphaned_slot_user


def member_by_host(step: Step, site: str) -> dict[str, str]:
    return {m.host: m.name for m in step.live.site(site).members}


class _StreamingGate(Step):
    """Shared by the cascade and repoint waits: `follower` streams from `followed`'s primary, its
    other members from its standby leader, every member within the lag threshold for a window."""

    def _streaming(
        self, follower: str, followed: str, slot: str, timeline: int | None
    ) -> tuple[bool, str, dict[str, Any]]:
        """Whether the follower site streams as it should, why not, and what was measured: the
        worst member's replay lag (`lag_bytes`), the standby leader's replay position
        (`replay_lsn`), the followed primary's WAL head, the least replayed position and the
        seconds the youngest member's WAL receiver has run (`youngest_stream`, None when a
        member's is not shown)."""
        roles = self.live.site_roles(follower)
        if None in roles.values() and (
            orphan := orphaned_slot_user(self.live, follower, roles, slot, member_by_host(self, followed))
        ):
            return False, orphan, {}
        leaders = [n for n, r in roles.items() if r == "standby_leader"]
        writers = self.live.writable(followed)
        if len(leaders) != 1 or len(writers) != 1:
            return False, f"standby leader(s) {leaders or 'none'}, primary {writers or 'none'}", {}
        leader, primary = leaders[0], writers[0]
        head = self.live.wal_head(primary)
        followed_hosts, follower_hosts = member_by_host(self, followed), member_by_host(self, follower)
        worst, least, leader_replayed = 0, head, 0
        ages: list[float | None] = []
        for member in roles:
            receiver = self.live.wal_receiver(member)
            if receiver is None or not receiver.streaming:
                return False, f"{member} not streaming", {}
            sender = receiver.sender_host
            if member == leader:
                if followed_hosts.get(sender or "") != primary:
                    return False, f"{leader} streams from {sender}, not from {primary}", {}
                if receiver.slot_name != slot:
                    return False, f"{leader} uses slot {receiver.slot_name}, not {slot}", {}
                leader_replayed = receiver.replayed or 0
            elif follower_hosts.get(sender or "") != leader:
                return False, f"{member} streams from {sender}, not from {leader}", {}
            if timeline is not None and receiver.timeline != timeline:
                return False, f"{member} on timeline {receiver.timeline}, not {timeline}", {}
            worst = max(worst, head - (receiver.replayed or 0))
            least = min(least, receiver.replayed or 0)
            ages.append(receiver.connected_seconds)
        youngest = None if None in ages or not ages else min(a for a in ages if a is not None)
        measured = {
            "lag_bytes": max(worst, 0),
            "replay_lsn": leader_replayed,
            "head": head,
            "least": least,
            "youngest_stream": youngest,
        }
        if worst > self.args["max_lag_bytes"]:
            return False, f"replay lag {worst} bytes > {self.args['max_lag_bytes']}", measured
        return True, f"{primary} -> {leader}, lag {max(worst, 0)} bytes", measured

    def _hold(self, follower: str, followed: str, slot: str, timeline: int | None) -> dict[str, Any]:
        """Passes on evidence (rules/streaming_evidence.py: consecutive good samples, every
        member replayed up to the primary's head of the first one, and either every member's WAL
        receiver older than the window or Patroni's own DCS view showing every member streaming)
        or, failing that, after the lag window in a row."""
        window = float(self.args["window_seconds"])
        # A plan made before the evidence existed says nothing of it: it keeps the window it was reviewed with.
        evidence = self.args.get("evidence") is True
        # Likewise a plan made before the stream's age counted keeps to the other two ways.
        from_stream_start = evidence and self.args.get("window_from_stream_start") is True
        state: dict[str, Any] = {"since": None, "why": "", "measured": {}, "mark": None, "good": 0, "by": ""}

        def held() -> bool:
            ok, state["why"], state["measured"] = self._streaming(follower, followed, slot, timeline)
            now = time.monotonic()
            if not ok:
                state.update(since=None, mark=None, good=0)
                return False
            if state["since"] is None:
                state["since"], state["mark"] = now, state["measured"]["head"]
            state["good"] += 1
            if now - state["since"] >= window:
                state["by"] = f"streaming for the {window:.0f}s window"
                return True
            if not evidence:
                return False
            ours, why = evidence_holds(state["good"], state["measured"]["least"], state["mark"])
            if not ours:
                state["why"] += f"; {why}"
                return False
            if from_stream_start:
                spans, span_why = connections_span_window(state["measured"]["youngest_stream"], window)
                if spans:
                    state["by"] = f"evidence: {why}; {span_why}"
                    return True
            patronis, patroni_why = patroni_shows_streaming(
                self.live.cluster(follower), [m.name for m in self.live.site(follower).members], timeline, state["mark"]
            )
            if not patronis:
                state["why"] += f"; {patroni_why}"
                return False
            state["by"] = f"evidence: {why}; {patroni_why}"
            return True

        def numbers() -> dict[str, int]:
            measured = state["measured"]
            return {k: measured[k] for k in ("lag_bytes", "replay_lsn") if k in measured}

        ways = f"streams older than {window:.0f}s or Patroni's own view" if from_stream_start else "Patroni's own view"
        self.wait(
            held,
            f"{follower} streaming from {followed} "
            + (f"({ways}, or {window:.0f}s in a row)" if evidence else f"for {window:.0f}s"),
            interval=0.1,
            describe=lambda: state["why"],
            sample_fields=numbers,
        )
        return {"streaming": state["why"], "held_by": state["by"], **numbers()}


@step_kind("wait_cascade")
class WaitCascade(_StreamingGate):
    def gate(self) -> dict[str, Any]:
        return self._hold(self.args["target"], self.args["source"], self.args["slot"], None)


@step_kind("wait_repoint")
class WaitRepoint(_StreamingGate):
    def gate(self) -> dict[str, Any]:
        timeline = (self.ctx.facts.get("promote-target") or {}).get("new_timeline")
        return self._hold(self.args["site"], self.args["follows"], self.args["slot"], timeline)


@step_kind("verify_single_writer")
class VerifySingleWriter(Step):
    def gate(self) -> dict[str, Any]:
        writer_site = self.args["writer_site"]

        def single() -> list[str] | None:
            writers = [name for site in self.args["sites"] for name in self.live.writable(site)]
            ok = len(writers) == 1 and writers[0] in {m.name for m in self.live.site(writer_site).members}
            return writers if ok else None

        writers = self.wait(single, f"exactly one writable member, in {writer_site}", interval=0.2)
        return {"writer": writers[0]}


@step_kind("verify_slots_active")
class VerifySlotsActive(Step):
    def gate(self) -> dict[str, Any]:
        site, slot = self.args["site"], self.args["slot"]

        def active() -> bool:
            for writer in self.live.writable(site)[:1]:
                return self.live.slot_active(writer, slot)
            return False

        self.wait(active, f"slot {slot} active on {site}'s primary", interval=0.25)
        return {}


@step_kind("verify_write_visible")
class VerifyWriteVisible(Step):
    """A WAL record written on the new primary is replayed by every member of the old site. A
    logical message, not a table row: the tool leaves no object in the user's databases."""

    def gate(self) -> dict[str, Any]:
        from_site, to_site = self.args["from_site"], self.args["to_site"]
        writers = self.live.writable(from_site)
        if len(writers) != 1:
            raise PreflightError(f"{from_site} has {len(writers)} writable members, expected one")
        marker = self.live.emit_wal_message(writers[0], "migrator", "verify ")
        members = [m.name for m in self.live.site(to_site).members]
        missing = set(members)

        def replayed() -> bool:
            for name in list(missing):
                try:
                    value = self.live.replay_lsn(name)
                except UnreachableError:
                    continue
                if value is not None and value >= marker:
                    missing.discard(name)
            return not missing

        self.wait(
            replayed,
            f"every {to_site} member to replay the marker",
            interval=0.1,
            describe=lambda: f"waiting on {', '.join(sorted(missing))}",
        )
        return {"marker_lsn": marker, "replayed_by": members}
