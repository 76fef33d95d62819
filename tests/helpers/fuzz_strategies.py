"""Hypothesis strategies, network guard and property bodies for fuzzing the inventory and the CLI.

Shared by tests/unit/test_fuzz_inputs.py (200 examples per property) and bench/fuzz_inputs.py
(1,000), so both check exactly the same thing. The contract under test (issue, case 10): any bad
inventory or bad command line exits 2 with one line on stderr and no traceback.

Safety: a VALID inventory given to check/status/execute/rollback (and to plan/execute with an
existing --dc) makes migrate contact the hosts in it. So:
- every inventory that reaches the CLI is built to be invalid (`invalid_inventories()`) and is
  also proven invalid with `load_inventory` (the CLI's own loader, same file, same environment)
  before the CLI sees it (`assert_not_loadable`);
- the valid base inventory is only ever given to `plan`/`execute`, with --dc values that cannot be
  a site name (the site is looked up before any network in cli.plan/cli.execute), and never to a
  subprocess;
- generated argv tokens can never name an inventory (`-i...`, `--inventory...`) or a site;
- `no_network()` makes socket connects and name lookups fail and replaces the five `run_<command>`
  bodies of migrator.cli with tripwires; every property asserts neither was touched.
Inventories that may stay valid (`maybe_valid_inventories()`) are only ever loaded in-process.
"""

from __future__ import annotations

import contextlib
import copy
import difflib
import io
import os
import re
import socket
import subprocess
import sys
import traceback
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML

from migrator import cli
from migrator.errors import InventoryError
from migrator.model.inventory import Dcs, Inventory, RestApi, load_inventory, parse_inventory
from tests.unit.test_inventory import FIXTURE, TEST_ENV, write_two_sites

FIXTURE_TEXT = FIXTURE.read_text()
BASE: dict[str, Any] = YAML(typ="safe", pure=True).load(FIXTURE_TEXT)
SITES = tuple(BASE["sites"])  # dc-east, dc-west
COMMANDS = ("plan", "check", "status", "execute", "rollback")
TARGETED = ("plan", "execute")  # they check --dc against the inventory before any network
INVENTORY_NAME = "fuzz-inventory.yml"
VALID_INVENTORY_NAME = "inv.yml"  # written by write_two_sites
ERROR_START = "migrate: error:"


# --- the working directory: the valid base and the files it refers to -----------------------

# Inventories given to the argv fuzzer: all invalid (checked in prepare_workdir).
ARGV_INVENTORIES: dict[str, bytes | None] = {
    "missing": None,  # never created
    "empty": b"",
    "garbage": b"service: [\n",
    "unknown-key": (FIXTURE_TEXT + "fuzz_unknown: 1\n").encode(),
    "one-site": re.sub(r"\n  dc-west:\n.*", "\n", FIXTURE_TEXT, flags=re.S).encode(),
    "not-utf8": b"service: \xff\n",
    "directory": None,  # the ssh/ directory of the base
}


def argv_inventory_path(workdir: Path, name: str) -> Path:
    return workdir / "ssh" if name == "directory" else workdir / f"argv-{name}.yml"


def prepare_workdir(workdir: Path) -> Path:
    """The two_sites base (valid in TEST_ENV) plus the argv inventories; returns `workdir`."""
    write_two_sites(workdir)
    for name, data in ARGV_INVENTORIES.items():
        if data is not None:
            argv_inventory_path(workdir, name).write_bytes(data)
    load_inventory(workdir / VALID_INVENTORY_NAME)  # the base must be valid, or mutations prove nothing
    for name in ARGV_INVENTORIES:
        assert_not_loadable(argv_inventory_path(workdir, name))
    return workdir


@contextlib.contextmanager
def fuzz_environment() -> Iterator[None]:
    """The secrets of the base inventory set; MIGRATOR_INVENTORY and MIGRATOR_DEBUG unset."""
    saved = dict(os.environ)
    try:
        for name in ("MIGRATOR_INVENTORY", "MIGRATOR_DEBUG"):
            os.environ.pop(name, None)
        os.environ.update(TEST_ENV)
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    env.update(TEST_ENV)
    return env


# --- safety: nothing may reach the network ----------------------------------------------------

RUN_BODIES = ("run_plan", "run_check", "run_status", "run_execute", "run_rollback")


class NetworkGuard:
    """Records every attempt to connect, resolve a name or run a command body."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def take(self) -> list[str]:
        attempts, self.attempts = self.attempts, []
        return attempts

    def refuse(self, what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            self.attempts.append(f"{what}{args!r:.200}")
            raise ConnectionRefusedError(f"fuzz guard: {what} is not allowed while fuzzing")

        return refused


@contextlib.contextmanager
def no_network() -> Iterator[NetworkGuard]:
    """Patch socket connects/lookups and migrator.cli's command bodies to refuse and record."""
    guard = NetworkGuard()
    patches: list[tuple[Any, str]] = [
        (socket.socket, "connect"), (socket.socket, "connect_ex"),
        (socket, "create_connection"), (socket, "getaddrinfo"),
        *((cli, name) for name in RUN_BODIES),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name in patches]
    try:
        for owner, name in patches:
            label = f"{getattr(owner, '__name__', owner)}.{name}"
            setattr(owner, name, guard.refuse(label))
        yield guard
    finally:
        for owner, name, original in saved:
            setattr(owner, name, original)


# --- the models, walked alongside the base data -------------------------------------------------


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """Strip Annotated[...] and `X | None`; also say whether None was allowed."""
    optional = False
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            optional = optional or len(args) < len(typing.get_args(annotation))
            annotation = args[0]
        else:
            return annotation, optional


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _model_accepts_none(model: type[BaseModel]) -> bool:
    try:
        model.model_validate(None, context={"check_local_files": False})
    except ValidationError:
        return False
    return True


