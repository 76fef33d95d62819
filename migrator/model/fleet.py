"""The fleet file: which services `migrate fleet` moves, in which waves, how many at a time.

A fleet run is many ordinary single-service runs (each with its own inventory, lock, journal,
gates and undo) driven by a scheduler; this file only says which inventories, in what order and
with what budget. `load_fleet(path)` reads it and every inventory it names with the inventory's
own loader. Every problem is a line of one `FleetError`: the fleet file's own problems as
`fleet <file>: <yaml.path> (line N): <what>; <fix>`, an inventory's as that inventory's loader
words them (naming the inventory file). The keys are documented in docs/fleet.md, generated from
the model below by `python -m migrator.model.fleet_reference`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from ruamel.yaml.comments import CommentedMap

from migrator.errors import FleetError, InventoryError, UsageError, shown
from migrator.model.inventory import Inventory, ServiceName, Text, load_inventory, refuse_bool
from migrator.model.yaml_problems import describe, located, parse_yaml, problems_error, read_text_file
from migrator.model.yamlio import YamlShapeError, plain

FLEET_DOC = "docs/fleet.md"
_TOP_LEVEL_HINT = f"it needs the key services (a list of inventory files or globs); see {FLEET_DOC}"
_GLOB_CHARACTERS = "*?["


class FleetSpec(BaseModel):
    """The fleet file as written (paths not yet resolved, inventories not yet read)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    services: Annotated[list[Text], Field(min_length=1)]
    waves: list[Annotated[list[ServiceName], Field(min_length=1)]] | None = None
    parallel: Annotated[int, refuse_bool("int_type"), Field(ge=1, le=64)] = 2
    max_failures: Annotated[int, refuse_bool("int_type"), Field(ge=0)] = 1
    pause_between_waves: Annotated[bool, Field(strict=True)] = False

    @model_validator(mode="before")
    @classmethod
    def _empty_waves_is_none(cls, data: Any) -> Any:
        # `waves:` with nothing after it means "no waves", as an empty section does in the inventory.
        if isinstance(data, dict) and "waves" in data and data["waves"] is None:
            return {k: v for k, v in data.items() if k != "waves"}
        return data


@dataclass(frozen=True)
class FleetService:
    """One service of the fleet: its name (the inventory's `service:`), its file and inventory."""

    name: str
    inventory_file: str  # as the operator reads it: the fleet file's directory joined with the entry
    inventory: Inventory


@dataclass(frozen=True)
class Wave:
    number: int  # 1-based, in the order the waves run
    services: tuple[str, ...]
    implicit: bool = False  # the last wave: every service named in no wave, in the order of `services`


@dataclass(frozen=True)
class Fleet:
    source: str  # the fleet file, as the operator named it
    services: tuple[FleetService, ...]
    waves: tuple[Wave, ...]
    parallel: int
    max_failures: int
    pause_between_waves: bool

    def service(self, name: str) -> FleetService:
        for member in self.services:
            if member.name == name:
                return member
        raise UsageError(
            f"no service '{shown(name)}' in fleet {self.source}; services: {', '.join(s.name for s in self.services)}"
        )

    def secrets(self) -> list[str]:
        """Every secret value of every inventory, for masking whatever the fleet commands print."""
        values: list[str] = []
        for member in self.services:
            values += [value for value in member.inventory.secrets() if value not in values]
        return values

    def missing_site_lines(self, site: str) -> list[str]:
        """One line per inventory without `site`, naming the inventory and the sites it has."""
        return [
            f"fleet {self.source}: inventory {member.inventory_file} (service {member.name}) has no site "
            f"'{shown(site)}'; its sites: {', '.join(member.inventory.sites)}; name a site every inventory "
            "has with --dc, or take this inventory out of the fleet"
            for member in self.services
            if site not in member.inventory.sites
        ]


# --- loading ----------------------------------------------------------------------------------


def load_fleet(path: str | os.PathLike[str]) -> Fleet:
    """Read and validate a fleet file and every inventory it names; any problem raises
    FleetError with every problem found, one line each."""
    source = os.fspath(path)
    text = read_text_file(path, f"fleet {source}", "pass an existing fleet file with --fleet", FleetError)
    return parse_fleet(text, source=source)


