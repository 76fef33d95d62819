"""One self-described unit per step kind: its declaration in `kinds` (pure data, read by every
layer), its class (precheck/apply/gate/undo) in one module per step family, registered with
`@step_kind`; `registry.STEP_CLASSES` is what the engine runs.

This package's __init__ imports nothing, so reading `migrator.steps.kinds` never loads the
step classes and their adapters."""
