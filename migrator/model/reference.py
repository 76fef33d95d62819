"""The inventory's key reference and JSON Schema, both generated from the pydantic models.

`python -m migrator.model.reference` rewrites docs/inventory.md; a unit test regenerates it and
fails when the committed file differs, and another when a model field has no meaning here, so a
new key cannot land undocumented. `migrate inventory schema` prints `json_schema_text()`.
"""

from __future__ import annotations

import json
import sys
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from migrator.model.inventory import Inventory

# What each key means, by "Model.field". Types and defaults come from the models themselves.
MEANINGS: dict[str, str] = {
    "Inventory.service": "The service's name: locks, journals, state directories and reports are keyed by it.",
    "Inventory.credentials": "The PostgreSQL roles the tool connects as.",
    "Inventory.gates": "Thresholds and deadlines of the gates (every wait has one).",
    "Inventory.hooks": "Commands run on the operator's machine around the demotion and the promotion.",
    "Inventory.sites": "The Patroni clusters (two or more), by site name; one is primary, the others standby clusters.",
    "Credentials.superuser": "A superuser: observation (pg_control, slots, settings) and the writes of verify.",
    "Credentials.replication": "The replication role the standby clusters stream with (its connection is proven).",
    "Credential.username": "The role's name.",
    "Credential.password": "Reference to the password: env:NAME or file:PATH, never the value.",
    "Gates.max_replay_lag_bytes": "Replay lag under which a standby counts as caught up (cascade and repoint gates).",
    "Gates.lag_window_seconds": (
        "How long the lag must stay under the threshold before the cascade and repoint gates pass "
        "when Patroni's own view (`/cluster`: every member streaming, replayed up to the primary's "
        "head) does not prove it sooner."
    ),
    "Gates.lag_evidence": (
        "Let the cascade and repoint gates pass before the lag window once consecutive samples "
        "(every member replayed up to the primary's WAL head of the first one) and either "
        "PostgreSQL's own clock (every member's WAL receiver has run for the whole window) or "
        "Patroni's own view (every member streaming in `/cluster`) prove the stream; false: always "
        "wait the whole window."
    ),
    "Gates.cascade_timeout_seconds": "Deadline of the cascade gate (target streaming, lag under the gate).",
    "Gates.catchup_timeout_seconds": "Deadline for the target to replay past the token; then the demotion is undone.",
    "Gates.promote_timeout_seconds": "Deadline for the target to report a primary on a new timeline.",
    "Gates.repoint_timeout_seconds": "Deadline for the old site to follow the new primary.",
    "Gates.connect_timeout_seconds": "Timeout of every network call: REST, etcd, PostgreSQL, SSH.",
    "Gates.seed_timeout_seconds": (
        "Deadline of each seeding gate; the other members' covers the standby leader's copy across "
        "sites and their clones of it."
    ),
    "Gates.lock_ttl_seconds": "TTL of the migration lock's etcd lease; a lost lock is noticed within it.",
    "Hooks.before_demote": "Command run right before the demotion (e.g. pgbouncer PAUSE).",
    "Hooks.before_promote": "Command run inside the write-unavailability window, before the promotion: keep it quick.",
    "Hooks.after_promote": "Command run once the new timeline is proven (e.g. move DNS, a VIP, pgbouncer).",
    "Hooks.on_undo": "Command run after a demotion was undone (e.g. pgbouncer RESUME).",
    "Hooks.fence": (
        "`migrate failover` only: command that fences a source member SSH cannot reach (STONITH, cloud API); "
        "MIGRATOR_FENCE_MEMBER and MIGRATOR_FENCE_HOST name it; exit 0 means fenced."
    ),
    "Hooks.timeout_seconds": "Deadline of each hook.",
    "Site.scope": "Patroni's scope (cluster name) of this site.",
    "Site.namespace": "Patroni's namespace in the DCS; /service and service/ both mean /service/.",
    "Site.replication_slot": "Permanent physical slot this site's standby leader consumes on the site it follows "
    "(default: the site name, '-' as '_').",
    "Site.dcs": "The site's own DCS (etcd v3).",
    "Site.rest_api": "How to call the members' Patroni REST API (writes need basic auth).",
    "Site.postgres": "PostgreSQL's paths on the database hosts.",
    "Site.patroni": "Patroni on the database hosts: its configuration file and service commands.",
    "Site.ssh": "SSH access to the site's database hosts (host keys are always verified).",
    "Site.members": "The Patroni members of the site.",
    "Dcs.type": "The DCS kind; only etcd3 today.",
    "Dcs.endpoints": "etcd client URLs of the site, e.g. http://etcd1:2379.",
    "Dcs.username": "etcd user, with password.",
    "Dcs.password": "Reference to the etcd user's password: env:NAME or file:PATH.",
    "Dcs.ca_file": "CA that signed etcd's server certificate (a file on this machine).",
    "Dcs.cert_file": "TLS client certificate for etcd, with key_file.",
    "Dcs.key_file": "Key of the TLS client certificate for etcd.",
    "RestApi.username": "restapi.authentication.username of patroni.yml.",
    "RestApi.password": "Reference to restapi.authentication.password: env:NAME or file:PATH.",
    "RestApi.ca_file": "CA that signed the REST API's server certificate.",
    "RestApi.cert_file": "TLS client certificate for the REST API, with key_file.",
    "RestApi.key_file": "Key of the TLS client certificate for the REST API.",
    "RestApi.verify_tls": "Verify the REST API's certificate; false is reported as a warning.",
    "PostgresPaths.bin_dir": "Directory of pg_controldata, pg_ctl and pg_basebackup on the hosts.",
    "PostgresPaths.data_dir": "PostgreSQL's data directory on the hosts; {member} expands to the member name.",
    "PatroniHost.config_file": "patroni.yml on the hosts ({member} expands); read for the watchdog mode, "
    "written when a site is seeded.",
    "PatroniHost.start_command": "Starts Patroni on a host (run over SSH; {member} expands).",
    "PatroniHost.stop_command": "Stops Patroni on a host (run over SSH; {member} expands).",
    "PatroniHost.disable_command": (
        "`migrate failover` only: keeps Patroni from starting again on a fenced host, e.g. "
        "`sudo systemctl disable patroni` (run over SSH after the stop; {member} expands). Unset: only a "
        "MIGRATOR-FENCED marker beside patroni.yml."
    ),
    "PatroniHost.enable_command": (
        "`migrate reattach` only: the counterpart of disable_command, e.g. `sudo systemctl enable patroni` "
        "(run over SSH on each member just before its start_command; {member} expands). Unset: the plan "
        "warns that a service the failover disabled stays disabled for boots."
    ),
    "PatroniHost.local_parameters": "postgresql.parameters written into a seeded member's patroni.yml.",
    "PatroniHost.basebackup_max_rate": "pg_basebackup --max-rate of the one copy that crosses sites when "
    "this site is seeded (its first member's base backup from the other site), e.g. 100M; written into "
    "that member's patroni.yml only: the other members clone it inside the site, unlimited.",
    "SshSettings.port": "SSH port of the database hosts.",
    "SshSettings.user": "SSH user: root, or a user that may run sudo -n -u postgres.",
    "SshSettings.key_file": "Private key that logs in to the hosts (a file on this machine).",
    "SshSettings.known_hosts": "known_hosts file holding every host's key.",
    "SshSettings.accept_unknown_host_keys": "Accept keys not in known_hosts: explicit opt-in, reported as a warning.",
    "SshSettings.config_file": "OpenSSH client configuration read for the hosts (default the user's).",
    "SshSettings.jump_host": "Bastion every SSH connection goes through (ProxyJump).",
    "SshOverride.host": "Address to SSH to, when it differs from the member's host.",
    "SshOverride.port": "SSH port of this member.",
    "SshOverride.user": "SSH user of this member.",
    "SshOverride.key_file": "Private key of this member.",
    "SshOverride.known_hosts": "known_hosts file of this member.",
    "SshOverride.jump_host": "Bastion of this member, when it differs from the site's.",
    "JumpHost.host": "Address of the bastion.",
    "JumpHost.port": "SSH port of the bastion (default: the OpenSSH config file's, else 22).",
    "JumpHost.user": "User on the bastion (default: the OpenSSH config file's, else the local user).",
    "Member.name": "Patroni's member name (unique across sites).",
    "Member.host": "Host name or address PostgreSQL listens on (and SSH, unless ssh.host says otherwise).",
    "Member.pg_port": "PostgreSQL's port.",
    "Member.api_url": "Base URL of the member's Patroni REST API, e.g. http://db1:8008.",
    "Member.ssh": "Per-member SSH settings over the site's.",
    "Member.tags": "Patroni tags written into a seeded member's patroni.yml.",
}