# Which invalid-value strategy applies to a leaf, by its key (endpoints items are URLs).
LEAF_KINDS = {
    "service": "name", "name": "name", "replication_slot": "slot",
    "username": "text", "user": "text", "scope": "text",
    "password": "secret", "namespace": "namespace", "api_url": "url", "endpoints": "url",
    "host": "host", "key_file": "file", "known_hosts": "file", "port": "port", "pg_port": "port",
    "data_dir": "remote_path", "bin_dir": "remote_path", "config_file": "remote_path",
}
PAIRS = {Dcs: (("username", "password"), ("cert_file", "key_file")),
         RestApi: (("cert_file", "key_file"),)}


@dataclass(frozen=True)
class Slot:
    """One key (or list item) present in the base data."""

    path: tuple[str | int, ...]
    kind: str  # a LEAF_KINDS value, or "section" (a model), "list", "sites"
    required: bool  # deleting it makes the inventory invalid
    none_ok: bool  # None may be accepted there


def _walk(data: Any, model: type[BaseModel], path: tuple[str | int, ...]) -> Iterator[Slot]:
    for key, value in data.items():
        field_info = model.model_fields[key]
        inner, optional = _unwrap(field_info.annotation)
        here = (*path, key)
        paired = any(key in pair and all(k in data for k in pair) for pair in PAIRS.get(model, ()))
        required = field_info.is_required() or paired
        origin = typing.get_origin(inner)
        if _is_model(inner):
            yield Slot(here, "section", required, optional or _model_accepts_none(inner))
            yield from _walk(value, inner, here)
        elif origin is dict:
            yield Slot(here, "sites", required, optional)
            site_model = _unwrap(typing.get_args(inner)[1])[0]
            for site_name, site in value.items():
                yield Slot((*here, site_name), "section", len(value) <= 2, False)
                yield from _walk(site, site_model, (*here, site_name))
        elif origin is list:
            yield Slot(here, "list", required, optional)
            item = _unwrap(typing.get_args(inner)[0])[0]
            for index, element in enumerate(value):
                # Both lists need at least one entry: only a lone item is required.
                if _is_model(item):
                    yield Slot((*here, index), "section", len(value) == 1, False)
                    yield from _walk(element, item, (*here, index))
                else:
                    yield Slot((*here, index), LEAF_KINDS[key], len(value) == 1, False)
        else:
            yield Slot(here, LEAF_KINDS[key], required, optional and not paired)


SLOTS = tuple(_walk(BASE, Inventory, ()))
LEAVES = tuple(s for s in SLOTS if s.kind not in ("section", "list", "sites"))
REQUIRED = tuple(s for s in SLOTS if s.required)
MAPPINGS = (((), False), *(((*s.path,), s.kind == "sites") for s in SLOTS
                         if s.kind in ("section", "sites")))


def _all_field_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    names: set[str] = set()
    if model in seen:
        return names
    seen.add(model)
    for name, info in model.model_fields.items():
        names.add(name)
        stack = [info.annotation]
        while stack:
            annotation = stack.pop()
            if _is_model(annotation):
                names |= _all_field_names(annotation, seen)
            stack.extend(typing.get_args(annotation))
    return names


FIELD_NAMES = frozenset(_all_field_names(Inventory, set()))


def _get(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        data = data[part]
    return data


def _set(data: Any, path: tuple[str | int, ...], value: Any) -> None:
    _get(data, path[:-1])[path[-1]] = value


def _delete(data: Any, path: tuple[str | int, ...]) -> None:
    del _get(data, path[:-1])[path[-1]]


# --- cases --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InventoryCase:
    kind: str  # which generator made it
    data: bytes  # the file's bytes
    invalid: bool  # invalid by construction: may be given to the CLI
    secret: str | None = None  # an inline secret that no message may echo

    def __repr__(self) -> str:
        shown = repr(self.data) if len(self.data) <= 4000 else (
            f"{self.data[:2000]!r} + ... + {self.data[-500:]!r} ({len(self.data)} bytes)"
        )
        secret = f", secret={self.secret!r}" if self.secret else ""
        return f"InventoryCase(kind={self.kind!r}, invalid={self.invalid}{secret}, data={shown})"


def dump(data: Any) -> str:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.allow_unicode = True
    yaml.width = 1 << 30  # no folding of long scalars
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()


def _case(kind: str, data: Any, *, invalid: bool = True, secret: str | None = None) -> InventoryCase:
    return InventoryCase(kind, dump(data).encode("utf-8"), invalid, secret)


def _text_case(kind: str, text: str, *, invalid: bool = True) -> InventoryCase:
    return InventoryCase(kind, text.encode("utf-8"), invalid)


# --- value strategies -----------------------------------------------------------------------------

WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2028\u2029\u3000"
assert all(c.isspace() for c in WHITESPACE)
text = st.text(max_size=40)  # any unicode (control characters included), no surrogates
unicode_text = st.text(st.characters(codec="utf-8"), max_size=40)
huge_text = st.builds(lambda c, n: c * n, st.characters(), st.integers(1_000, 100_000))
blank = st.text(st.sampled_from(WHITESPACE), max_size=6)
# A lone surrogate: YAML's "\ud800" escape gives one; the file itself stays valid UTF-8.
with_surrogate = st.builds(lambda a, c, b: a + c + b, text, st.characters(categories=["Cs"]), text)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), text,
    st.integers(-(10**30), 10**30), unicode_text, with_surrogate,
)
any_value = st.recursive(
    scalars | huge_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)
