"""Drive the testbed by hand: python -m tests.testbed up|down|status|restore|install-patroni.

`up --services N` (or `restore --services N` on a running testbed) adds the extra services
svc1..svcN beside demo (tests/testbed/services.py)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from .patroni_install import ensure_patroni
from .services import MAX_SERVICES, extra_services, inventory_file, service_member
from .testbed import Testbed, TestbedError
from .topology import DEFAULT_BASE_DIR, DEFAULT_PATRONI_VERSION, KNOWN_MEMBERS, MEMBER_BY_NAME


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
    parser.add_argument("--services", type=int, default=0, metavar="N",
                        help=f"for up / restore: also the extra services svc1..svcN (N <= {MAX_SERVICES})")
    args = parser.parse_args(argv)
    if not 0 <= args.services <= MAX_SERVICES:
        print(f"testbed: --services {args.services}: give 0 to {MAX_SERVICES}", file=sys.stderr)
        return 2
    testbed = Testbed(args.base, args.patroni_version)
    try:
        if args.command == "install-patroni":
            print(ensure_patroni(args.patroni_version))
        elif args.command == "up":
            seconds = testbed.up(dc2_cluster=not args.no_dc2_cluster)
            print(f"testbed up in {seconds:.1f}s; inventory: {testbed.inventory_path}")
            if args.services:
                _up_services(testbed, args.services)
        elif args.command == "down":
            testbed.down()
            print("testbed down")
        elif args.command in ("start-member", "stop-member"):
            member = KNOWN_MEMBERS.get(args.member or "") or service_member(args.member or "")
            if member is None:
                print(f"testbed: no member {args.member!r}; members: {', '.join(MEMBER_BY_NAME)}"
                      ", svc<k>-dc1-a, svc<k>-dc2-a", file=sys.stderr)
                return 2
            if args.command == "start-member":
                testbed.start_patroni(member)
            else:
                testbed.stop_patroni(member)
        elif args.command == "restore":
            print(f"testbed baseline: {testbed.restore_baseline()}")
            if args.services:
                _up_services(testbed, args.services)
        else:
            print(json.dumps(testbed.status(), indent=2, default=str))
    except TestbedError as exc:
        print(f"testbed: {exc}", file=sys.stderr)
        return 1
    return 0


def _up_services(testbed: Testbed, count: int) -> None:
    started = time.monotonic()
    how = testbed.up_services(count)
    print(f"extra services in {time.monotonic() - started:.1f}s: "
          + ", ".join(f"{name} {state}" for name, state in how.items()))
    for service in extra_services(count):
        print(f"  {service.name}: {inventory_file(testbed.base, service)}")


if __name__ == "__main__":
    sys.exit(main())
