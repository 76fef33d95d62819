"""The inventory: which service, which sites, which members, and how to reach them.

`load_inventory(path)` is the only way the CLI reads one. Every problem becomes an
`InventoryError` with one line: `inventory <file>: <yaml.path> (line N): <what>; <fix>`.
Models are frozen and reject unknown keys, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from ruamel.yaml.comments import CommentedMap

from migrator.errors import InventoryError, UsageError, shown
from migrator.model.placeholders import PLACEHOLDER_FIX, placeholder_locations
from migrator.model.secrets import SecretRef, checks_local_files, readable_file_error, resolve_local_path
from migrator.model.yaml_problems import describe, located, parse_yaml, problems_error, quick_load, read_text_file
from migrator.model.yamlio import YamlShapeError, plain

# --- field types --------------------------------------------------------------------------


def _matching(pattern: str, what: str, hint: str) -> AfterValidator:
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise PydanticCustomError(
                "bad_name",
                "{what} '{value}' is not valid; {hint}",
                {"what": what, "value": shown(value), "hint": hint},
            )
        return value

    return AfterValidator(check)


_LOWER_NAME_HINT = "use lowercase letters, digits, '-' and '_', starting with a letter or digit"
ServiceName = Annotated[str, _matching(r"[a-z0-9][a-z0-9_-]*", "service name", _LOWER_NAME_HINT)]
SiteName = Annotated[str, _matching(r"[a-z0-9][a-z0-9_-]*", "site name", _LOWER_NAME_HINT)]
MemberName = Annotated[
    str,
    _matching(
        r"[A-Za-z0-9][A-Za-z0-9_.-]*",
        "member name",
        "use letters, digits, '.', '-' and '_', starting with a letter or digit",
    ),
]
SLOT_NAME_PATTERN = r"[a-z0-9_]{1,63}"
SlotName = Annotated[
    str,
    _matching(
        SLOT_NAME_PATTERN,
        "replication slot name",
        "PostgreSQL slot names use lowercase letters, digits and '_', at most 63 characters",
    ),
]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "is empty; give it a value")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]


def refuse_bool(error_type: str) -> BeforeValidator:
    """YAML's `true` is not the number 1 (pydantic's lax mode would take it as 1)."""

    def check(value: Any) -> Any:
        if isinstance(value, bool):
            raise PydanticCustomError(error_type, "a boolean is not a number")
        return value

    return BeforeValidator(check)


Port = Annotated[int, refuse_bool("int_type"), Field(ge=1, le=65535)]
Seconds = Annotated[float, refuse_bool("float_type"), Field(gt=0, allow_inf_nan=False)]


def _check_host(value: str) -> str:
    if not value or any(c.isspace() for c in value) or "/" in value:
        raise PydanticCustomError(
            "bad_host",
            "host '{value}' is not a host name or IP address; write it without scheme, port or path",
            {"value": shown(value)},
        )
    return value


Host = Annotated[str, AfterValidator(_check_host)]


def _check_http_url(value: str) -> str:
    problem = None
    try:
        parts = urlsplit(value.strip())
        parts.port  # noqa: B018 - raises ValueError on a port that is not a number
    except ValueError:
        problem = "its port is not a number between 0 and 65535"
    else:
        if parts.scheme not in ("http", "https"):
            problem = "it must start with http:// or https://"
        elif not parts.hostname:
            problem = "it has no host"
    if problem:
        raise PydanticCustomError(
            "bad_url",
            "'{value}' is not a usable URL: {problem}; write it like http://db1.example.net:8008",
            {"value": shown(value), "problem": problem},
        )
    # Stored without a trailing slash so that callers can append "/cluster" and the like.
    return value.strip().rstrip("/")


HttpUrl = Annotated[str, AfterValidator(_check_http_url)]


def _check_local_file(value: Path, info: ValidationInfo) -> Path:
    path = resolve_local_path(value, info)
    if checks_local_files(info) and (error := readable_file_error(path)):
        raise error
    return path


# A file on the machine running migrate (keys, CAs); stored as an absolute path.
LocalFile = Annotated[Path, AfterValidator(_check_local_file)]

MEMBER_PLACEHOLDER = "{member}"


def _check_remote_path(value: str) -> str:
    if not value.startswith("/"):
        raise PydanticCustomError(
            "remote_path_relative",
            "'{value}' is not an absolute path; paths on the database hosts must start with /",
            {"value": shown(value)},
        )
    unknown = set(re.findall(r"\{[^}]*\}", value)) - {MEMBER_PLACEHOLDER}
    if unknown:
        raise PydanticCustomError(
            "remote_path_placeholder",
            "unknown placeholder {found} in '{value}'; only {placeholder} is expanded (to the member name)",
            {"found": shown(", ".join(sorted(unknown))), "value": shown(value), "placeholder": MEMBER_PLACEHOLDER},
        )
    return value


# A path on the database host, never checked locally; may contain {member}.
RemotePath = Annotated[str, AfterValidator(_check_remote_path)]


def _error_at(error_type: str, message: str, at: tuple[str | int, ...], **ctx: Any) -> PydanticCustomError:
    """An error raised by a model validator but reported at `at` (relative to that model).

    Pydantic reports model-validator errors at the model itself; the loader adds `at` to the
    location so the message points at the exact key and line.
    """
    return PydanticCustomError(error_type, message, {**ctx, "at": at})


def _require_pair(model: BaseModel, first: str, second: str, what: str) -> None:
    has_first, has_second = getattr(model, first) is not None, getattr(model, second) is not None
    if has_first != has_second:
        missing, given = (second, first) if has_first else (first, second)
        raise _error_at(
            "incomplete_pair",
            "{given} is set but {missing} is not; {what} needs both or neither",
            (given,),
            given=given,
            missing=missing,
            what=what,
        )


# --- models -------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _NoneMeansDefaults(_Model):
    """An optional section written as an empty key (`gates:`) means "all defaults"."""

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        return {} if data is None else data


class Credential(_Model):
    username: Text
    password: SecretRef


class Credentials(_Model):
    superuser: Credential
    replication: Credential


class Gates(_NoneMeansDefaults):
    max_replay_lag_bytes: Annotated[int, refuse_bool("int_type"), Field(ge=0)] = 16 * 1024 * 1024
    lag_window_seconds: Seconds = 10
    # The cascade and repoint gates may pass before the window on evidence: streams older than
    # the window, or Patroni's own view (migrator/rules/streaming_evidence.py); false: always the
    # whole window.
    lag_evidence: bool = True
    cascade_timeout_seconds: Seconds = 300
    catchup_timeout_seconds: Seconds = 60
    promote_timeout_seconds: Seconds = 60
    repoint_timeout_seconds: Seconds = 180
    # Applies to every network call: REST, etcd, PostgreSQL, SSH.
    connect_timeout_seconds: Seconds = 5
    # Seeding an empty target site: the base backup of the whole source, per member.
    seed_timeout_seconds: Seconds = 3600
    # The migration lock's etcd lease: a run that lost it for this long is noticed within it.
    lock_ttl_seconds: Annotated[int, refuse_bool("int_type"), Field(ge=5, le=3600)] = 30


class Hooks(_NoneMeansDefaults):
    """Commands run on the operator's machine around the demotion and the promotion, e.g. to
    hold and move traffic (pgbouncer PAUSE/RESUME, DNS, VIP). Their environment holds only
    MIGRATOR_SERVICE, MIGRATOR_SOURCE, MIGRATOR_TARGET, MIGRATOR_HOOK (and, after the promotion,
    MIGRATOR_NEW_PRIMARY and MIGRATOR_NEW_PRIMARY_HOST) plus PATH, HOME and LANG: a hook reads
    its own credentials from files. The plan shows each hook and its fingerprint covers them."""

    before_demote: Text | None = None  # right before the demotion, e.g. pgbouncer PAUSE
    before_promote: Text | None = None  # inside the write-unavailability window: keep it quick
    after_promote: Text | None = None
    on_undo: Text | None = None  # after a demotion was undone, e.g. pgbouncer RESUME
    # `migrate failover` only: fences a source member SSH cannot reach (STONITH, cloud API);
    # MIGRATOR_FENCE_MEMBER and MIGRATOR_FENCE_HOST name it; exit 0 means fenced.
    fence: Text | None = None
    timeout_seconds: Seconds = 30


class Dcs(_Model):
    type: Literal["etcd3"] = "etcd3"
    endpoints: Annotated[list[HttpUrl], Field(min_length=1)]
    username: Text | None = None
    password: SecretRef | None = None
    ca_file: LocalFile | None = None
    cert_file: LocalFile | None = None
    key_file: LocalFile | None = None

    @model_validator(mode="after")
    def _pairs(self) -> Dcs:
        _require_pair(self, "username", "password", "etcd authentication")
        _require_pair(self, "cert_file", "key_file", "a TLS client certificate")
        return self


class RestApi(_Model):
    username: Text
    password: SecretRef
    ca_file: LocalFile | None = None
    cert_file: LocalFile | None = None
    key_file: LocalFile | None = None
    verify_tls: bool = True

    @model_validator(mode="after")
    def _pairs(self) -> RestApi:
        _require_pair(self, "cert_file", "key_file", "a TLS client certificate")
        return self


class PostgresPaths(_NoneMeansDefaults):
    bin_dir: RemotePath = "/usr/lib/postgresql/15/bin"
    data_dir: RemotePath = "/var/lib/postgresql/15/main"


class PatroniHost(_NoneMeansDefaults):
    config_file: RemotePath = "/etc/patroni/patroni.yml"
    start_command: Text = "sudo systemctl start patroni"
    stop_command: Text = "sudo systemctl stop patroni"
    # `migrate failover` runs it on each fenced member after the stop, so that no reboot starts
    # Patroni again; unset: only the fence marker is written (the report says so).
    disable_command: Text | None = None
    # Its counterpart: `migrate reattach` runs it on each member just before starting Patroni there,
    # so that the reattached site starts again after a reboot; unset: the plan warns instead.
    enable_command: Text | None = None
    # Used when the tool writes patroni.yml to seed an empty site ({member} is expanded in
    # local_parameters values and in the commands above).
    local_parameters: dict[str, str | int | bool] = {}  # postgresql.parameters of this host
    basebackup_max_rate: Text | None = None  # pg_basebackup --max-rate, e.g. 100M


_JUMP_HOST_FORM = re.compile(r"(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]\s]+\]|[^@:\s\[\]]+)(?::(?P<port>\d+))?")


class JumpHost(_Model):
    """A bastion every SSH connection of the site goes through (like `ssh -J`).

    Written `[user@]host[:port]` or as a mapping; a user or port left out comes from the
    OpenSSH config file's entry for that host, else the local user name and port 22."""

    host: Host
    port: Port | None = None
    user: Text | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if not isinstance(data, str):
            return data
        found = _JUMP_HOST_FORM.fullmatch(data.strip())
        if not found:
            raise PydanticCustomError(
                "bad_jump_host",
                "jump host '{value}' is not in the form [user@]host[:port]; write it like admin@bastion.example.net:22",
                {"value": shown(data)},
            )
        parts = {"host": found["host"].strip("[]"), "user": found["user"], "port": found["port"]}
        return {key: value if key != "port" else int(value) for key, value in parts.items() if value}

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        # The loader takes the short text form as well as the mapping; so must the schema.
        text = {"type": "string", "pattern": f"^{_JUMP_HOST_FORM.pattern}$", "description": "[user@]host[:port]"}
        return {"anyOf": [text, handler(core_schema)]}

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{user}{host}" + (f":{self.port}" if self.port else "")