containers = st.one_of(
    st.lists(scalars, max_size=3),
    st.dictionaries(st.one_of(text, st.integers()), scalars, max_size=3),
)
# Wrong for every string-typed field (str, Path, SecretRef): no str field takes these.
not_text = st.one_of(st.integers(), st.floats(), st.booleans(), containers)
not_name_start = st.characters().filter(lambda c: not re.fullmatch(r"[A-Za-z0-9]", c))
bad_name = st.one_of(
    st.just(""),
    st.builds(lambda c, rest: c + rest, not_name_start, text),
    huge_text.map(lambda s: "!" + s),
    with_surrogate,  # names are ASCII
)
user_name = st.from_regex(r"[a-z][a-z0-9_-]{0,15}", fullmatch=True)
missing_file = st.one_of(
    text.map(lambda s: "/nonexistent-migrator-fuzz/" + s),
    text.map(lambda s: "fuzz-missing/" + s),  # relative: under the workdir, never created
    st.builds(lambda u, s: f"~{u}/fuzz-missing-{s}", user_name, text),  # ~user/... of any user
    st.sampled_from([".", "ssh", "/", ""]),  # directories
)
out_of_range_port = st.one_of(
    st.integers(max_value=0), st.integers(min_value=65536),
    st.integers(65536, 10**30), st.integers(-(10**30), 0),
)
not_port_number = st.one_of(
    text.map(lambda s: "x" + s), containers,
    st.floats().filter(lambda f: not (f.is_integer() and 1 <= f <= 65535)),
    st.booleans(),  # `port: true` is not port 1
)
positive_float_bad = st.one_of(
    st.floats(max_value=0), st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    text.map(lambda s: "x" + s), containers, st.integers(max_value=0), st.none(),
)

INVALID_BY_KIND: dict[str, st.SearchStrategy[Any]] = {
    "name": st.one_of(bad_name, not_text),
    "slot": st.one_of(bad_name, not_text, st.just("a" * 64), st.sampled_from(["A", "a-b", "a.b"])),
    "text": st.one_of(blank, not_text),
    "secret": st.one_of(
        not_text, blank,
        st.sampled_from(["env:", "file:", "env: ", "file:\t", "ENV:X", "File:x", "env"]),
        st.from_regex(r"[A-Z0-9_]{1,20}", fullmatch=True).map(lambda n: "env:MIGRATOR_FUZZ_UNSET_" + n),
        missing_file.filter(bool).map(lambda p: "file:" + p),
    ),
    "namespace": st.one_of(
        not_text, blank, st.text(st.sampled_from("/ \t"), min_size=1, max_size=5),
        st.builds(lambda a, w, b: f"/{a}{w}{b}/", st.text(min_size=1, max_size=5).filter(str.strip),
                  st.text(st.sampled_from(WHITESPACE), min_size=1, max_size=3),
                  st.text(min_size=1, max_size=5).filter(str.strip)),
    ),
    "url": st.one_of(
        not_text, text.map(lambda s: "x" + s), text.map(lambda s: "ftp://" + s),
        st.sampled_from(["", "http://", "https://", "http://:8008", "http://[::1", "http://h:99999",
                         "http://h:port", "127.0.0.1:8008", "//127.0.0.1:8008"]),
    ),
    "host": st.one_of(
        not_text, st.just(""),
        st.builds(lambda a, sep, b: a + sep + b, text, st.sampled_from([*WHITESPACE, "/"]), text),
    ),
    "file": st.one_of(not_text, missing_file),
    "port": st.one_of(out_of_range_port, not_port_number),
    "remote_path": st.one_of(
        not_text, st.just(""), text.map(lambda s: "x" + s), text.map(lambda s: "~/" + s),
        st.builds(lambda a, b: f"/{a}{{{b}}}", text,
                  st.text(st.characters(exclude_characters="}"), max_size=10).filter(
                      lambda b: b != "member")),
    ),
    # Lists and models: never a scalar, and a list never a mapping (and vice versa).
    "list": st.one_of(st.booleans(), st.integers(), st.floats(), text,
                      st.dictionaries(text, scalars, max_size=3)),
    "section": st.one_of(st.booleans(), st.integers(), st.floats(), text,
                         st.lists(scalars, max_size=3)),
    "sites": st.one_of(st.just({}), st.booleans(), st.integers(), text, st.lists(scalars, max_size=3)),
}


def _invalid_value(slot: Slot) -> st.SearchStrategy[Any]:
    strategy = INVALID_BY_KIND[slot.kind]
    return strategy if slot.none_ok else st.one_of(st.none(), strategy)


# --- inventories that are invalid by construction -----------------------------------------------


def _copy() -> dict[str, Any]:
    return copy.deepcopy(BASE)


@st.composite
def unknown_key(draw: st.DrawFn) -> InventoryCase:
    """A key no model knows, in any mapping at any depth (models forbid extra keys)."""
    path, is_sites = draw(st.sampled_from(MAPPINGS))
    data = _copy()
    target = _get(data, path)
    key = draw(st.one_of(
        text.filter(lambda k: k not in FIELD_NAMES), st.integers(), st.booleans(), st.none(),
        st.floats(), huge_text.map(lambda s: "zz" + s),
    ).filter(lambda k: k not in target))
    # A new site would be valid only as a complete mapping: give it anything else.
    value = draw(INVALID_BY_KIND["section"] | st.none() if is_sites else any_value)
    target[key] = value
    return _case("unknown-key", data)


@st.composite
def wrong_value(draw: st.DrawFn) -> InventoryCase:
    """A value of the wrong type or shape where the model expects something else."""
    slot = draw(st.sampled_from(SLOTS))
    data = _copy()
    _set(data, slot.path, draw(_invalid_value(slot)))
    return _case(f"wrong-value:{slot.kind}", data)


@st.composite
def missing_required(draw: st.DrawFn) -> InventoryCase:
    slot = draw(st.sampled_from(REQUIRED))
    data = _copy()
    _delete(data, slot.path)
    return _case("missing-required", data)


@st.composite
def inline_secret(draw: st.DrawFn) -> InventoryCase:
    """A password written in the file: refused, and never echoed."""
    slot = draw(st.sampled_from([s for s in LEAVES if s.kind == "secret"]))
    body = draw(st.text(st.characters(exclude_categories=("Z", "C")), max_size=30))
    secret = "S3cr3t-" + body
    data = _copy()
    _set(data, slot.path, secret)
    return _case("inline-secret", data, secret=secret)


@st.composite
def bad_local_file(draw: st.DrawFn) -> InventoryCase:
    """A key file, known_hosts or file: secret that is missing, a directory, or under ~user."""
    slot = draw(st.sampled_from([s for s in LEAVES if s.kind in ("file", "secret")]))
    path = draw(missing_file.filter(bool) if slot.kind == "secret" else missing_file)
    data = _copy()
    _set(data, slot.path, "file:" + path if slot.kind == "secret" else path)
    return _case("bad-local-file", data)


