"""One class per step kind of the playbooks; the engine looks them up by kind."""

from __future__ import annotations

from migrator.steps.base import Step
from migrator.steps.dynamic_config import SetDynamicConfig
from migrator.steps.follow import (
    VerifySingleWriter, VerifySlotsActive, VerifyWriteVisible, WaitCascade, WaitRepoint,
)
from migrator.steps.paused import PauseSite, ResumeAsStandby, StopPostgres, WaitPatroniStopped
from migrator.steps.preseed import (
    EnsurePermanentSlot, ProveReplicationAccess, RunPreflight, ValidateStandbyCluster,
)
from migrator.steps.seed import (
    RunSeedPreflight, StartSeedLeader, StartSeedReplicas, WipeTarget, WritePatroniConfigs,
)
from migrator.steps.repoint_target import RepointStandbyCluster
from migrator.steps.standby_leader import VerifyPromotionPoint
from migrator.steps.switchover import DemoteSite, PromoteSite, ProveNotWritable, ReadToken, WaitReplayPastToken

STEP_CLASSES: dict[str, type[Step]] = {cls.kind: cls for cls in (
    RunPreflight, EnsurePermanentSlot, ProveReplicationAccess, ValidateStandbyCluster, WaitCascade,
    DemoteSite, ProveNotWritable, ReadToken, WaitReplayPastToken, PromoteSite, WaitRepoint,
    VerifySingleWriter, VerifySlotsActive, VerifyWriteVisible,
    PauseSite, StopPostgres, WaitPatroniStopped, ResumeAsStandby,
    RunSeedPreflight, WritePatroniConfigs, StartSeedLeader, StartSeedReplicas, WipeTarget,
    RepointStandbyCluster, SetDynamicConfig, VerifyPromotionPoint,
)}