class SshSettings(_Model):
    port: Port = 22
    user: Text = "postgres"
    key_file: LocalFile | None = Field(
        default=None,
        description="private key to log in with (an OpenSSH certificate KEY-cert.pub beside it is "
        "offered too); left out, the keys of the running ssh-agent (SSH_AUTH_SOCK), the config "
        "file's IdentityFile and ~/.ssh/id_* are tried, as ssh(1) does",
    )
    known_hosts: LocalFile = Field(
        description="the only source of trusted host keys, the jump host's included; an unknown "
        "or changed key is refused"
    )
    config_file: LocalFile | None = Field(
        default=None,
        description="OpenSSH client config file read for each host (HostName, IdentityFile, "
        "ProxyJump, ConnectTimeout...); left out: ~/.ssh/config and /etc/ssh/ssh_config, as "
        "ssh(1) reads them. The inventory's host, port and user win over it",
    )
    jump_host: JumpHost | None = Field(
        default=None,
        description="bastion to reach every member through, `[user@]host[:port]` (like ssh -J) "
        "or a mapping with host, port, user; its host key must be in known_hosts too. Left out, "
        "a ProxyJump in the config file applies",
    )
    # Explicit opt-in only; reports print it as a warning.
    accept_unknown_host_keys: bool = False


class SshOverride(_Model):
    host: Host | None = None
    port: Port | None = None
    user: Text | None = None
    key_file: LocalFile | None = None
    known_hosts: LocalFile | None = None
    jump_host: JumpHost | None = None