@st.composite
def bad_port(draw: st.DrawFn) -> InventoryCase:
    """An out-of-range or non-numeric port, on an existing port or a new pg_port."""
    data = _copy()
    ports = [s.path for s in LEAVES if s.kind == "port"]
    members = [s.path for s in SLOTS if s.kind == "section" and "members" in s.path
               and isinstance(s.path[-1], int)]
    path = draw(st.sampled_from(ports + [(*m, "pg_port") for m in members]))
    _set(data, path, draw(INVALID_BY_KIND["port"]))
    return _case("bad-port", data)


@st.composite
def duplicate_member(draw: st.DrawFn) -> InventoryCase:
    """Two members with the same name (across or within sites), or the same host and port."""
    data = _copy()
    members = [(site, i) for site in SITES for i in range(len(data["sites"][site]["members"]))]
    first, second = draw(st.permutations(members))[:2]
    which = draw(st.sampled_from(["name", "address"]) if first[0] == second[0] else st.just("name"))
    source = data["sites"][first[0]]["members"][first[1]]
    target = data["sites"][second[0]]["members"][second[1]]
    if which == "name":
        target["name"] = source["name"]
    else:
        target["host"] = source["host"]
        target.pop("pg_port", None)
        source.pop("pg_port", None)
    return _case(f"duplicate-member-{which}", data)


@st.composite
def duplicate_slot(draw: st.DrawFn) -> InventoryCase:
    data = _copy()
    first, second = draw(st.permutations(SITES))
    slot = data["sites"][first].get("replication_slot") or first.replace("-", "_")
    data["sites"][second]["replication_slot"] = slot
    return _case("duplicate-slot", data)


@st.composite
def too_few_sites(draw: st.DrawFn) -> InventoryCase:
    data = _copy()
    for site in draw(st.lists(st.sampled_from(SITES), min_size=1, unique=True)):
        del data["sites"][site]
    return _case("too-few-sites", data)


@st.composite
def bad_site_name(draw: st.DrawFn) -> InventoryCase:
    data = _copy()
    old = draw(st.sampled_from(SITES))
    new = draw(st.one_of(bad_name, st.sampled_from(["DC1", "dc 1", "dc/1", "-dc"]), st.integers(),
                         st.booleans(), st.none(), st.floats()).filter(lambda k: k not in SITES))
    data["sites"] = {(new if name == old else name): site for name, site in data["sites"].items()}
    return _case("bad-site-name", data)


@st.composite
def bad_gates_or_hooks(draw: st.DrawFn) -> InventoryCase:
    data = _copy()
    section, key = draw(st.sampled_from([
        ("gates", "max_replay_lag_bytes"), ("gates", "lag_window_seconds"),
        ("gates", "cascade_timeout_seconds"), ("gates", "catchup_timeout_seconds"),
        ("gates", "promote_timeout_seconds"), ("gates", "repoint_timeout_seconds"),
        ("gates", "connect_timeout_seconds"), ("hooks", "timeout_seconds"),
        ("hooks", "before_promote"), ("hooks", "after_promote"),
    ]))
    if key == "max_replay_lag_bytes":
        value = draw(st.one_of(st.integers(max_value=-1), st.none(), containers,
                               text.map(lambda s: "x" + s), st.floats().filter(lambda f: not f.is_integer())))
    elif key.endswith("_promote"):
        value = draw(st.one_of(blank, not_text))
    else:
        value = draw(positive_float_bad)
    data[section] = {key: value}
    return _case(f"bad-{section}", data)


@st.composite
def broken_pair(draw: st.DrawFn) -> InventoryCase:
    """One half of a pair that needs both (etcd user/password, TLS cert/key)."""
    data = _copy()
    choice = draw(st.sampled_from(["drop-etcd-username", "drop-etcd-password", "cert-only", "key-only"]))
    site = draw(st.sampled_from(SITES))
    if choice.startswith("drop"):
        dcs = data["sites"]["dc-west"]["dcs"]
        del dcs["username" if choice == "drop-etcd-username" else "password"]
    else:
        section = data["sites"][site][draw(st.sampled_from(["dcs", "rest_api"]))]
        section["cert_file" if choice == "cert-only" else "key_file"] = "ssh/id_ed25519"
    return _case(f"broken-pair:{choice}", data)


# Text-level damage: the YAML itself is broken, or hostile.

_LAST_API_URL = FIXTURE_TEXT.rindex("api_url:")
_KEY_LINES = [i for i, line in enumerate(FIXTURE_TEXT.splitlines())
              if re.match(r"^\s*(?:- )?[A-Za-z_][\w-]*:(?:\s|$)", line)]
YAML_TOKENS = [
    "- ", ": ", ":", "{", "}", "[", "]", ", ", "&a ", "*a", "&b ", "*b", "!!str ", "!!int ",
    "!!map ", "!!seq ", "!!binary ", "!!set ", "!!python/object:os.system ", "!tag ", "? ", "|",
    "|-", ">", "#", "\n", "  ", "\t", "'", '"', "---", "...", "%YAML 1.2\n", "%TAG ! x\n",
    "<<: ", "~", "null", "true", "1e9", ".nan", "0x1F", "0o17", "service", "sites", "members",
    "credentials", "password: ", "env:X", "file:/", "\ufeff", "\u2028", "\x85", "é", "\x00",
]


@st.composite
def truncated(draw: st.DrawFn) -> InventoryCase:
    """The base cut anywhere before the last member's api_url: that member lacks it."""
    return _text_case("truncated", FIXTURE_TEXT[: draw(st.integers(0, _LAST_API_URL))])


