"""The `migrate` command line.

Every command first loads and validates the inventory, then hands over to one small
`run_<command>` function. `main()` is the console entry: it turns every error into one line on
stderr and the exit code of migrator/errors.py.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
from typer.main import get_command

from migrator import __version__
from migrator.durable import write_private
from migrator.errors import (
    SHOWN_VALUE_LIMIT,
    InventoryError,
    MigratorError,
    UsageError,
    one_line,
    shown,
)
from migrator.model.inventory import Inventory, load_inventory
from migrator.output_options import color_wanted, hoist, remember_secrets
from migrator.output_options import console as rich_console
from migrator.run.state_dir import resolve_state_base

try:  # typer >= 0.2x vendors click; older releases use the click package
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - depends on the installed typer
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

PROG = "migrate"
EXIT_INTERRUPTED = 130

app = typer.Typer(
    name=PROG,
    help="Move the primary role of a Patroni-managed PostgreSQL service between sites, with no lost commit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


class OutputFormat(str, Enum):  # noqa: UP042 - StrEnum changes str() of a member; output stays as is
    text = "text"
    md = "md"
    json = "json"
    runbook = "runbook"


InventoryOption = Annotated[
    Path,
    typer.Option(
        "--inventory",
        "-i",
        envvar="MIGRATOR_INVENTORY",
        metavar="FILE",
        help="Inventory YAML (also from MIGRATOR_INVENTORY).",
    ),
]
TargetSiteOption = Annotated[str, typer.Option("--dc", metavar="NAME", help="The site that becomes primary.")]
YesOption = Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")]
StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        metavar="DIR",
        help="Where the journal, plans and lock are kept, per service (default: MIGRATOR_STATE_DIR, "
        "else $XDG_STATE_HOME/migrator, else ~/.local/state/migrator).",
    ),
]


RecloneOption = Annotated[
    list[str] | None,
    typer.Option(
        "--reclone",
        metavar="MEMBER",
        help="reattach: re-clone this old-site member (data moved aside, never deleted) instead of "
        "rewinding or keeping it; repeatable.",
    ),
]


class RunFormat(str, Enum):  # noqa: UP042 - as OutputFormat
    text = "text"
    json = "json"


RunFormatOption = Annotated[
    RunFormat,
    typer.Option("--format", help="text, or json: one document on stdout (docs/output.md), progress on stderr."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Same as --format json.")]


def _print_version(value: bool) -> None:
    if value:
        print(f"{PROG} {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="Log to stderr: -v events, -vv every call.")
    ] = 0,
    log_file: Annotated[
        Path | None, typer.Option("--log-file", metavar="FILE", help="Log everything (masked) to this file.")
    ] = None,
    no_color: Annotated[bool, typer.Option("--no-color", help="No colour (as NO_COLOR=1).")] = False,
) -> None:
    """Move the primary role of a Patroni-managed PostgreSQL service between sites."""
    from migrator.output_options import disable_color, setup_logging

    if no_color:
        disable_color()
    setup_logging(verbose, log_file)


def _load(inventory_file: Path) -> Inventory:
    loaded = load_inventory(inventory_file)
    remember_secrets(loaded.secrets())  # every log line is masked with them
    return loaded


# --- commands: parse, validate, hand over ----------------------------------------------------


@app.command()
def plan(
    inventory: InventoryOption,
    dc: TargetSiteOption,
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Report format.")] = OutputFormat.text,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="Also write the plan as JSON here (for --plan and `migrate show`)."),
    ] = None,
    state_dir: StateDirOption = None,
    failover: Annotated[
        bool, typer.Option("--failover", help="Plan a failover to --dc: the source is failing (runbooks/failover.md).")
    ] = False,
    fenced: FencedOption = None,
    accept_data_loss: AcceptDataLossOption = False,
    reattach: Annotated[
        bool, typer.Option("--reattach", help="Plan making --dc (the old primary site) a standby of the new primary.")
    ] = False,
    reclone: RecloneOption = None,
) -> int:
    """Observe both sites and write the switchover plan (changes nothing)."""
    loaded = _load(inventory)
    loaded.site(dc)
    if failover and reattach:
        raise UsageError(
            "--failover and --reattach plan opposite moves (promote --dc / make --dc a standby); give one of them"
        )
    if failover:
        return run_failover_plan(loaded, dc, output_format, out, fenced or [], accept_data_loss)
    if reclone and not reattach:
        raise UsageError("--reclone goes with --reattach (it names old-site members to re-clone)")
    code = run_plan(loaded, dc, output_format, out, reattach, tuple(reclone or ()))
    if output_format is OutputFormat.text:  # any other format is a document: nothing beside it
        sys.stdout.write(f"{_state_line(state_dir, loaded.service)}\n{_runbooks_line()}\n")
    return code


@app.command()
def show(
    plan_file: Annotated[
        Path,
        typer.Argument(metavar="PLAN_FILE", help="A plan written by `migrate plan --out` (or `--failover --out`)."),
    ],
    output_format: Annotated[OutputFormat, typer.Option("--format", help="Report format.")] = OutputFormat.text,
) -> int:
    """Render a saved plan for review (contacts no site)."""
    from migrator.render.show import show_plan

    result = show_plan(plan_file, output_format.value, color=color_wanted())
    sys.stdout.write(result.text)
    sys.stderr.write("".join(f"{w}\n" for w in result.warnings))
    return result.exit_code


class CheckFormat(str, Enum):  # noqa: UP042 - as OutputFormat
    text = "text"
    json = "json"
    prometheus = "prometheus"
    nagios = "nagios"


@app.command()
def check(
    inventory: InventoryOption,
    json_output: Annotated[bool, typer.Option("--json", help="Machine output only.")] = False,
    dc: Annotated[
        str | None, typer.Option("--dc", metavar="NAME", help="Target site (default: the other site).")
    ] = None,
    output_format: Annotated[
        CheckFormat,
        typer.Option("--format", help="text, json, prometheus (textfile collector) or nagios (plugin exit codes)."),
    ] = CheckFormat.text,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="FILE", help="prometheus: write the metrics here, atomically (a .prom file)."),
    ] = None,
) -> int:
    """Run the preflight checks only (changes nothing)."""
    if output_format in (CheckFormat.prometheus, CheckFormat.nagios):
        from migrator.run.probe import run_probe

        return run_probe(inventory, output_format.value, dc, out)
    return run_check(_load(inventory), json_output or output_format is CheckFormat.json, dc)


@app.command()
def status(
    inventory: InventoryOption,
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until interrupted.")] = False,
    state_dir: StateDirOption = None,
    output_format: RunFormatOption = RunFormat.text,
    json_output: JsonOption = False,
) -> None:
    """Show both sites side by side."""
    loaded = _load(inventory)
    as_json = json_output or output_format is RunFormat.json
    run_status(loaded, watch, as_json=as_json, state_line=None if as_json else _state_line(state_dir, loaded.service))


@app.command()
def execute(
    inventory: InventoryOption,
    dc: TargetSiteOption,
    plan_file: Annotated[
        Path | None,
        typer.Option("--plan", metavar="FILE", help="Run this saved plan (refused if stale)."),
    ] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    yes: YesOption = False,
    state_dir: StateDirOption = None,
    until: Annotated[
        str | None,
        typer.Option(
            "--until",
            metavar="PHASE",
            help="Stop after this phase (e.g. cascade: seed and stream now, cut over later).",
        ),
    ] = None,
    output_format: RunFormatOption = RunFormat.text,
    json_output: JsonOption = False,
) -> int:  # the exit code, which run() returns
    """Move the primary role to --dc, step by step, with gates."""
    loaded = _load(inventory)
    loaded.site(dc)
    as_json = json_output or output_format is RunFormat.json
    return run_execute(loaded, dc, plan_file, resume, yes, resolve_state_base(state_dir).path, until, as_json)


# --- failover (issue 12): the source site is failing ------------------------------------------
FencedOption = Annotated[
    list[str] | None,
    typer.Option("--fenced", metavar="MEMBER", help="A source member fenced by other means (powered off...)."),
]
AcceptDataLossOption = Annotated[
    bool,
    typer.Option("--accept-data-loss", help="Promote although the target lacks WAL the source had (recorded)."),
]


@app.command()
def failover(
    inventory: InventoryOption,
    dc: TargetSiteOption,
    fenced: FencedOption = None,
    accept_data_loss: AcceptDataLossOption = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted failover.")] = False,
    yes: YesOption = False,
    state_dir: StateDirOption = None,
    output_format: RunFormatOption = RunFormat.text,
    json_output: JsonOption = False,
) -> int:
    """The source site is failing: fence it, prove what --dc has, promote --dc (runbooks/failover.md)."""
    loaded = _load(inventory)
    loaded.site(dc)
    as_json = json_output or output_format is RunFormat.json
    return run_failover(
        loaded, dc, fenced or [], accept_data_loss, resume, yes, resolve_state_base(state_dir).path, as_json
    )


def run_failover_plan(
    inventory: Inventory, dc: str, output_format: OutputFormat, out: Path | None, fenced: list[str], accept: bool
) -> int:
    from migrator.model.secrets import mask
    from migrator.render.failover_report import render_failover
    from migrator.run.failover import observe_and_plan_failover

    found = observe_and_plan_failover(inventory, dc, fenced, accept)
    text = mask(render_failover(found, output_format.value), inventory.secrets())
    sys.stdout.write(text)
    if out is not None:
        write_private(out, mask(render_failover(found, "json"), inventory.secrets()))
        sys.stderr.write(f"failover plan written to {out} (fingerprint {found.plan.fingerprint[:12]})\n")
    return 0 if found.executable else 1


def run_failover(
    inventory: Inventory,
    dc: str,
    fenced: list[str],
    accept_data_loss: bool,
    resume: bool,
    yes: bool,
    state_dir: Path,
    as_json: bool = False,
) -> int:
    from migrator.render.run_json import errors_as_document
    from migrator.run.failover import failover as run

    console = _console(stderr=as_json)
    _print_trust_warnings(console, inventory)
    with errors_as_document(as_json, "failover", inventory.service, inventory.secrets(), _trust_warnings(inventory)):
        outcome = run(
            inventory,
            dc,
            state_dir,
            fenced,
            accept_data_loss,
            resume,
            _confirmer(console, yes, "fail over"),
            _progress(console),
        )
    return _finish(console, inventory, state_dir, outcome, "failover" if as_json else None)


@app.command()
def rollback(
    inventory: InventoryOption,
    yes: YesOption = False,
    state_dir: StateDirOption = None,
    output_format: RunFormatOption = RunFormat.text,
    json_output: JsonOption = False,
) -> int:  # the exit code, which run() returns
    """Undo an interrupted or failed migration."""
    as_json = json_output or output_format is RunFormat.json
    return run_rollback(_load(inventory), yes, resolve_state_base(state_dir).path, as_json)


@app.command()
def reattach(
    inventory: InventoryOption,
    dc: Annotated[str, typer.Option("--dc", metavar="NAME", help="The old primary site to bring back as a standby.")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted reattach.")] = False,
    yes: YesOption = False,
    state_dir: StateDirOption = None,
    output_format: RunFormatOption = RunFormat.text,
    json_output: JsonOption = False,
    reclone: RecloneOption = None,
) -> int:  # the exit code, which run() returns
    """After a failover: make --dc a standby cluster of the new primary, never writable on the way."""
    loaded = _load(inventory)
    loaded.site(dc)
    as_json = json_output or output_format is RunFormat.json
    return run_reattach(loaded, dc, resume, yes, resolve_state_base(state_dir).path, as_json, tuple(reclone or ()))


@app.command()
def runbook(
    page: Annotated[
        str | None,
        typer.Argument(
            metavar="[PAGE[#SECTION]]", help="e.g. runbooks/switchover.md#phase-demote, as a report links it."
        ),
    ] = None,
) -> None:
    """Print a runbook page (or one section); without PAGE, list the pages and where they are."""
    from migrator.render.runbook_page import runbook_index, runbook_page

    sys.stdout.write(runbook_page(page) if page else runbook_index())


def _state_line(state_dir: Path | None, service: str) -> str:
    """Where `execute` and `rollback` keep this service's state, in one line (creates nothing)."""
    try:
        return resolve_state_base(state_dir).describe(service)
    except UsageError as exc:  # no home directory: only a run needs one
        return f"state: none yet ({exc})"


