"""Set top-level keys of a site's dynamic config (e.g. synchronous mode) and wait until Patroni
serves them back; the undo PATCHes back the values this run replaced."""

from __future__ import annotations

from typing import Any

from migrator.steps.base import Step, step_kind


@step_kind("set_dynamic_config")
class SetDynamicConfig(Step):
    def _differs(self, config: dict[str, Any]) -> dict[str, Any]:
        # null in the settings means "absent", as in a PATCH /config.
        return {k: v for k, v in self.args["settings"].items() if config.get(k) != v}

    def precheck(self) -> bool:
        return not self._differs(self.live.config(self.args["site"]))

    def apply(self) -> dict[str, Any]:
        config = self.live.config(self.args["site"])
        previous = {k: config.get(k) for k in self.args["settings"]}
        self.live.patch_config(self.args["site"], self.args["settings"])
        return {"previous_settings": previous}

    def gate(self) -> dict[str, Any]:
        site = self.args["site"]
        seen: dict[str, Any] = {"differs": {}}

        def served() -> bool:
            seen["differs"] = self._differs(self.live.config(site))
            return not seen["differs"]

        self.wait(
            served,
            f"{site}'s dynamic config to show {self.args['settings']}",
            interval=0.2,
            describe=lambda: f"still different: {sorted(seen['differs'])}",
        )
        return {"settings": self.args["settings"]}

    def undo(self, facts: dict[str, Any]) -> bool:
        previous = facts.get("previous_settings")
        if previous is None:
            return False  # this run changed nothing here
        self.live.patch_config(self.args["site"], previous)
        return True