@st.composite
def not_utf8(draw: st.DrawFn) -> InventoryCase:
    raw = draw(st.one_of(st.just(FIXTURE_TEXT.encode()), st.binary(max_size=200)))
    # Each is invalid UTF-8 whatever surrounds it (four continuation bytes: at most three can
    # complete a preceding lead byte).
    bad = draw(st.sampled_from([b"\xff", b"\xfe", b"\xc3\x28", b"\x80" * 4, b"\xed\xa0\x80",
                                b"\xf8\x88", b"\xc0\xaf", b"\xf4\x90\x80\x80"]))
    at = draw(st.integers(0, len(raw)))
    return InventoryCase("not-utf8", raw[:at] + bad + raw[at:], True)


@st.composite
def yaml_garbage(draw: st.DrawFn) -> InventoryCase:
    """Random YAML-ish token soup (no `api_url` and no escapes, so no member is complete)."""
    parts = draw(st.lists(st.one_of(st.sampled_from(YAML_TOKENS), text), max_size=40))
    return _text_case("garbage", "".join(parts).replace("\\", "").replace("api_url", "api-url"))


def _nested(style: str, depth: int, indent: int) -> str:
    """A value nested `depth` levels deep, written after `key:`."""
    if style == "flow-list":
        return " " + "[" * depth + "]" * depth + "\n"
    if style == "flow-map":
        return " " + "{a: " * depth + "1" + "}" * depth + "\n"
    if style == "block-seq":
        return "\n" + " " * (indent + 2) + "- " * depth + "1\n"
    lines = [" " * (indent + 2 * (i + 1)) + "a:" for i in range(depth)]
    return "\n" + "\n".join(lines) + " 1\n"


@st.composite
def deep_nesting(draw: st.DrawFn) -> InventoryCase:
    style = draw(st.sampled_from(["flow-list", "flow-map", "block-seq", "block-map"]))
    # ruamel and yamlio.plain recurse once or more per level: ~250 levels exhaust Python's stack.
    depth = draw(st.one_of(st.integers(1, 60), st.integers(200, 400)))
    where = draw(st.sampled_from(["document", "service", "unknown-key"]))
    if where == "document":
        text_ = "root:" + _nested(style, depth, 0)
    elif where == "service":
        text_ = FIXTURE_TEXT.replace("service: shop\n", "service:" + _nested(style, depth, 0), 1)
    else:
        text_ = FIXTURE_TEXT + "zz_deep:" + _nested(style, depth, 0)
    return _text_case(f"deep-nesting:{style}:{where}", text_)


@st.composite
def huge_integer(draw: st.DrawFn) -> InventoryCase:
    """A port (or a name) written with thousands of digits."""
    digits = draw(st.integers(5, 6000))
    number = draw(st.sampled_from(["9", "-9"])) + "9" * (digits - 1)
    where = draw(st.sampled_from(["port: 2222", "port: 2200", "service: shop", "name: west-1"]))
    key = where.split(":")[0]
    return _text_case("huge-integer", FIXTURE_TEXT.replace(where, f"{key}: {number}", 1))


@st.composite
def duplicate_key(draw: st.DrawFn) -> InventoryCase:
    """A mapping-key line written twice (a duplicate key, or a list item missing its keys)."""
    lines = FIXTURE_TEXT.splitlines(keepends=True)
    index = draw(st.sampled_from(_KEY_LINES))
    lines.insert(index, lines[index])
    return _text_case("duplicate-key", "".join(lines))


@st.composite
def laughs(draw: st.DrawFn) -> InventoryCase:
    """A bounded 'billion laughs': anchors and aliases expanding to at most 8**4 = 4096 items."""
    levels, fan = draw(st.integers(1, 4)), draw(st.integers(1, 8))
    lines = ["zz_lol0: &lol0 [" + ", ".join(["lol"] * fan) + "]"]
    lines += [f"zz_lol{i}: &lol{i} [" + ", ".join([f"*lol{i - 1}"] * fan) + "]" for i in range(1, levels)]
    if draw(st.booleans()):
        return _text_case("laughs:document", "\n".join(lines) + "\n")
    return _text_case("laughs:unknown-key", FIXTURE_TEXT + "\n".join(lines) + "\n")


# ruamel's implicit timestamp (resolver.py): these read as a date or datetime, or fail to construct.
TIMESTAMP = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}(?:[Tt]|[ \t]+)[0-9]{1,2}"
             r":[0-9]{2}:[0-9]{2}(?:\.[0-9]*)?(?:[ \t]*(?:Z|[-+][0-9]{1,2}(?::[0-9]{2})?))?")
NON_STRING_SCALARS = [  # YAML reads these as something other than text (checked below)
    "0x1F", "0o17", "0b101", "1_000", "+12", "-0", "1e5", ".5", ".inf", "-.Inf", ".NaN", "true", "FALSE",
    "~", "null", "2001-13-45", "2001-02-30", "2001-1-1 25:00:00", "2001-01-01T00:00:00+99:00",
]


def _reads_as_text(value: str) -> bool:
    try:
        return isinstance(YAML(typ="rt").load(f"k: {value}")["k"], str)
    except Exception:  # noqa: BLE001 - not constructible is not text either
        return False


assert not any(_reads_as_text(v) for v in NON_STRING_SCALARS)
TAGS = ["!!int", "!!float", "!!bool", "!!null", "!!timestamp", "!!set", "!!omap", "!!pairs", "!!map",
        "!!seq", "!custom", "!!python/object:os.system", "!<tag:yaml.org,2002:int>"]


@st.composite
def non_string_scalar(draw: st.DrawFn) -> InventoryCase:
    """A text field whose value YAML reads as a number, date, bool or null, or with a tag that
    makes it one (never !!str or !!binary, which could still give text)."""
    where = draw(st.sampled_from(["service: shop", "scope: shop-east", "username: patroni"]))
    value = draw(st.one_of(
        st.sampled_from(NON_STRING_SCALARS),
        st.from_regex(TIMESTAMP, fullmatch=True),
        st.builds(lambda tag, v: f"{tag} {v}", st.sampled_from(TAGS),
                  st.one_of(st.sampled_from(["", "''", "x", "1e5", "0o9", "yes", "[a]", "{a: 1}"]),
                            st.from_regex(r"[A-Za-z0-9_.:+-]{0,12}", fullmatch=True))),
    ))
    key = where.split(":")[0]
    return _text_case("non-string-scalar", FIXTURE_TEXT.replace(where, f"{key}: {value}", 1))