def _runbooks_line() -> str:
    from migrator.resources import shipped_dir

    return f"runbooks: {shipped_dir('runbooks')} (`migrate runbook PAGE` prints one)"


@app.command()
def init(
    site: Annotated[
        list[str], typer.Option("--site", metavar="NAME=URL", help="A site and one of its Patroni REST URLs (twice).")
    ],
    out: Annotated[Path | None, typer.Option("--out", metavar="FILE", help="Write here (default: stdout).")] = None,
    dcs: Annotated[
        list[str] | None, typer.Option("--dcs", metavar="NAME=URL", help="A site's etcd client URL (repeatable).")
    ] = None,
    service: Annotated[str | None, typer.Option("--service", metavar="NAME", help="The service's name.")] = None,
    superuser_password: Annotated[
        str | None,
        typer.Option("--superuser-password", metavar="REF", help="env:NAME or file:PATH (also reads paths)."),
    ] = None,
    replication_password: Annotated[
        str | None, typer.Option("--replication-password", metavar="REF", help="env:NAME or file:PATH.")
    ] = None,
    rest_password: Annotated[
        str | None, typer.Option("--rest-password", metavar="REF", help="env:NAME or file:PATH.")
    ] = None,
    rest_ca_file: Annotated[
        Path | None, typer.Option("--rest-ca-file", metavar="FILE", help="CA of https REST URLs.")
    ] = None,
    ssh_user: Annotated[str | None, typer.Option("--ssh-user", metavar="USER")] = None,
    ssh_port: Annotated[int | None, typer.Option("--ssh-port", metavar="PORT", min=1, max=65535)] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
) -> int:
    """Discover both sites from Patroni's REST API and write a commented inventory."""
    from migrator.run.init import run_init

    return run_init(site, out, dcs or [], service, superuser_password, replication_password, rest_password,
                    rest_ca_file, ssh_user, ssh_port, force)  # fmt: skip


