"""Helpers shared by the tests: the write ledger, faults, site moves, secret scan, fuzz strategies,
snapshot fixtures."""
