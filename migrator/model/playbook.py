"""Playbooks: the switchover protocol as data (phases -> steps -> args), not as code.

A playbook (`playbooks/switchover.yml`) lists steps in phase order. Each step names the step class
the engine runs (`kind`), its arguments and texts as Jinja2 over a context the planner builds
(site names, inventory values, gates, observed leaders...), what it waits for (`gate`), how it is
undone (`undo`), and the manual commands an operator would type instead (`manual`).

Two kinds of Jinja2 appear, and the loader compiles both so that a typo fails at load time with
the file, the step id and the line:
- expressions (no braces), evaluated to native values: `args`, `when`, `satisfied_if`,
  `gate.timeout`;
- templates (text with `{{ }}`): `title`, `gate.wait_for`, `gate.threshold`, `undo.description`,
  `manual`.

`load_playbook(path)` reads any playbook; `switchover_playbook()` is the packaged one, cached.
Nothing here talks to a network: the planner stays a pure function of its inputs.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from jinja2 import StrictUndefined, TemplateSyntaxError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from migrator.errors import MigratorError
from migrator.model.yamlio import YamlShapeError, plain
from migrator.resources import shipped_dir

# Step kinds and undo kinds are declared once, with everything else about each kind; the loader
# refuses any other kind, so a misspelt kind fails when the playbook is read.
from migrator.steps.kinds import STEP_KINDS, UNDO_KINDS

# Found with importlib.resources: inside the package in a wheel, at the top of a source tree.
PLAYBOOK_DIR = shipped_dir("playbooks")
TEMPLATE_DIR = shipped_dir("templates")
SWITCHOVER_PLAYBOOK = PLAYBOOK_DIR / "switchover.yml"

# The protocol's phases, in the order docs/architecture.md gives them.
SWITCHOVER_PHASES = (
    "preflight",
    "pre-seed",
    "cascade",
    "demote",
    "token",
    "catch-up",
    "promote",
    "repoint",
    "verify",
)

# Where `migrate execute --until PHASE` may stop: phases after which both sites are as safe as
# before the run (the source takes writes, the target follows it). A stop inside or after the
# write-unavailability window (demote .. verify) would leave no primary, or a half-done move.
# The seed playbook's phases (wipe, preflight, seed) end with the target following the source.
UNTIL_STOPS = ("preflight", "pre-seed", "cascade", "wipe", "seed")

_ID = r"[a-z][a-z0-9-]*"


class PlaybookError(MigratorError):
    """The playbook file is missing or invalid, or one of its expressions cannot be resolved."""

    exit_code = 2


# --- Jinja2 -----------------------------------------------------------------------------------


def _shell_quote(value: Any) -> str:
    import shlex

    return shlex.quote(str(value))


def _over_ssh(command: str, member: dict[str, Any]) -> str:
    """`command` run on `member`'s host: `ssh [-F CONFIG] [-J JUMP] -p PORT USER@HOST '<command>'` (quoted once for the
    local shell, so the remote shell sees the command as written)."""
    ssh = member["ssh"]
    options = "".join(
        f"{flag} {_shell_quote(ssh[key])} "
        for flag, key in (("-F", "config_file"), ("-J", "jump_host"))
        if ssh.get(key)
    )
    return f"ssh {options}-p {ssh['port']} {ssh['user']}@{ssh['host']} {_shell_quote(command)}"


def _to_json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(", ", ": "))


@lru_cache(maxsize=1)
def jinja_env() -> ImmutableSandboxedEnvironment:
    """The one environment for playbook expressions and templates: sandboxed, strict undefined
    (a misspelt name is an error, never an empty string), no HTML escaping."""
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=False,
    )
    env.filters["shquote"] = _shell_quote
    env.filters["json"] = _to_json
    env.filters["over_ssh"] = _over_ssh
    return env


@lru_cache(maxsize=4096)
def compile_expression(source: str) -> Any:
    return jinja_env().compile_expression(source, undefined_to_none=False)


@lru_cache(maxsize=4096)
def compile_template(source: str) -> Any:
    return jinja_env().from_string(source)


def _check_expression(value: Any) -> Any:
    if isinstance(value, str):
        try:
            compile_expression(value)
        except TemplateSyntaxError as exc:
            raise ValueError(f"Jinja2 expression {value!r} does not parse: {exc.message}") from None
    return value


def _check_template(value: str) -> str:
    try:
        compile_template(value)
    except TemplateSyntaxError as exc:
        raise ValueError(f"Jinja2 template {value!r} does not parse: {exc.message}") from None
    return value


# --- models -----------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Expression = Annotated[str, Field(min_length=1)]
TemplateText = Annotated[str, Field(min_length=1)]


class GateSpec(_Model):
    """What the step waits for after applying, until when."""

    wait_for: TemplateText
    threshold: TemplateText | None = None
    timeout: Expression  # seconds, e.g. gates.catchup_timeout_seconds

    @field_validator("wait_for", "threshold")
    @classmethod
    def _templates(cls, value: str | None) -> str | None:
        return value if value is None else _check_template(value)

    @field_validator("timeout")
    @classmethod
    def _expressions(cls, value: str) -> str:
        return _check_expression(value)


class UndoSpec(_Model):
    kind: str = "none"
    description: TemplateText | None = None

    @model_validator(mode="before")
    @classmethod
    def _none_shorthand(cls, data: Any) -> Any:
        # `undo: none` is short for {kind: none}.
        return {"kind": "none"} if data == "none" else data

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in UNDO_KINDS:
            raise ValueError(f"unknown undo kind {value!r}; known: {', '.join(sorted(UNDO_KINDS))}")
        return value

    @field_validator("description")
    @classmethod
    def _templates(cls, value: str | None) -> str | None:
        return value if value is None else _check_template(value)


class StepSpec(_Model):
    id: Annotated[str, Field(pattern=f"^{_ID}$")]
    phase: str
    kind: str
    title: TemplateText
    args: dict[str, Any] = {}
    gate: GateSpec | None = None
    undo: UndoSpec
    manual: list[TemplateText] = []
    write_unavailable: bool = False
    when: Expression | None = None
    satisfied_if: Expression | None = None

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, value: str) -> str:
        if value not in STEP_KINDS:
            raise ValueError(f"unknown step kind {value!r}; the engine knows: {', '.join(sorted(STEP_KINDS))}")
        return value

    @field_validator("args")
    @classmethod
    def _args_compile(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, expression in value.items():
            if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
                raise ValueError(f"argument name {name!r} is not a lowercase identifier")
            if not isinstance(expression, (str, int, float, bool)) or expression is None:
                raise ValueError(f"args.{name}: write a Jinja2 expression (a string), or a number or boolean")
            _check_expression(expression)
        return value

    @field_validator("title")
    @classmethod
    def _title_compiles(cls, value: str) -> str:
        return _check_template(value)

    @field_validator("when", "satisfied_if")
    @classmethod
    def _expressions(cls, value: str | None) -> str | None:
        return value if value is None else _check_expression(value)

    @field_validator("manual")
    @classmethod
    def _manual_compile(cls, value: list[str]) -> list[str]:
        for text in value:
            _check_template(text)
        return value


class Playbook(_Model):
    name: Annotated[str, Field(pattern=f"^{_ID}$")]
    description: str
    phases: Annotated[list[str], Field(min_length=1)]
    steps: Annotated[list[StepSpec], Field(min_length=1)]
    source_file: str = ""  # set by the loader, for messages

    @model_validator(mode="after")
    def _consistent(self) -> Playbook:
        if len(set(self.phases)) != len(self.phases):
            raise ValueError("phases: a phase is listed twice")
        seen: set[str] = set()
        last_phase = 0
        for index, step in enumerate(self.steps):
            if step.id in seen:
                raise _StepProblem(index, "id", f"step id '{step.id}' is used twice")
            seen.add(step.id)
            if step.phase not in self.phases:
                raise _StepProblem(
                    index,
                    "phase",
                    f"phase '{step.phase}' is not one of the playbook's phases ({', '.join(self.phases)})",
                )
            position = self.phases.index(step.phase)
            if position < last_phase:
                raise _StepProblem(
                    index,
                    "phase",
                    f"phase '{step.phase}' comes after phase '{self.phases[last_phase]}'; list steps in phase order",
                )
            last_phase = position
        return self

    def step(self, step_id: str) -> StepSpec:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)


class _StepProblem(ValueError):
    """A whole-playbook check that points at one step's field."""

    def __init__(self, index: int, field: str, message: str) -> None:
        super().__init__(message)
        self.index, self.field, self.message = index, field, message


