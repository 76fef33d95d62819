"""The testbed's stand-in for a service manager: `<base>/bin/patroni-service start|stop MEMBER`.

Real hosts start Patroni with `systemctl start patroni`; the testbed's inventory names this script
instead, so that `migrate` starts a member over SSH exactly as it would in production, and the
Patroni it starts runs as the `postgres` user with its pid in the testbed's registry (so
`python -m tests.testbed down` stops it like any other).
"""

from __future__ import annotations

import sys
from pathlib import Path

from .topology import NET

SCRIPT_NAME = "patroni-service"


def write_service_script(base: Path, repo_root: Path, patroni_version: str) -> Path:
    directory = base / "bin"
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    script = directory / SCRIPT_NAME
    script.write_text(
        "#!/bin/sh\n"
        "# patroni-service start|stop MEMBER: start or stop one testbed member's Patroni.\n"
        'case "$1" in start|stop) ;; *) echo "usage: $0 start|stop MEMBER" >&2; exit 2;; esac\n'
        f"cd {repo_root} && exec env MIGRATOR_TESTBED_DIR={base} MIGRATOR_TESTBED_NET={NET} "
        f"MIGRATOR_TESTBED_PATRONI={patroni_version} {sys.executable} -m tests.testbed "
        f'"$1-member" "$2" --base {base} --patroni-version {patroni_version}\n')
    script.chmod(0o755)
    return script
