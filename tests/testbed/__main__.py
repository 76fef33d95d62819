"""Drive the testbed by hand: python -m tests.testbed up|down|status|install-patroni."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .patroni_install import ensure_patroni
from .testbed import Testbed, TestbedError
from .topology import DEFAULT_BASE_DIR, DEFAULT_PATRONI_VERSION, MEMBER_BY_NAME


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.testbed", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status", "restore", "install-patroni",
                                            "start-member", "stop-member"])
    parser.add_argument("member", nargs="?", help="for start-member / stop-member: the member name")
    parser.add_argument("--base", type=Path, default=DEFAULT_BASE_DIR,
                        help=f"where data, logs and keys go (default {DEFAULT_BASE_DIR})")
    parser.add_argument("--patroni-version", default=DEFAULT_PATRONI_VERSION)
    parser.add_argument("--no-dc2-cluster", action="store_true",
                        help="bring up dc2's hosts (addresses, sshd, etcd, directories) but no cluster")
    args = parser.parse_args(argv)
    testbed = Testbed(args.base, args.patroni_version)
    try:
        if args.command == "install-patroni":
            print(ensure_patroni(args.patroni_version))
        elif args.command == "up":
            seconds = testbed.up(dc2_cluster=not args.no_dc2_cluster)
            print(f"testbed up in {seconds:.1f}s; inventory: {testbed.inventory_path}")
        elif args.command == "down":
            testbed.down()
            print("testbed down")
        elif args.command in ("start-member", "stop-member"):
            if args.member not in MEMBER_BY_NAME:
                print(f"testbed: no member {args.member!r}; members: {', '.join(MEMBER_BY_NAME)}",
                      file=sys.stderr)
                return 2
            member = MEMBER_BY_NAME[args.member]
            if args.command == "start-member":
                testbed.start_patroni(member)
            else:
                testbed.stop_patroni(member)
        elif args.command == "restore":
            print(f"testbed baseline: {testbed.restore_baseline()}")
        else:
            print(json.dumps(testbed.status(), indent=2, default=str))
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