# JSON Schema keywords for the bounds pydantic leaves under their Python names when a bound sits
# beside a validator it cannot see through.
_BOUND_KEYWORDS = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
# Sections an empty key (`gates:`) may stand for, with all defaults.
_NULLABLE_SECTIONS = ("Gates", "Hooks", "PostgresPaths", "PatroniHost")


def json_schema() -> dict[str, Any]:
    schema = Inventory.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "migrator inventory"
    definitions = {**schema.get("$defs", {}), "Inventory": schema}
    for name, definition in definitions.items():
        # A model also written as one line (a jump host) is anyOf [its text form, its mapping].
        mapping: dict[str, Any] = next((o for o in definition.get("anyOf", [definition]) if "properties" in o), {})
        for key, prop in mapping.get("properties", {}).items():
            if meaning := MEANINGS.get(f"{name}.{key}"):
                prop["description"] = meaning
            prop.pop("title", None)
            _standard_bounds(prop)
    for name in _NULLABLE_SECTIONS:
        if name in schema.get("$defs", {}):
            definition = schema["$defs"][name]
            definition["type"] = ["object", "null"]
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=False) + "\n"


def _standard_bounds(prop: dict[str, Any]) -> None:
    for python_name, keyword in _BOUND_KEYWORDS.items():
        if python_name in prop:
            prop[keyword] = prop.pop(python_name)
    for nested in prop.get("anyOf", []):
        _standard_bounds(nested)