class ResolvedSsh(_Model):
    """How to reach one member over SSH: the site's defaults with the member's overrides."""

    host: str
    port: int
    user: str
    key_file: Path | None
    known_hosts: Path
    config_file: Path | None = None
    jump_host: JumpHost | None = None
    accept_unknown_host_keys: bool

    def for_manual_commands(self) -> dict[str, Any]:
        """What a plan's manual `ssh` command line needs (no key: the operator's ssh has its own)."""
        found: dict[str, Any] = {"host": self.host, "port": self.port, "user": self.user}
        if self.config_file is not None:
            found["config_file"] = str(self.config_file)
        if self.jump_host is not None:
            found["jump_host"] = str(self.jump_host)
        return found


class Member(_Model):
    name: MemberName
    host: Host
    pg_port: Port = 5432
    api_url: HttpUrl
    ssh: SshOverride | None = None
    tags: dict[str, str | int | bool] = {}  # Patroni tags written into a seeded patroni.yml


class Site(_Model):
    scope: Text
    namespace: str = "/service/"
    # The permanent physical slot this site's standby leader consumes on the site it follows.
    # Filled in with the site name by Inventory when left out.
    replication_slot: SlotName | None = None
    dcs: Dcs
    rest_api: RestApi
    postgres: PostgresPaths = PostgresPaths()
    patroni: PatroniHost = PatroniHost()
    ssh: SshSettings
    members: Annotated[list[Member], Field(min_length=1)]

    @field_validator("namespace")
    @classmethod
    def _normalise_namespace(cls, value: str) -> str:
        inner = value.strip().strip("/")
        if not inner or any(c.isspace() for c in inner):
            raise PydanticCustomError(
                "bad_namespace",
                "namespace '{value}' is not usable; write it like /service/",
                {"value": shown(value)},
            )
        # Patroni joins namespace and scope as-is, so /service and service/ must both become
        # /service/ to name the same keys in the DCS.
        return f"/{inner}/"

    @model_validator(mode="after")
    def _one_member_per_address(self) -> Site:
        seen: dict[tuple[str, int], str] = {}
        for index, member in enumerate(self.members):
            address = (member.host, member.pg_port)
            if address in seen:
                raise _error_at(
                    "duplicate_address",
                    "member '{name}' has the same host and port "
                    "({host}:{port}) as member '{other}'; give each member its own host or pg_port",
                    ("members", index, "host"),
                    name=member.name,
                    host=member.host,
                    port=member.pg_port,
                    other=seen[address],
                )
            seen[address] = member.name
        return self

    def ssh_for(self, member: Member) -> ResolvedSsh:
        override = member.ssh or SshOverride()

        def pick(own: Any, default: Any) -> Any:
            return own if own is not None else default

        return ResolvedSsh(
            host=pick(override.host, member.host),
            port=pick(override.port, self.ssh.port),
            user=pick(override.user, self.ssh.user),
            key_file=pick(override.key_file, self.ssh.key_file),
            known_hosts=pick(override.known_hosts, self.ssh.known_hosts),
            config_file=self.ssh.config_file,
            jump_host=pick(override.jump_host, self.ssh.jump_host),
            accept_unknown_host_keys=self.ssh.accept_unknown_host_keys,
        )

    def data_dir_for(self, member: Member) -> str:
        return self.postgres.data_dir.replace(MEMBER_PLACEHOLDER, member.name)

    def patroni_config_for(self, member: Member) -> str:
        return self.patroni.config_file.replace(MEMBER_PLACEHOLDER, member.name)


