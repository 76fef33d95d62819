"""What people read: the plan report and runbook, the status view, a run's outcome."""