# --- loading ----------------------------------------------------------------------------------


def load_playbook(path: str | os.PathLike[str]) -> Playbook:
    """Read and validate a playbook; every problem is one PlaybookError line with the file, the
    step id (when the problem is inside a step) and the line."""
    shown = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlaybookError(f"playbook {shown}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlaybookError(f"playbook {shown}: cannot read it: {exc}") from None
    return parse_playbook(text, source=shown)


def parse_playbook(text: str, *, source: str) -> Playbook:
    """Validate playbook `text`; `source` names it in messages. The same text is parsed once per
    process: the round-trip YAML parse was 85 % of planning one service (bench/fleet_plan.py), and
    a fleet plans every service with the same playbook. The cache key is the whole text, so an
    edited file is parsed and validated afresh; a playbook is frozen, so sharing it is safe, and a
    refused one raises every time (exceptions are not cached)."""
    return _parse_playbook(text, source)


@lru_cache(maxsize=16)
def _parse_playbook(text: str, source: str) -> Playbook:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        tree = yaml.load(text)
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc
        raise PlaybookError(f"playbook {source}: {where}YAML error: {problem}") from None
    if not isinstance(tree, CommentedMap):
        raise PlaybookError(
            f"playbook {source}: the top level must be a mapping with name, description, phases and steps"
        )
    try:
        data = plain(tree)
    except YamlShapeError as exc:
        raise PlaybookError(f"playbook {source}: {exc}") from None
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        raise _playbook_error(source, tree, exc) from None
    return playbook.model_copy(update={"source_file": source})


def _playbook_error(source: str, tree: CommentedMap, exc: ValidationError) -> PlaybookError:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, _StepProblem):
            loc = ("steps", cause.index, cause.field)
            message = cause.message
        elif error["type"] == "extra_forbidden":
            message = f"unknown key '{loc[-1]}'"
        elif error["type"] == "missing":
            message = f"missing required key '{loc[-1]}'"
        lines.append(f"playbook {source}: {_where(tree, loc)}{message}")
    return PlaybookError(lines[0] if len(lines) == 1 else f"{lines[0]} (and {len(lines) - 1} more problem(s))")


def _where(tree: CommentedMap, loc: tuple[Any, ...]) -> str:
    """ "step '<id>' (line N): <field>: " inside a step, else "<path> (line N): "."""
    node: Any = tree
    line = None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    at_line = f" (line {line})" if line is not None else ""
    if len(loc) >= 2 and loc[0] == "steps" and isinstance(loc[1], int):
        step = tree.get("steps")
        step_id = None
        if isinstance(step, CommentedSeq) and loc[1] < len(step) and isinstance(step[loc[1]], dict):
            step_id = step[loc[1]].get("id")
        name = f"step '{step_id}'" if step_id else f"step #{loc[1] + 1}"
        rest = ".".join(str(p) for p in loc[2:])
        return f"{name}{at_line}: {rest + ': ' if rest else ''}"
    path = ".".join(str(p) for p in loc)
    return f"{path}{at_line}: " if path else (f"line {line}: " if line else "")


@lru_cache(maxsize=1)
def switchover_playbook() -> Playbook:
    """The packaged switchover playbook (read once per process)."""
    return load_playbook(SWITCHOVER_PLAYBOOK)