inventory_app = typer.Typer(help="About the inventory file itself.", no_args_is_help=True)
app.add_typer(inventory_app, name="inventory")


@inventory_app.command("schema")
def inventory_schema() -> None:
    """Print the inventory's JSON Schema (for editors that validate YAML)."""
    from migrator.model.reference import json_schema_text

    sys.stdout.write(json_schema_text())


fleet_app = typer.Typer(help="Many services at once: a fleet file, its plan (docs/fleet.md).", no_args_is_help=True)
app.add_typer(fleet_app, name="fleet")


class FleetFormat(str, Enum):  # noqa: UP042 - as OutputFormat
    text = "text"
    md = "md"
    json = "json"


@fleet_app.command("plan")
def fleet_plan(
    fleet: Annotated[Path, typer.Option("--fleet", metavar="FILE", help="Fleet YAML (docs/fleet.md).")],
    dc: TargetSiteOption,
    output_format: Annotated[FleetFormat, typer.Option("--format", help="Report format.")] = FleetFormat.text,
    out: Annotated[
        Path | None, typer.Option("--out", metavar="FILE", help="Also write the fleet plan as JSON here.")
    ] = None,
    skip_blocked: Annotated[
        bool, typer.Option("--skip-blocked", help="Plan without the blocked services (exit 0), saying so.")
    ] = False,
) -> int:
    """Observe every service of the fleet and write one fleet plan (changes nothing)."""
    from migrator.render.fleet_report import render
    from migrator.run.fleet_plan import run_fleet_plan

    color = color_wanted()

    def report(plan, fmt: str) -> str:
        return render(plan, fmt, color=color and fmt == "text")

    return run_fleet_plan(fleet, dc, output_format.value, out, skip_blocked, report, remember_secrets)


