"""The step classes the engine runs, by kind. Importing the step families registers their classes
(`@step_kind` in migrator/steps/base.py); a family module that is not imported here is not run."""

from __future__ import annotations

from migrator.steps import (  # noqa: F401 - imported for their @step_kind registrations
    dynamic_config,
    fence,
    follow,
    paused,
    preseed,
    reattach,
    repoint_target,
    seed,
    standby_leader,
    switchover,
)
from migrator.steps.base import REGISTERED, Step

STEP_CLASSES: dict[str, type[Step]] = dict(REGISTERED)
