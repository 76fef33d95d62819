"""The real two-site Patroni testbed (etcd, Patroni, PostgreSQL 15, sshd on loopback)."""

from .testbed import Testbed, TestbedError, wait_until
from .topology import MEMBER_BY_NAME, SITE_BY_NAME, SITES

__all__ = ["Testbed", "TestbedError", "wait_until", "SITES", "SITE_BY_NAME", "MEMBER_BY_NAME"]