@fleet_app.command("status")
def fleet_status(
    fleet: Annotated[Path, typer.Option("--fleet", metavar="FILE", help="Fleet YAML (docs/fleet.md).")],
    watch: Annotated[bool, typer.Option("--watch", help="Refresh until interrupted.")] = False,
    output_format: RunFormatOption = RunFormat.text,
    json_output: JsonOption = False,
) -> int:
    """Both sites of every service, one row each; exit 0 healthy, 1 degraded or unobserved, 4 split brain."""
    from migrator.render.fleet_status import FleetStatusView
    from migrator.run.fleet_status import run_fleet_status

    as_json = json_output or output_format is RunFormat.json
    view = FleetStatusView(as_json=as_json, watch=watch, color=color_wanted(), console=rich_console())

    def remember(secrets: list[str]) -> None:
        remember_secrets(secrets)
        view.remember(secrets)

    try:
        return run_fleet_status(fleet, watch, view, remember)
    finally:
        view.close()


# --- fleet execute / rollback (migrator/run/fleet_run.py): many ordinary runs, one report ------

FleetFileOption = Annotated[Path, typer.Option("--fleet", metavar="FILE", help="Fleet YAML (docs/fleet.md).")]
ParallelOption = Annotated[
    int | None,
    typer.Option("--parallel", metavar="N", min=1, max=64, help="Services at a time (default: the fleet's)."),
]