def default_slot_name(site_name: str) -> str:
    # Site names may hold '-', which PostgreSQL slot names may not.
    return site_name.replace("-", "_")


class Inventory(_Model):
    service: ServiceName
    credentials: Credentials
    gates: Gates = Gates()
    hooks: Hooks = Hooks()
    sites: dict[SiteName, Site]

    @model_validator(mode="before")
    @classmethod
    def _default_slot_names(cls, data: Any) -> Any:
        if not isinstance(data, dict) or not isinstance(data.get("sites"), dict):
            return data
        sites = {}
        for name, site in data["sites"].items():
            if (
                isinstance(name, str)
                and isinstance(site, dict)
                and site.get("replication_slot") is None
                and re.fullmatch(SLOT_NAME_PATTERN, default_slot_name(name))
            ):
                site = {**site, "replication_slot": default_slot_name(name)}
            sites[name] = site
        return {**data, "sites": sites}

    @model_validator(mode="after")
    def _cross_checks(self) -> Inventory:
        if len(self.sites) < 2:
            raise _error_at(
                "too_few_sites",
                "at least two sites are needed, found {found}; add the site the primary moves to",
                ("sites",),
                found=len(self.sites),
            )
        member_site: dict[str, str] = {}
        for site_name, site in self.sites.items():
            for index, member in enumerate(site.members):
                other = member_site.get(member.name)
                if other is not None:
                    where = f"used twice in site {site_name}" if other == site_name else (f"also used in site {other}")
                    raise _error_at(
                        "duplicate_member",
                        "member name '{name}' is {where}; Patroni needs member names unique across sites",
                        ("sites", site_name, "members", index, "name"),
                        name=member.name,
                        where=where,
                    )
                member_site[member.name] = site_name
        slot_site: dict[str, str] = {}
        for site_name, site in self.sites.items():
            slot = site.replication_slot or default_slot_name(site_name)
            other = slot_site.setdefault(slot, site_name)
            if other != site_name:
                raise _error_at(
                    "duplicate_slot",
                    "replication slot '{slot}' is also used by site {other}; give each site its own replication_slot",
                    ("sites", site_name, "replication_slot"),
                    slot=slot,
                    other=other,
                )
        return self

    def site(self, name: str) -> Site:
        try:
            return self.sites[name]
        except KeyError:
            raise UsageError(f"no site '{shown(name)}' in the inventory; sites: {', '.join(self.sites)}") from None

    def member(self, name: str) -> tuple[str, Site, Member]:
        for site_name, site in self.sites.items():
            for member in site.members:
                if member.name == name:
                    return site_name, site, member
        names = ", ".join(m.name for s in self.sites.values() for m in s.members)
        raise UsageError(f"no member '{shown(name)}' in the inventory; members: {names}")

    def secrets(self) -> list[str]:
        """Every secret value the inventory refers to, for masking logs and reports."""
        values = []
        for ref in _secret_refs(self):
            try:
                value = ref.reveal()
            except (OSError, LookupError):
                continue  # gone since load: nothing of it can be echoed either
            if value and value not in values:
                values.append(value)
        return values


