"""Reading a YAML file a person wrote (the inventory, the fleet file) and saying what is wrong
with it, one line per problem: `<kind> <file>: <yaml.path> (line N): <what>; <fix>`.

Shared by `model/inventory.py` and `model/fleet.py`, so both files are read and complained about
the same way: the same four one-line errors for an unreadable file, the same YAML syntax and
duplicate-key lines, and pydantic's errors turned into plain sentences at the line they are about.
"""

from __future__ import annotations

import os
import re
import threading
import types
import typing
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from migrator.errors import InventoryError, shown
from migrator.model.simple_yaml import Unsure, simple_load
from migrator.model.yamlio import MAX_NODES


def read_text_file(
    path: str | os.PathLike[str], what: str, missing_fix: str, error: type[InventoryError] = InventoryError
) -> str:
    """A YAML file's text; each reason it cannot be read is one `error` line naming `what` (e.g.
    "inventory F") and, for a missing file, `missing_fix`."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{what}: file not found; {missing_fix}") from None
    except IsADirectoryError:
        raise error(f"{what}: is a directory; pass the {what.split()[0]} file") from None
    except UnicodeDecodeError as exc:
        raise error(f"{what}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise error(f"{what}: cannot read it: {exc.strerror or exc}") from None


# One loader of each type per thread (`fleet plan` loads in a pool): a YAML instance's first load
# builds its scanner, parser and resolver, about a third of the cost of loading an inventory.
_LOADERS = threading.local()


def _loader(typ: str) -> YAML:
    loader: YAML | None = getattr(_LOADERS, typ, None)
    if loader is None:
        loader = YAML(typ=typ, pure=True)
        loader.allow_duplicate_keys = False
        setattr(_LOADERS, typ, loader)
    return loader


def _forget_loader(typ: str) -> None:
    # After a failed load the instance's reader and scanner may hold the broken document's state.
    setattr(_LOADERS, typ, None)


def quick_load(text: str) -> Any:
    """The YAML of a file as plain Python, read without line numbers (faster than the round trip):
    by `simple_yaml` when the file is plain block YAML, else by ruamel's safe loader; or None
    whenever neither can vouch for the result: any error, or any value that is not a mapping,
    list, text, number, boolean or null (dates, sets, tags...). The caller then takes the
    round-trip path, whose nodes give each problem its line."""
    try:
        return simple_load(text)  # plain block YAML, as inventories are written: no ruamel at all
    except Unsure:
        pass
    try:
        data = _loader("safe").load(text)
    except Exception:  # noqa: BLE001 - the round-trip path reads the file again and says what is wrong
        _forget_loader("safe")
        return None
    return data if _only_plain_types(data, [MAX_NODES], set()) else None


def _only_plain_types(node: Any, budget: list[int], path: set[int]) -> bool:
    # Past MAX_NODES values (aliases expanded), or an alias inside itself, the round-trip path and
    # `yamlio.plain` say what is wrong.
    budget[0] -= 1
    if budget[0] < 0:
        return False
    kind = type(node)
    if kind is dict or kind is list:
        if id(node) in path:  # an alias inside itself
            return False
        path.add(id(node))
        items = [*node.keys(), *node.values()] if kind is dict else node
        plain = all(_only_plain_types(item, budget, path) for item in items)
        path.discard(id(node))
        return plain
    if kind is str:
        try:
            node.encode("utf-8")  # a lone surrogate ("\uD800") is refused on the round-trip path
        except UnicodeEncodeError:
            return False
        return True
    return node is None or kind in (bool, int, float)


def parse_yaml(text: str, source: str, kind: str = "inventory") -> Any:
    """The YAML of a file as round-trip nodes (they remember their lines); `kind` names the file in
    messages ("inventory", "fleet"). Any problem is one InventoryError line with the line number."""
    yaml = _loader("rt")  # round-trip nodes remember their line numbers
    try:
        return yaml.load(text)
    except DuplicateKeyError as exc:
        _forget_loader("rt")
        # exc.problem also quotes both values; they must not reach a terminal or a log.
        match = re.search(r'duplicate key "(.*?)"', exc.problem or "")
        key = match.group(1) if match else "?"
        raise InventoryError(
            f"{kind} {source}: line {_mark_line(exc)}: key '{key}' appears twice in the same "
            "mapping; keep only one of them"
        ) from None
    except MarkedYAMLError as exc:
        _forget_loader("rt")
        raise InventoryError(
            f"{kind} {source}: line {_mark_line(exc)}: YAML syntax error: "
            f"{exc.problem or exc.context}; check the indentation and quoting there"
        ) from None
    except Exception as exc:  # noqa: BLE001 - whatever ruamel trips on, it is the file's fault
        _forget_loader("rt")
        # ruamel builds some scalars itself: 2001-13-45 is read as a date and fails there,
        # an empty `!!bool` tag raises KeyError.
        raise InventoryError(
            f"{kind} {source}: a value could not be read ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}); put quotes around values that "
            "look like dates, times or numbers"
        ) from None
    except YAMLError as exc:
        raise InventoryError(f"{kind} {source}: YAML error: {exc}") from None


def _mark_line(exc: MarkedYAMLError) -> str:
    mark = exc.problem_mark or exc.context_mark
    return str(mark.line + 1) if mark is not None else "?"


# --- turning pydantic errors into one line each -------------------------------------------


def located(
    exc: ValidationError, root: type[BaseModel], example: str = "examples/testbed.yml"
) -> list[tuple[tuple[Any, ...], str]]:
    """Each pydantic error as (its location in the file's data, one plain sentence); `root` is the
    model of the whole file, `example` the file a missing key is shown in."""
    located = []
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"]) + tuple((error.get("ctx") or {}).get("at", ()))
        located.append((loc, _describe_error(error, loc, root, example)))
    return located


def problems_error(
    source: str, tree: CommentedMap, located: list[tuple[tuple[Any, ...], str]], kind: str = "inventory"
) -> InventoryError:
    """Every problem as one line with file, YAML path and line; the error's message is the first
    of them and a count of the rest (`problems` keeps them all)."""
    problems: list[tuple[int | None, str]] = []
    for loc, text in located:
        line = _line_of(tree, loc)
        where = _yaml_path(loc)
        if line is not None:
            where = f"{where} (line {line})" if where else f"line {line}"
        prefix = f"{kind} {source}: {where}: " if where else f"{kind} {source}: "
        problems.append((line, prefix + text))
    # Top of the file first; problems without a line (a missing top-level key) last, since a
    # misspelt key that has a line usually explains them.
    problems.sort(key=lambda item: (item[0] is None, item[0] or 0))
    lines = [text for _, text in problems]
    message = lines[0] if len(lines) == 1 else f"{lines[0]} (and {len(lines) - 1} more problem(s))"
    return InventoryError(message, problems=lines, source=source)


def _yaml_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if part == "[key]":
            continue
        if isinstance(part, int):
            path += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", str(part)):
            path += f".{part}" if path else str(part)
        else:
            path += f"['{shown(part)}']"
    return path


def _line_of(tree: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node of `loc` present in the YAML (a key's own line)."""
    node, line = tree, None
    for part in loc:
        try:
            if isinstance(node, CommentedMap) and part in node:
                line = node.lc.key(part)[0]
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
                line = node.lc.item(part)[0]
                node = node[part]
            else:
                break
        except (KeyError, TypeError, AttributeError):
            break  # e.g. keys merged in with <<: have no position of their own
    return line + 1 if line is not None else None


def describe(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 0.0 reads as 0 in a message about a YAML value
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return f"'{shown(value, 40)}'"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"a {type(value).__name__}"


_EXPECTED = {
    "int_parsing": "an integer",
    "int_type": "an integer",
    "int_from_float": "a whole number",
    "float_parsing": "a number",
    "float_type": "a number",
    "finite_number": "a finite number",
    "bool_parsing": "true or false",
    "bool_type": "true or false",
    "string_type": "text",
    "path_type": "a file path",
    "dict_type": "a mapping (key: value lines)",
    "model_type": "a mapping (key: value lines)",
    "model_attributes_type": "a mapping (key: value lines)",
    "list_type": "a list (lines starting with '- ')",
}


def _describe_error(error: Any, loc: tuple[Any, ...], root: type[BaseModel], example: str) -> str:
    kind, ctx, value = error["type"], error.get("ctx") or {}, error.get("input")
    if kind == "missing":
        return f"missing required key '{loc[-1]}'; add it ({example} shows every key)"
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1], root)
        allowed = f"; allowed keys here: {', '.join(model.model_fields)}" if model else ""
        return f"unknown key '{shown(loc[-1])}'{allowed}"
    if kind in _EXPECTED:
        if value is None:
            return f"no value given; write {_EXPECTED[kind]} after the colon"
        hint = ""
        if kind == "string_type" and isinstance(value, (int, float)):
            hint = "; put it in quotes"
        return f"expected {_EXPECTED[kind]}, got {describe(value)}{hint}"
    if kind == "literal_error":
        expected = ctx.get("expected")
        return f"expected {expected}, got {describe(value)}; no other value is supported yet"
    if kind == "too_short":
        minimum = ctx.get("min_length")
        entries = "entry" if minimum == 1 else "entries"
        return f"needs at least {minimum} {entries}, found {ctx.get('actual_length')}; add them"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        bound = {
            "greater_than": f"greater than {describe(ctx.get('gt'))}",
            "greater_than_equal": f"at least {describe(ctx.get('ge'))}",
            "less_than": f"less than {describe(ctx.get('lt'))}",
            "less_than_equal": f"at most {describe(ctx.get('le'))}",
        }[kind]
        return f"must be {bound}, got {describe(value)}"
    # Our own validators already speak plainly; pydantic's other messages are one sentence.
    return str(error["msg"]).splitlines()[0]


def _model_at(loc: tuple[Any, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class that validates the mapping at `loc` (under `root`), to list its allowed keys."""
    annotation: Any = root
    for part in loc:
        annotation = _unwrap(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = annotation.model_fields.get(str(part))
            if field is None:
                return None
            annotation = field.annotation
        elif typing.get_origin(annotation) is dict:
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return None
    annotation = _unwrap(annotation)
    is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_model else None


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and `X | None` down to X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation
