"""Running a plan: the engine, the execute/rollback commands around it, the journal, the lock, the
DCS hold, hooks."""