def _secret_refs(value: Any) -> Iterator[SecretRef]:
    # Walks every field, so secrets added to the schema later are masked without extra code.
    if isinstance(value, SecretRef):
        yield value
    elif isinstance(value, BaseModel):
        for field_name in type(value).model_fields:
            yield from _secret_refs(getattr(value, field_name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_refs(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _secret_refs(item)


# --- loading ------------------------------------------------------------------------------

_TOP_LEVEL_HINT = "it needs the keys service, credentials, sites (and optionally gates); see examples/testbed.yml"


def load_inventory(path: str | os.PathLike[str]) -> Inventory:
    """Read, parse and validate an inventory file; any problem raises InventoryError."""
    shown = os.fspath(path)
    text = read_text_file(path, f"inventory {shown}", "pass an existing file with --inventory or MIGRATOR_INVENTORY")
    return parse_inventory(text, source=shown, base_dir=Path(path).absolute().parent)


def parse_inventory(text: str, *, source: str, base_dir: Path, check_local_files: bool = True) -> Inventory:
    """Validate inventory YAML `text`; `source` names it in messages, `base_dir` anchors paths."""
    context = {"base_dir": base_dir, "check_local_files": check_local_files}
    # A valid file needs no line numbers: the safe loader's plain data validates the same way in a
    # third less time. Anything it cannot vouch for, or any problem, is read again below with the
    # round-trip loader, whose nodes give every problem its line.
    quick = quick_load(text)
    if isinstance(quick, dict) and not any(placeholder_locations(quick)):
        try:
            return Inventory.model_validate(quick, context=context)
        except ValidationError:
            pass
    tree = parse_yaml(text, source)
    if tree is None:
        raise InventoryError(f"inventory {source}: the file is empty; {_TOP_LEVEL_HINT}")
    if not isinstance(tree, CommentedMap):
        raise InventoryError(
            f"inventory {source}: the top level is {describe(tree)}, expected a mapping; {_TOP_LEVEL_HINT}"
        )
    try:
        data = plain(tree)
    except YamlShapeError as exc:
        raise InventoryError(f"inventory {source}: {exc}; write the values out instead") from None
    # Placeholders left by `migrate init` are named as such; what the models say about those same
    # values ("file <FILL IN> does not exist") would only obscure it, every other problem stays.
    placeholders = [(loc, PLACEHOLDER_FIX) for loc in placeholder_locations(data)]
    try:
        inventory = Inventory.model_validate(data, context=context)
    except ValidationError as exc:
        others = [
            (loc, text) for loc, text in located(exc, Inventory) if not any(loc[: len(p)] == p for p, _ in placeholders)
        ]
        raise problems_error(source, tree, placeholders + others) from None
    if placeholders:
        raise problems_error(source, tree, placeholders)
    return inventory