def missing_meanings() -> list[str]:
    """Model fields without an entry in MEANINGS (a test keeps this empty)."""
    return [f"{model.__name__}.{name}" for model in _models() for name in model.model_fields
            if f"{model.__name__}.{name}" not in MEANINGS]  # fmt: skip


def markdown_reference() -> str:
    lines = [
        "# Inventory reference",
        "",
        "<!-- Generated from migrator/model/inventory.py by `python -m migrator.model.reference`;",
        "     tests/unit/test_inventory_reference.py fails when this file is out of date. -->",
        "",
        "Every key of the inventory file, its type, its default and what it means. Unknown keys are",
        "refused. Secrets are references (`env:NAME` or `file:PATH`), never values; relative local",
        "paths start at the inventory file's directory. `migrate init` writes a first inventory from",
        "the sites' Patroni REST API; `migrate inventory schema` prints the JSON Schema, for editors.",
        "",
    ]
    for path, model in _sections():
        lines += [f"## `{path}`", ""]
        if model.__doc__ and model is not Inventory and not model.__doc__.startswith(("A base", "Usage")):
            lines += [" ".join(model.__doc__.split()), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            meaning = MEANINGS.get(f"{model.__name__}.{name}", "")
            lines.append(f"| `{name}` | {_type_name(field.annotation)} | {_default(field)} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


def _sections() -> list[tuple[str, type[BaseModel]]]:
    """Every model under Inventory with the YAML path it sits at, in the order a file has them."""
    found: list[tuple[str, type[BaseModel]]] = []

    def walk(path: str, model: type[BaseModel]) -> None:
        found.append((path, model))
        for name, field in model.model_fields.items():
            inner, suffix = _model_in(field.annotation)
            if inner is not None:
                walk(f"{path}.{name}{suffix}" if path else f"{name}{suffix}", inner)

    walk("", Inventory)
    found[0] = ("(top level)", Inventory)
    return found


def _models() -> list[type[BaseModel]]:
    return [model for _, model in _sections()]


def _model_in(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model a field holds (directly, in a list or as a dict's values) and the path suffix."""
    annotation = _strip(annotation)
    origin = typing.get_origin(annotation)
    if origin is list:
        inner, suffix = _model_in(typing.get_args(annotation)[0])
        return inner, "[]" + suffix
    if origin is dict:
        inner, suffix = _model_in(typing.get_args(annotation)[1])
        return inner, ".<name>" + suffix
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    return None, ""


def _strip(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if origin in (typing.Union, types.UnionType) and len(args) == 1:
            annotation = args[0]
            continue
        return annotation


_TYPE_NAMES = {str: "text", int: "integer", float: "number", bool: "true/false", Path: "local file path"}


def _type_name(annotation: Any) -> str:
    optional = type(None) in typing.get_args(annotation)
    inner = _strip(annotation)
    origin = typing.get_origin(inner)
    if origin is list:
        name = f"list of {_type_name(typing.get_args(inner)[0])}"
    elif origin is dict:
        name = f"mapping of {_type_name(typing.get_args(inner)[1])}"
    elif origin is typing.Literal:
        name = " or ".join(f"`{a}`" for a in typing.get_args(inner))
    elif origin in (typing.Union, types.UnionType):
        name = " or ".join(_type_name(a) for a in typing.get_args(inner) if a is not type(None))
    elif isinstance(inner, type) and issubclass(inner, BaseModel):
        name = "section"
    elif getattr(inner, "__name__", "") == "SecretRef":
        name = "secret reference"
    else:
        name = _TYPE_NAMES.get(inner, getattr(inner, "__name__", str(inner)))
    return f"{name} (optional)" if optional else name


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    default = field.default
    if default is PydanticUndefined and field.default_factory is not None:
        default = field.default_factory()
    if isinstance(default, BaseModel):
        return "its defaults"
    if default is None:
        return "none"
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, (dict, list)):
        return f"`{json.dumps(default)}`"
    return f"`{default}`"


DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "inventory.md"


def main() -> int:
    DOC_PATH.write_text(markdown_reference(), encoding="utf-8")
    print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