RECURSIVE_ALIASES = [
    "&a {service: *a}\n",
    "&a [*a]\n",
    "&a {zz: [*a]}\n",
    FIXTURE_TEXT + "zz_loop: &loop [*loop]\n",
    FIXTURE_TEXT + "zz_loop: &loop {x: *loop}\n",
    FIXTURE_TEXT.replace("service: shop", "service: &s [*s]", 1),
    FIXTURE_TEXT.replace("credentials:", "credentials: &c\n  zz: *c", 1),
    FIXTURE_TEXT.replace("sites:", "sites: &s\n  zz: *s", 1),
]


@st.composite
def empty_file(draw: st.DrawFn) -> InventoryCase:
    bits = draw(st.lists(st.sampled_from(["", " ", "\n", "\r\n", "# comment\n", "#\n", "---\n", "...\n",
                                          "\ufeff", "~", "null", "Null", "NULL"]), max_size=6))
    return _text_case("empty", "".join(bits))


INVALID_GENERATORS: tuple[Callable[[], st.SearchStrategy[InventoryCase]], ...] = (
    empty_file,
    lambda: st.one_of(scalars, st.lists(any_value, max_size=3)).map(lambda v: _case("top-level", v)),
    unknown_key, wrong_value, missing_required, inline_secret, bad_local_file, bad_port, duplicate_member,
    duplicate_slot, too_few_sites, bad_site_name, bad_gates_or_hooks, broken_pair, truncated, not_utf8,
    yaml_garbage, duplicate_key, laughs,
    lambda: st.sampled_from(RECURSIVE_ALIASES).map(lambda t: _text_case("recursive-alias", t)),
    deep_nesting, huge_integer, non_string_scalar,
)


def invalid_inventories() -> st.SearchStrategy[InventoryCase]:
    """Inventories that cannot be valid, whatever was drawn: safe to give to the CLI.
    (One generator picked uniformly first, so that cheap ones do not crowd out the others.)"""
    return st.sampled_from(INVALID_GENERATORS).flatmap(lambda make: make())


# --- inventories that may stay valid (in-process loading only) -----------------------------------


@st.composite
def any_leaf_value(draw: st.DrawFn) -> InventoryCase:
    slot = draw(st.sampled_from(SLOTS))
    data = _copy()
    _set(data, slot.path, draw(any_value))
    return _case(f"any-value:{slot.kind}", data, invalid=False)


@st.composite
def text_edit(draw: st.DrawFn) -> InventoryCase:
    """Cut anywhere, change line endings, tabs, random character edits, YAML tags."""
    edit = draw(st.sampled_from(["cut", "crlf", "cr", "tab", "insert", "delete", "tag", "drop-line"]))
    t = FIXTURE_TEXT
    if edit == "cut":
        t = t[: draw(st.integers(0, len(t)))]
    elif edit == "crlf":
        t = t.replace("\n", "\r\n")
    elif edit == "cr":
        t = t.replace("\n", "\r")
    elif edit in ("tab", "drop-line"):
        lines = t.splitlines(keepends=True)
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = "\t" + lines[i].lstrip(" ") if edit == "tab" else ""
        t = "".join(lines)
    elif edit == "tag":
        colons = [m.end() for m in re.finditer(r": ", t)]
        at = draw(st.sampled_from(colons))
        tag = draw(st.sampled_from(["!!str ", "!!int ", "!!binary ", "!!float ", "!custom ", "!!null "]))
        t = t[:at] + tag + t[at:]
    else:
        for _ in range(draw(st.integers(1, 5))):
            at = draw(st.integers(0, len(t)))
            if edit == "insert":
                inserted = draw(st.one_of(st.characters(codec="utf-8"), st.sampled_from(YAML_TOKENS)))
                t = t[:at] + inserted + t[at:]
            else:
                t = t[:at] + t[at + 1:]
    return _text_case(f"edit:{edit}", t, invalid=False)


def maybe_valid_inventories() -> st.SearchStrategy[InventoryCase]:
    """Mutations that may leave the inventory valid: loaded in-process, never given to the CLI."""
    return st.one_of(any_leaf_value(), text_edit())


def all_inventories() -> st.SearchStrategy[InventoryCase]:
    """Three in four invalid by construction, one in four perhaps still valid."""
    return st.sampled_from([invalid_inventories] * 3 + [maybe_valid_inventories]).flatmap(lambda make: make())


# --- argv ------------------------------------------------------------------------------------------

VALUE_OPTIONS = ("--dc", "--format", "--out", "--plan", "--state-dir")
FLAG_OPTIONS = ("--json", "--watch", "--resume", "--yes")
FORMATS = ("text", "md", "json", "runbook")


def allowed_token(token: str) -> bool:
    """Random argv tokens may never choose an inventory, name a site, or ask for help/version."""
    return not (
        token.startswith(("-i", "--inventory"))
        or token.split("=", 1)[0] in ("--help", "--version")
        or any(site in token for site in SITES)
    )


