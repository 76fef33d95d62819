"""Plain data: the inventory, secrets, the observed snapshot, findings, plans and playbooks. No I/O
beyond reading the files they are loaded from."""
