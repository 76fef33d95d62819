"""migrator: move the primary role of a Patroni-managed PostgreSQL service between sites."""

__version__ = "0.1.0"