@fleet_app.command("execute")
def fleet_execute(
    fleet: FleetFileOption,
    dc: TargetSiteOption,
    plan_file: Annotated[
        Path | None,
        typer.Option("--plan", metavar="FILE", help="A reviewed fleet plan (`fleet plan --out`); stale rows refused."),
    ] = None,
    parallel: ParallelOption = None,
    yes: YesOption = False,
    skip_blocked: Annotated[
        bool, typer.Option("--skip-blocked", help="Leave services blocked at start untouched (not a failure).")
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue a fleet run whose process was killed.")] = False,
    state_dir: StateDirOption = None,
    output_format: RunFormatOption = RunFormat.text,
) -> int:
    """Move every service of the fleet to --dc, wave by wave, a few at a time, with one report."""
    from migrator.run.fleet_run import FleetRequest, run_fleet_execute

    request = FleetRequest(fleet, resolve_state_base(state_dir).path, dc, plan_file, parallel, yes, skip_blocked,
                           resume)  # fmt: skip
    view, renderers, ask, interactive = _fleet_io(f"fleet execute -> {dc}")
    summary = run_fleet_execute(request, view, renderers, ask, interactive, remember_secrets)
    return _fleet_finish(summary, output_format)


@fleet_app.command("rollback")
def fleet_rollback(
    fleet: FleetFileOption,
    yes: YesOption = False,
    parallel: ParallelOption = None,
    service: Annotated[
        list[str] | None,
        typer.Option("--service", metavar="NAME", help="Only this service (repeatable): roll back a subset."),
    ] = None,
    state_dir: StateDirOption = None,
    output_format: RunFormatOption = RunFormat.text,
) -> int:
    """Move back every service the latest `fleet execute` moved, with the same zero-loss protocol."""
    from migrator.run.fleet_run import FleetRequest, run_fleet_rollback

    request = FleetRequest(fleet, resolve_state_base(state_dir).path, parallel=parallel, yes=yes,
                           only=tuple(service or ()))  # fmt: skip
    view, renderers, ask, interactive = _fleet_io("fleet rollback")
    summary = run_fleet_rollback(request, view, renderers, ask, interactive, remember_secrets)
    return _fleet_finish(summary, output_format)


def _fleet_io(title: str):
    from migrator.render import fleet_run_report
    from migrator.render.fleet_live import fleet_view
    from migrator.run.fleet_run import FleetRenderers

    console = _console(stderr=True)  # stdout holds the fleet report (or its JSON document) only
    interactive = sys.stdin.isatty()

    def ask(question: str) -> bool:
        return typer.confirm(question, default=False, err=True)

    renderers = FleetRenderers(markdown=fleet_run_report.markdown, gantt=fleet_run_report.gantt)
    return (lambda: fleet_view(console, console.is_terminal, title)), renderers, ask, interactive


def _fleet_finish(summary, output_format: RunFormat) -> int:
    from migrator.render import fleet_run_report

    if output_format is RunFormat.json:
        sys.stdout.write(json.dumps(summary.as_json(), indent=2) + "\n")
    else:
        sys.stdout.write(fleet_run_report.text(summary))
        sys.stdout.write(f"report: {summary.report_file}; journal: {summary.journal_file}\n")
    sys.stdout.flush()
    if summary.exit_code != 0:
        sys.stderr.write(f"{PROG}: error: {fleet_run_report.headline(summary)}; see {summary.report_file}\n")
    return summary.exit_code


@fleet_app.command("schema")
def fleet_schema() -> None:
    """Print the fleet file's JSON Schema."""
    from migrator.model.fleet_reference import json_schema_text

    sys.stdout.write(json_schema_text())


# --- command bodies: each one is replaced as the engine lands ----------------------------------


def run_plan(
    inventory: Inventory,
    dc: str,
    output_format: OutputFormat,
    out: Path | None,
    reattach: bool = False,
    reclone: tuple[str, ...] = (),
) -> int:
    from migrator.model.secrets import mask
    from migrator.planning.preflight import observe_and_plan
    from migrator.planning.reattach import observe_and_plan_reattach
    from migrator.render.plan_report import render, render_runbook

    the_plan = observe_and_plan_reattach(inventory, dc, reclone) if reattach else observe_and_plan(inventory, dc)
    # Dynamic configs are copied verbatim into plans; a password someone put in, say,
    # archive_command must still not reach a report.
    if output_format is OutputFormat.runbook:
        text = mask(render_runbook(the_plan), inventory.secrets())
    else:
        text = mask(render(the_plan, output_format.value, color=color_wanted()), inventory.secrets())
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    if out is not None:
        # Always the JSON plan, whatever was printed: `execute --plan` and `migrate show` read it.
        write_private(out, mask(render(the_plan, "json"), inventory.secrets()))
        sys.stderr.write(
            f"plan for {the_plan.source} -> {the_plan.target} written to {out} "
            f"(fingerprint {the_plan.fingerprint[:12]}, "
            f"{'executable' if the_plan.executable else 'BLOCKED'}); review it with `migrate show {out}`\n"
        )
    return 0 if the_plan.executable else 1


def run_check(inventory: Inventory, json_output: bool, dc: str | None = None) -> int:
    """The preflight checks, decided as `migrate plan` decides them (planning.check_outcome): the
    same findings, the same proposed plan (a re-seed where the target's WAL is gone) and the
    same exit code."""
    from migrator.observe.observer import observe
    from migrator.planning.preflight import check_outcome
    from migrator.render.plan_report import render_findings

    state = observe(inventory)
    outcome = check_outcome(inventory, state, dc)
    findings = list(outcome.findings)
    warnings = _trust_warnings(inventory)
    if json_output:
        print(
            json.dumps(
                {
                    "service": inventory.service,
                    "source": outcome.source,
                    "target": outcome.target,
                    "observed_at": state.observed_at,
                    "findings": [f.model_dump(mode="json") for f in findings],
                    "blocking": len(outcome.blocking),
                    "plan": outcome.as_json(),
                    "warnings": warnings,
                },
                indent=2,
            )
        )
    else:
        sys.stdout.write(render_findings(findings, outcome.source, outcome.target, color=color_wanted()))
        sys.stdout.write(outcome.summary() + "\n")
        sys.stdout.write("".join(f"{w}\n" for w in warnings))
    return outcome.exit_code


def run_status(
    inventory: Inventory, watch: bool, interval: float = 2.0, as_json: bool = False, state_line: str | None = None
) -> None:
    from rich.live import Live

    from migrator.observe.observer import observe
    from migrator.render.run_json import dumps, status_document
    from migrator.render.status import render_status

    if as_json:  # one document; with --watch one per line (JSON lines) until Ctrl-C
        while True:
            sys.stdout.write(
                dumps(status_document(observe(inventory, host_facts=False)), inventory.secrets(), not watch)
            )
            sys.stdout.flush()
            if not watch:
                return
            time.sleep(interval)

    # Without a terminal rich assumes 80 columns; the side-by-side table needs more.
    console = rich_console()
    if state_line is not None:
        console.print(state_line, highlight=False, markup=False, soft_wrap=True)
    if not watch:
        console.print(render_status(observe(inventory, host_facts=False)))
        return
    with Live(render_status(observe(inventory, host_facts=False)), console=console, refresh_per_second=4) as live:
        while True:  # until Ctrl-C, which main() turns into exit 130
            time.sleep(interval)
            live.update(render_status(observe(inventory, host_facts=False)))


def run_execute(
    inventory: Inventory,
    dc: str,
    plan_file: Path | None,
    resume: bool,
    yes: bool,
    state_dir: Path,
    until: str | None = None,
    as_json: bool = False,
) -> int:
    from migrator.render.run_json import dumps, errors_as_document, noop_document
    from migrator.run.commands import execute

    console = _console(stderr=as_json)  # with --format json stdout holds the document only
    _print_trust_warnings(console, inventory)
    with errors_as_document(as_json, "execute", inventory.service, inventory.secrets(), _trust_warnings(inventory)):
        outcome = execute(
            inventory, dc, state_dir, plan_file, resume, _confirmer(console, yes, "execute"), _progress(console), until
        )
    if isinstance(outcome, str):
        console.print(f"nothing to do: {outcome}")
        if as_json:
            document = noop_document("execute", inventory.service, outcome, _trust_warnings(inventory))
            sys.stdout.write(dumps(document, inventory.secrets()))
        return 0
    return _finish(console, inventory, state_dir, outcome, "execute" if as_json else None)


def run_rollback(inventory: Inventory, yes: bool, state_dir: Path, as_json: bool = False) -> int:
    from migrator.render.run_json import errors_as_document
    from migrator.run.commands import rollback

    console = _console(stderr=as_json)
    _print_trust_warnings(console, inventory)
    with errors_as_document(as_json, "rollback", inventory.service, inventory.secrets(), _trust_warnings(inventory)):
        outcome = rollback(inventory, state_dir, _confirmer(console, yes, "roll back"), _progress(console))
    return _finish(console, inventory, state_dir, outcome, "rollback" if as_json else None)


def run_reattach(
    inventory: Inventory,
    dc: str,
    resume: bool,
    yes: bool,
    state_dir: Path,
    as_json: bool,
    reclone: tuple[str, ...] = (),
) -> int:
    from migrator.render.run_json import dumps, errors_as_document, noop_document
    from migrator.run.reattach import reattach

    console = _console(stderr=as_json)
    _print_trust_warnings(console, inventory)
    with errors_as_document(as_json, "reattach", inventory.service, inventory.secrets(), _trust_warnings(inventory)):
        outcome = reattach(
            inventory, dc, state_dir, resume, _confirmer(console, yes, "reattach"), _progress(console), reclone
        )
    if isinstance(outcome, str):
        console.print(f"nothing to do: {outcome}")
        if as_json:
            sys.stdout.write(
                dumps(
                    noop_document("reattach", inventory.service, outcome, _trust_warnings(inventory)),
                    inventory.secrets(),
                )
            )
        return 0
    return _finish(console, inventory, state_dir, outcome, "reattach" if as_json else None)


def _trust_warnings(inventory: Inventory) -> list[str]:
    from migrator.adapters.ssh import accepted_unverified_keys
    from migrator.rules.trust import (
        insecure_ssh_sites,
        insecure_transport_warnings,
        unknown_host_key_warnings,
    )

    accepted = [f"WARNING: accepted unverified SSH host key {key}" for key in accepted_unverified_keys]
    return (
        unknown_host_key_warnings(insecure_ssh_sites(inventory))
        + list(insecure_transport_warnings(inventory))
        + accepted
    )


def _print_trust_warnings(console, inventory: Inventory) -> None:
    for warning in _trust_warnings(inventory):
        # One line each, however wide the terminal: a script or a reviewer greps for them.
        console.print(warning, style="bold yellow", highlight=False, markup=False, soft_wrap=True)


def _console(stderr: bool = False):
    return rich_console(stderr)


def _progress(console):
    from rich.markup import escape

    started = time.monotonic()

    log = logging.getLogger("migrator.progress")

    def show(text: str) -> None:
        log.info("%s", text)
        console.print(f"[dim]{time.monotonic() - started:7.2f}s[/dim] {escape(text)}", highlight=False)

    return show


def _confirmer(console, yes: bool, verb: str):
    def confirm(plan) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to {verb} without a terminal to confirm on; review the plan and pass --yes")
        console.print(
            f"{verb} {plan.source} -> {plan.target}: {len(plan.steps)} steps, fingerprint {plan.fingerprint[:12]}"
        )
        return typer.confirm("Proceed?", default=False, err=console.stderr)

    return confirm


def _finish(console, inventory: Inventory, state_dir: Path, outcome, json_command: str | None = None) -> int:
    from migrator.model.secrets import mask
    from migrator.render.run_outcome import render_outcome
    from migrator.render.timeline import add_timeline
    from migrator.run.journal import Journal, state_dir_for

    directory = state_dir_for(state_dir, inventory.service)
    journal = Journal(directory, inventory.secrets())
    text, markdown = render_outcome(journal, outcome)
    if warnings := _trust_warnings(inventory):
        text = "\n".join([*warnings, text])
        markdown = markdown.replace("\n\n", "\n\n" + "".join(f"**{w}**\n\n" for w in warnings), 1)
    # The picture of the run beside the report: embedded in it, its text version on the terminal.
    text, markdown, svg_file = add_timeline(
        directory, journal.records(), outcome.migration, inventory.secrets(), text, markdown
    )
    report_file = directory / f"report-{outcome.migration}.md"
    write_private(report_file, mask(markdown, inventory.secrets()))
    console.print(mask(text, inventory.secrets()), highlight=False, markup=False)
    picture = f"; picture: {svg_file}" if svg_file else ""
    console.print(f"report: {report_file}{picture}; journal: {journal.path}", highlight=False)
    if json_command is not None:
        from migrator.render.run_json import dumps, run_document

        document = run_document(
            json_command,
            inventory.service,
            journal,
            outcome,
            _trust_warnings(inventory),
            str(report_file),
            str(svg_file) if svg_file else None,
        )
        sys.stdout.write(dumps(document, inventory.secrets()))
        sys.stdout.flush()
    if outcome.exit_code != 0:
        # The one line a script (or a tired DBA) reads: what happened and what to do.
        sys.stderr.write(f"{PROG}: error: {mask(outcome.message, inventory.secrets())}\n")
    return outcome.exit_code


# --- console entry ----------------------------------------------------------------------------


def _fail(line: str, code: int) -> int:
    # Plain write, not rich: rich wraps at the terminal width and the contract is one line.
    line = one_line(line)
    if len(line) > MAX_ERROR_LINE:
        line = line[: MAX_ERROR_LINE - 3] + "..."
    sys.stderr.write(line + "\n")
    sys.stderr.flush()
    return code


# A last bound on the one error line; values in it are cut where they are quoted (errors.shown).
MAX_ERROR_LINE = 4000


def _cut_long_values(message: str) -> str:
    """Values click quotes back ('...') cut to a readable length (our own messages cut theirs)."""
    long_quoted = re.compile(rf"'([^']{{{SHOWN_VALUE_LIMIT + 1},}})'")
    return long_quoted.sub(lambda m: f"'{shown(m.group(1))}'", message)


def _missing_value(root, exc, argv: list[str]) -> str:
    """`--dc` given last, with no value: name the option, what it wants and the fix. (click
    raises this before it knows the subcommand, so it would point at `migrate --help`.)"""
    name = exc.option_name
    sub = next((root.commands[a] for a in argv if a in getattr(root, "commands", {})), None)
    where = f"{PROG} {sub.name}" if sub is not None else PROG
    option = next((p for p in (sub.params if sub is not None else []) if name in p.opts), None)
    metavar = option.metavar if option is not None and option.metavar else "VALUE"
    help_text = option.help.rstrip(".") if option is not None and option.help else ""
    what = f" ({help_text[:1].lower()}{help_text[1:]})" if help_text else ""
    return f"{PROG}: error: option {name} needs a value{what}; write {name} {metavar} (see '{where} --help')"


def _debug() -> bool:
    return os.environ.get("MIGRATOR_DEBUG") == "1"


def run(argv: list[str] | None = None) -> int:
    """Run the CLI and return the exit code instead of exiting (for main and tests)."""
    command = get_command(app)
    # -v, --log-file and --no-color are accepted after the subcommand too.
    argv = hoist(sys.argv[1:] if argv is None else argv, getattr(command, "commands", {}))
    try:
        result = command.main(args=argv, prog_name=PROG, standalone_mode=False)
    except click_exceptions.NoArgsIsHelpError as exc:
        print(exc.format_message())
        return 2
    except click_exceptions.BadOptionUsage as exc:
        if exc.ctx is None and exc.option_name and "requires an argument" in exc.message:
            given = sys.argv[1:] if argv is None else argv
            return _fail(_missing_value(command, exc, given), exc.exit_code)
        return _fail(f"{PROG}: error: {_cut_long_values(exc.format_message())}", exc.exit_code)
    except click_exceptions.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx is not None else PROG
        # Typer passes pydantic-style "Value error, ..." through for bad choices; drop the label.
        message = _cut_long_values(exc.format_message().replace("Value error, ", ""))
        return _fail(f"{PROG}: error: {message} (see '{where} --help')", exc.exit_code)
    except click_exceptions.ClickException as exc:
        return _fail(f"{PROG}: error: {_cut_long_values(exc.format_message())}", exc.exit_code)
    except InventoryError as exc:
        # Every problem of the file, one line each (capped), not only the first.
        for line in exc.lines():
            _fail(f"{PROG}: error: {line}", exc.exit_code)
        return exc.exit_code
    except MigratorError as exc:
        if _debug():
            traceback.print_exc()
        return _fail(f"{PROG}: error: {exc}", exc.exit_code)
    except KeyboardInterrupt:
        return _fail(f"{PROG}: interrupted", EXIT_INTERRUPTED)
    except typer.Abort as exc:
        if isinstance(exc.__context__, KeyboardInterrupt):
            return _fail(f"{PROG}: interrupted", EXIT_INTERRUPTED)
        return _fail(f"{PROG}: aborted", 1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        if _debug():
            traceback.print_exc()
        return _fail(f"{PROG}: internal error: {type(exc).__name__}: {exc}", 1)
    # Typer turns Ctrl-C during a command into exit code 130 without a word; say it.
    if result == EXIT_INTERRUPTED:
        return _fail(f"{PROG}: interrupted", EXIT_INTERRUPTED)
    return result if isinstance(result, int) else 0


def main() -> NoReturn:
    sys.exit(run())


if __name__ == "__main__":
    main()
