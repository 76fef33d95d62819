#!/usr/bin/env bash
# The main job on the loopback testbed: bring it up, run migrate against it, bring it down.
# Called by `make demo`; the testbed always comes down, whatever happens in between.
set -uo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
MIGRATE="$VENV/bin/migrate"

trap '"$PY" -m tests.testbed down' EXIT
"$PY" -m tests.testbed up || exit 1
INVENTORY=${MIGRATOR_TESTBED_DIR:-/tmp/migrator-testbed}/inventory.yml
# The demo's journal lives and dies with its testbed, not in the user's ~/.local/state/migrator.
export MIGRATOR_STATE_DIR=${MIGRATOR_STATE_DIR:-${MIGRATOR_TESTBED_DIR:-/tmp/migrator-testbed}/state}

failed=0
run() {
    echo
    echo "\$ migrate $*"
    "$MIGRATE" "$@"
    local code=$?
    echo "(exit code $code)"
    [ "$code" -eq 0 ] || failed=1
}

run --version
run check --inventory "$INVENTORY"
run plan --inventory "$INVENTORY" --dc dc2
run execute --inventory "$INVENTORY" --dc dc2 --yes
run rollback --inventory "$INVENTORY" --yes

exit $failed
