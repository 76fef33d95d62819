"""Re-point the target's standby cluster at the source's leader before the cut-over.

A target that follows a source replica (fixed `standby_cluster.host`, then an in-site switchover
on the source) still receives WAL by cascading, but every gate of the switchover measures from
the source's leader, whose slot for the target is inactive. Setting the host list of all source
members makes Patroni reconnect with target_session_attrs=read-write, i.e. to the leader.
"""

from __future__ import annotations

from typing import Any

from migrator.errors import UnsafeStateError
from migrator.steps.base import Step, step_kind
from migrator.steps.follow import member_by_host


@step_kind("repoint_standby_cluster")
class RepointStandbyCluster(Step):
    def _section(self) -> dict[str, Any]:
        return self.live.config(self.args["site"]).get("standby_cluster") or {}

    def precheck(self) -> bool:
        wanted, section = self.args["standby_cluster"], self._section()
        if not section:
            # Promoted since (a resumed run re-checks its done steps): nothing left to re-point.
            # On a first run the gate, which needs a standby leader, fails and the run undoes.
            return True
        return (section.get("host"), section.get("port")) == (wanted["host"], wanted["port"])

    def apply(self) -> dict[str, Any]:
        section = self._section()
        if not section:
            raise UnsafeStateError(
                f"{self.args['site']} is no longer a standby cluster, so it is not re-pointed; "
                "look with `migrate status` before anything else "
                "(runbooks/standby-follows-replica.md)"
            )
        previous = {"host": section.get("host"), "port": section.get("port")}
        # Nested keys merge in PATCH /config: only host and port change, slot and methods stay.
        self.live.patch_config(self.args["site"], {"standby_cluster": self.args["standby_cluster"]})
        return {"previous_standby_cluster": previous}

    def gate(self) -> dict[str, Any]:
        site, source, slot = self.args["site"], self.args["follows"], self.args["slot"]
        seen = {"why": ""}

        def follows_leader() -> bool:
            leaders = [n for n, r in self.live.site_roles(site).items() if r == "standby_leader"]
            writers = self.live.writable(source)
            if len(leaders) != 1 or len(writers) != 1:
                seen["why"] = f"standby leader(s) {leaders or 'none'}, primary {writers or 'none'}"
                return False
            receiver = self.live.wal_receiver(leaders[0])
            status = receiver.status if receiver else "absent"
            sender = receiver.sender_host if receiver else None
            used_slot = receiver.slot_name if receiver else None
            upstream = member_by_host(self, source).get(sender, sender) if sender is not None else None
            seen["why"] = f"{leaders[0]} WAL receiver {status} from {upstream} over slot {used_slot}"
            if status != "streaming" or upstream != writers[0] or used_slot != slot:
                return False
            active = self.live.slot_active(writers[0], slot)
            seen["why"] = f"{leaders[0]} streams from {writers[0]} over slot {slot}"
            return active

        self.wait(
            follows_leader,
            f"{site}'s standby leader to stream from {source}'s leader",
            interval=0.25,
            describe=lambda: seen["why"],
        )
        return {"follows": seen["why"]}

    def undo(self, facts: dict[str, Any]) -> bool:
        """Put back the host and port this run replaced (before the promotion only: the engine
        never undoes past it), so the site is exactly as the operator left it."""
        previous = facts.get("previous_standby_cluster")
        if not previous:
            return False
        if not self._section():
            raise UnsafeStateError(
                f"{self.args['site']} is no longer a standby cluster, so its old standby_cluster "
                "host is not put back; look with `migrate status` "
                "(runbooks/standby-follows-replica.md)"
            )
        self.live.patch_config(self.args["site"], {"standby_cluster": previous})
        return True
