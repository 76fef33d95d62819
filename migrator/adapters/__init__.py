"""Adapters: the only code that talks to Patroni, etcd, PostgreSQL and SSH."""