def parse_fleet(text: str, *, source: str) -> Fleet:
    """Validate fleet YAML `text`; `source` names it in messages, and relative inventory paths
    start at its directory."""
    try:
        tree = parse_yaml(text, source, kind="fleet")
    except InventoryError as exc:  # worded for the fleet file already; only the error's kind differs
        raise FleetError(exc.message, exc.problems, source) from None
    if tree is None:
        raise FleetError(f"fleet {source}: the file is empty; {_TOP_LEVEL_HINT}")
    if not isinstance(tree, CommentedMap):
        raise FleetError(f"fleet {source}: the top level is {describe(tree)}, expected a mapping; {_TOP_LEVEL_HINT}")
    try:
        spec = FleetSpec.model_validate(plain(tree))
    except YamlShapeError as exc:
        raise FleetError(f"fleet {source}: {exc}; write the values out instead") from None
    except ValidationError as exc:
        raise _as_fleet_error(problems_error(source, tree, located(exc, FleetSpec, FLEET_DOC), kind="fleet")) from None
    return _resolve(spec, source, tree)


def _resolve(spec: FleetSpec, source: str, tree: CommentedMap) -> Fleet:
    located: list[tuple[tuple[Any, ...], str]] = []  # the fleet file's own problems, with their place
    inventory_problems: list[str] = []
    services: list[FleetService] = []
    listed_by: dict[str, int] = {}  # real path -> index of the services entry that listed it first
    named_in: dict[str, str] = {}  # service name -> inventory file
    base = os.path.dirname(source)
    for index, entry in enumerate(spec.services):
        files, problem = _files_of(base, entry)
        if problem is not None:
            located.append((("services", index), problem))
        for file in files:
            real = os.path.realpath(file)
            if real in listed_by:
                first = listed_by[real]
                also = "earlier in this entry" if first == index else f"also by services[{first}]"
                located.append(
                    (("services", index), f"inventory {file} is listed twice ({also}); list each inventory once")
                )
                continue
            listed_by[real] = index
            try:
                inventory = load_inventory(file)
            except InventoryError as exc:
                inventory_problems += exc.problems
                continue
            if inventory.service in named_in:
                located.append(
                    (
                        ("services", index),
                        f"inventories {named_in[inventory.service]} and {file} both have service: "
                        f"{inventory.service}; a fleet moves each service once (remove one, or give each its own "
                        "service name)",
                    )
                )
                continue
            named_in[inventory.service] = file
            services.append(FleetService(inventory.service, file, inventory))
    waves = _waves(spec, services, located, complete=not inventory_problems)
    if located or inventory_problems:
        lines = problems_error(source, tree, located, kind="fleet").problems if located else []
        lines += inventory_problems
        message = lines[0] if len(lines) == 1 else f"{lines[0]} (and {len(lines) - 1} more problem(s))"
        raise FleetError(message, lines, source)
    return Fleet(source, tuple(services), waves, spec.parallel, spec.max_failures, spec.pause_between_waves)


def _files_of(base: str, entry: str) -> tuple[list[str], str | None]:
    """The inventory files an entry of `services` names (a path or a glob, relative to the fleet
    file's directory), and the problem when it names none."""
    pattern = os.path.normpath(os.path.join(base, os.path.expanduser(entry)))
    if any(char in entry for char in _GLOB_CHARACTERS):
        files = sorted(path for path in glob.glob(pattern) if os.path.isfile(path))
        if not files:
            return [], (
                f"'{shown(entry)}' matches no file (looked for {shown(pattern, 400)}); fix the pattern or remove "
                "the entry"
            )
        return files, None
    if not os.path.exists(pattern):
        return [], (
            f"inventory '{shown(entry)}' not found (looked for {shown(pattern, 400)}); fix the path (relative "
            "to the fleet file's directory) or remove the entry"
        )
    return [pattern], None


def _waves(
    spec: FleetSpec, services: list[FleetService], located: list[tuple[tuple[Any, ...], str]], complete: bool
) -> tuple[Wave, ...]:
    """The waves in order, the services in no wave forming a last, implicit one. A name that is no
    service is reported only when every inventory loaded (else it may be in one that did not)."""
    known = [s.name for s in services]
    placed: dict[str, int] = {}
    waves: list[Wave] = []
    for number, names in enumerate(spec.waves or [], start=1):
        kept: list[str] = []
        for position, name in enumerate(names):
            where = ("waves", number - 1, position)
            if name in placed:
                again = "again in this wave" if placed[name] == number else f"already in wave {placed[name]}"
                located.append((where, f"service '{name}' is {again}; put each service in at most one wave"))
            elif name not in known:
                if complete:
                    located.append(
                        (
                            where,
                            f"'{name}' is not the service of any inventory in services; services: {', '.join(known)}",
                        )
                    )
            else:
                placed[name] = number
                kept.append(name)
        waves.append(Wave(number, tuple(kept)))
    rest = tuple(name for name in known if name not in placed)
    if rest:
        waves.append(Wave(len(waves) + 1, rest, implicit=bool(spec.waves)))
    return tuple(waves)


def _as_fleet_error(error: InventoryError) -> FleetError:
    return FleetError(error.message, error.problems, error.source)