# Any character a real argv can hold: no NUL, and of the surrogates only U+DC80..U+DCFF, which is
# how Python passes on argv bytes that are not UTF-8 (surrogateescape; subprocess turns them back
# into those bytes).
argv_char = st.one_of(
    st.characters(exclude_categories=("Cs",), exclude_characters="\x00"),
    st.characters(min_codepoint=0xDC80, max_codepoint=0xDCFF),
)
argv_text = st.text(argv_char, max_size=20).filter(allowed_token)
argv_token = st.one_of(
    st.sampled_from(VALUE_OPTIONS + FLAG_OPTIONS + FORMATS + ("--", "-", "", "xml", "JSON")),
    st.builds(lambda o, v: f"{o}={v}", st.sampled_from(VALUE_OPTIONS + FLAG_OPTIONS), argv_text),
    argv_text.map(lambda s: "--" + s).filter(allowed_token),
    argv_char.filter(lambda c: c != "i").map(lambda c: "-" + c),
    argv_text,
    st.builds(lambda c, n: c * n, argv_char.filter(lambda c: c not in "-i"), st.integers(1, 5000)),
)
bad_site = argv_text.filter(lambda s: s not in SITES)
OPTION_VALUES: dict[str, st.SearchStrategy[str]] = {
    "--format": st.sampled_from(FORMATS),
    "--dc": bad_site,
    "--out": argv_text.map(lambda s: "fuzz-never-written/" + s),
    "--plan": argv_text.map(lambda s: "fuzz-never-read/" + s),
    "--state-dir": argv_text.map(lambda s: "fuzz-never-created/" + s),
}
OPTIONS_OF = {  # what each command accepts besides --inventory
    "plan": ("--dc", "--format", "--out"),
    "check": ("--json", "--dc"),
    "status": ("--watch",),
    "execute": ("--dc", "--plan", "--resume", "--yes", "--state-dir"),
    "rollback": ("--yes", "--state-dir"),
}


def well_formed(command: str) -> st.SearchStrategy[tuple[str, ...]]:
    """An option of `command` (any option for an unknown one) with a value of the right kind, so
    that some command lines parse and get as far as the inventory or --dc checks."""
    names = st.sampled_from(OPTIONS_OF.get(command) or VALUE_OPTIONS + FLAG_OPTIONS)
    return names.flatmap(lambda name: OPTION_VALUES[name].map(lambda value: (name, value))
                         if name in OPTION_VALUES else st.just((name,)))


@dataclass(frozen=True)
class ArgvCase:
    argv: tuple[str, ...]
    inventory: str  # a key of ARGV_INVENTORIES, "valid" (plan/execute only) or "none"

    def __repr__(self) -> str:
        shown = tuple(a if len(a) <= 200 else f"{a[:100]}...({len(a)} chars)" for a in self.argv)
        return f"ArgvCase(inventory={self.inventory!r}, argv={list(shown)!r})"


@st.composite
def argv_cases(draw: st.DrawFn, workdir: Path) -> ArgvCase:
    """A command line for any command (or an unknown one) with random options and values. The
    inventory is always invalid, except the valid base for plan/execute with a --dc that names
    no site (all --dc values here are such names)."""
    # Mostly a known command with its own options; sometimes junk before it or an unknown one.
    root = draw(st.lists(argv_token, min_size=1, max_size=2)) if draw(st.sampled_from(
        [False] * 5 + [True])) else []
    unknown = argv_text.filter(lambda c: c not in COMMANDS)
    command = draw(st.one_of(*[st.just(c) for c in COMMANDS * 2], unknown))
    shape = draw(st.sampled_from(["well-formed", "well-formed", "mixed", "random"]))
    body = [] if shape == "random" else [
        t for pair in draw(st.lists(well_formed(command), max_size=4)) for t in pair]
    if shape != "well-formed":
        tokens = draw(st.lists(argv_token, min_size=1, max_size=8 if shape == "random" else 2))
        for token in tokens:
            body.insert(draw(st.integers(0, len(body))), token)
    choices = list(ARGV_INVENTORIES) + ["none"] + (["valid"] * 3 if command in TARGETED and not root else [])
    inventory = draw(st.sampled_from(choices))
    if inventory == "valid":
        body += ["--dc", draw(bad_site)]  # so that it gets as far as the site lookup
    if inventory != "none":
        path = str(workdir / VALID_INVENTORY_NAME if inventory == "valid"
                   else argv_inventory_path(workdir, inventory))
        spelled = draw(st.sampled_from([["-i", path], ["--inventory", path], [f"--inventory={path}"],
                                        [f"-i{path}"]]))
        at = draw(st.integers(0, len(body)))
        body[at:at] = spelled
    return ArgvCase((*root, command, *body), inventory)


# --- the properties ---------------------------------------------------------------------------------

Runner = Callable[[list[str]], tuple[int, str, str]]


