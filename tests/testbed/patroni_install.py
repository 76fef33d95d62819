"""A Patroni of a given version in its own venv, readable by the `postgres` OS user.

The venv is built from Debian's /usr/bin/python3: a Python under root's home directory is not
readable by `postgres`. It lives outside the checkout because a CI clone may sit under a
directory that only root can enter.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from .topology import PATRONI_VENVS_DIR

SYSTEM_PYTHON = "/usr/bin/python3"


def patroni_venv(version: str) -> Path:
    return PATRONI_VENVS_DIR / f"patroni-{version}"


def patroni_bin(version: str) -> Path:
    return patroni_venv(version) / "bin" / "patroni"


def installed_version(version: str) -> str | None:
    binary = patroni_bin(version)
    if not binary.exists():
        return None
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    return out.stdout.split()[-1] if out.returncode == 0 and out.stdout.strip() else None


def ensure_patroni(version: str) -> Path:
    """Install Patroni `version` (with etcd3 support and psycopg 3) unless it is already there."""
    if installed_version(version) == version:
        return patroni_bin(version)
    venv = patroni_venv(version)
    PATRONI_VENVS_DIR.mkdir(parents=True, exist_ok=True)
    PATRONI_VENVS_DIR.chmod(0o755)
    print(f"testbed: installing Patroni {version} into {venv}", file=sys.stderr, flush=True)
    subprocess.run([SYSTEM_PYTHON, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run(pip + [f"patroni[etcd3]=={version}", "psycopg[binary]>=3.2,<3.4"], check=True)
    if installed_version(version) != version:
        raise RuntimeError(f"Patroni {version} did not install into {venv}")
    return patroni_bin(version)