def run_in_process(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.run(argv)
    return code, out.getvalue(), err.getvalue()


def run_subprocess(argv: list[str | bytes], cwd: Path) -> tuple[int, str, str]:
    result = subprocess.run(
        [sys.executable, "-m", "migrator.cli", *argv],
        cwd=cwd, env=subprocess_env(), capture_output=True, timeout=60,
    )
    decode = lambda b: b.decode("utf-8", "backslashreplace")  # noqa: E731
    return result.returncode, decode(result.stdout), decode(result.stderr)


def assert_not_loadable(path: Path) -> None:
    """Refuse to hand a loadable inventory to the CLI: it would contact the hosts in it."""
    try:
        load_inventory(path)
    except InventoryError:
        return
    except Exception:  # noqa: BLE001 - a crash is still no inventory; the CLI run shows how it surfaces
        return
    raise AssertionError(f"{path} is a VALID inventory; a generator meant to break it did not")


def assert_one_error_line(code: int, out: str, err: str, start: str = ERROR_START) -> str:
    assert "Traceback" not in out + err, err
    assert code == 2, f"exit {code}, stderr: {err!r}"
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"{len(lines)} lines on stderr: {err!r}"
    assert lines[0].startswith(start), lines[0]
    assert out == "", f"stdout: {out!r}"
    return lines[0]


def assert_inventory_error_lines(code: int, out: str, err: str, start: str) -> list[str]:
    """An invalid inventory: exit 2, one line per problem (at most 10 and an "and N more" line),
    each starting with `start` (the error label and the file)."""
    assert "Traceback" not in out + err, err
    assert code == 2, f"exit {code}, stderr: {err!r}"
    lines = err.splitlines()
    assert 1 <= len(lines) <= 11 and err.endswith("\n"), f"{len(lines)} lines on stderr: {err!r}"
    assert all(line.startswith(start) for line in lines), lines
    assert out == "", f"stdout: {out!r}"
    return lines


def assert_no_network(guard: NetworkGuard) -> None:
    attempts = guard.take()
    assert not attempts, f"network or command body reached: {attempts}"


def _one_line_error(error: InventoryError, source: str, case: InventoryCase) -> None:
    message = str(error)
    assert len(message.splitlines()) == 1 and message == message.strip(), repr(message)
    assert message.startswith(f"inventory {source}"), message
    assert all(len(p.splitlines()) == 1 for p in error.problems), error.problems
    if case.secret:
        assert case.secret not in message and not any(case.secret in p for p in error.problems), message


def check_inventory(case: InventoryCase, workdir: Path, guard: NetworkGuard) -> None:
    """Property 1: loading gives an Inventory (only if the case may be valid) or one-line
    InventoryError naming the file; any other exception propagates and fails the property."""
    path = workdir / INVENTORY_NAME
    path.write_bytes(case.data)
    attempts: list[tuple[str, Callable[[], Inventory]]] = [("load_inventory", lambda: load_inventory(path))]
    try:
        text_ = case.data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:  # parse_inventory too: it sees \r that read_text would have translated
        attempts.append(("parse_inventory", lambda: parse_inventory(
            text_, source=INVENTORY_NAME, base_dir=workdir)))
    for how, attempt in attempts:
        try:
            attempt()
        except InventoryError as error:
            _one_line_error(error, str(path) if how == "load_inventory" else INVENTORY_NAME, case)
        else:
            assert not case.invalid, f"{how} accepted a {case.kind} case, built to be invalid"
    assert_no_network(guard)


def cli_argv_for(case_path: Path, command: str, extras: list[str], spelling: int) -> list[str]:
    path = str(case_path)
    inventory = [["-i", path], ["--inventory", path], [f"--inventory={path}"], [f"-i{path}"]][spelling]
    target = ["--dc", "dc-west"] if command in TARGETED else []
    return [command, *inventory, *target, *extras]


COMMAND_EXTRAS: dict[str, st.SearchStrategy[list[str]]] = {
    "plan": st.lists(st.one_of(st.sampled_from(FORMATS).map(lambda f: ["--format", f]),
                               st.just(["--out", "fuzz-never-written.txt"])), max_size=2),
    "check": st.lists(st.one_of(st.just(["--json"]), st.sampled_from(SITES).map(lambda s: ["--dc", s])),
                      max_size=2),
    "status": st.lists(st.just(["--watch"]), max_size=1),
    "execute": st.lists(st.sampled_from([["--yes"], ["--resume"], ["--plan", "fuzz-never-read.json"],
                                         ["--state-dir", "fuzz-never-created"]]), max_size=3),
    "rollback": st.lists(st.sampled_from([["--yes"], ["--state-dir", "fuzz-never-created"]]), max_size=2),
}


@st.composite
def cli_inventory_cases(draw: st.DrawFn) -> tuple[InventoryCase, list[str], int]:
    """An invalid inventory, a command with valid options for it, and how -i is spelt."""
    case = draw(invalid_inventories())
    command = draw(st.sampled_from(COMMANDS))
    extras = [t for pair in draw(COMMAND_EXTRAS[command]) for t in pair]
    return case, [command, *extras], draw(st.integers(0, 3))


def check_cli_inventory(
    drawn: tuple[InventoryCase, list[str], int], workdir: Path, guard: NetworkGuard, run: Runner
) -> None:
    """Property 2: an invalid inventory, through any command, exits 2 with one line per problem,
    each naming it."""
    case, (command, *extras), spelling = drawn
    assert case.invalid
    path = workdir / INVENTORY_NAME
    path.write_bytes(case.data)
    assert_not_loadable(path)
    code, out, err = run(cli_argv_for(path, command, extras, spelling))
    assert_no_network(guard)  # first: a refused connection would also show as exit 1
    assert_inventory_error_lines(code, out, err, f"{ERROR_START} inventory {path}")
    if case.secret:
        assert case.secret not in err


def check_argv(case: ArgvCase, guard: NetworkGuard, run: Runner) -> None:
    """Property 3: a fuzzed command line exits 2 with one `migrate: error:` line."""
    code, out, err = run(list(case.argv))
    assert_no_network(guard)
    assert_one_error_line(code, out, err)


def summarize(value: Any, limit: int = 1500) -> str:
    """A readable reproducer: an inventory derived from two_sites.yml as a diff against it (or
    against its re-dumped form, for the mutations that re-dump it)."""
    if isinstance(value, tuple):
        return "(" + ", ".join(summarize(v, limit) for v in value) + ")"
    if isinstance(value, InventoryCase):
        try:
            lines = value.data.decode("utf-8").splitlines()
        except UnicodeDecodeError:
            lines = []
        diffs = [
            (list(difflib.unified_diff(base.splitlines(), lines, lineterm="", n=0))[2:], name)
            for base, name in ((FIXTURE_TEXT, "two_sites.yml"), (dump(BASE), "two_sites.yml as re-dumped"))
        ]
        diff, name = min(diffs, key=lambda d: len(d[0]))
        if lines and len(diff) < len(lines):
            shown = "\n".join(line[:300] + ("..." if len(line) > 300 else "") for line in diff[:16])
            more = f"\n... ({len(diff) - 16} more diff lines)" if len(diff) > 16 else ""
            return (f"InventoryCase(kind={value.kind!r}, invalid={value.invalid}): "
                    f"tests/unit/fixtures/inventory/{name}, changed:\n{shown}{more}")
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}... ({len(shown)} characters)"


def failure_group(description: str) -> str:
    """The bug behind a failure description, without the values that vary between examples: for
    a CLI failure what went wrong inside it, up to the first quoted value, digits elided."""
    key = description.split("internal error: ", 1)[-1]
    return re.sub(r"\d+", "N", re.split("['\"]", key, maxsplit=1)[0])


def describe_failure(exc: BaseException) -> str:
    """One line for a bench report: the exception and where it came from in migrator."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/migrator/" in f.filename]
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    text_ = " ".join(str(exc).split())
    return f"{type(exc).__name__}{where}: {text_[:300]}"

