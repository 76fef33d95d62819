"""Secret references and the local files that hold credentials.

The inventory never holds a secret value, only where to find it: `env:NAME` or `file:PATH`.
`SecretRef` keeps that reference, shows only the reference, and reads the value on demand
with `reveal()`. `mask()` hides revealed values in any text that could be echoed.

Validation reads two optional keys from the pydantic validation context:
`base_dir` (relative paths resolve against it: the inventory file's directory) and
`check_local_files` (default True; False skips the "does it exist / is it set" checks so that
pure unit tests can build models without creating files).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler, ValidationInfo
from pydantic_core import PydanticCustomError, core_schema

from migrator.errors import shown

MASK = "********"
ENV_PREFIX = "env:"
FILE_PREFIX = "file:"


def _context(info: ValidationInfo | None) -> dict[str, Any]:
    context = info.context if info is not None else None
    return context if isinstance(context, dict) else {}


def checks_local_files(info: ValidationInfo | None) -> bool:
    return bool(_context(info).get("check_local_files", True))


def resolve_local_path(raw: str | os.PathLike[str], info: ValidationInfo | None) -> Path:
    """Expand `~` and make a relative path absolute against the inventory's directory."""
    try:
        path = Path(raw).expanduser()
    except RuntimeError:  # "~nosuchuser/...": no home directory to expand to
        raise ValueError(f"cannot expand {raw}: no such user's home directory; write the path out") from None
    if path.is_absolute():
        return path
    base_dir = _context(info).get("base_dir")
    return (Path(base_dir) if base_dir is not None else Path.cwd()) / path


def readable_file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as a file by the current user, or None if it can."""
    try:
        if not path.exists():
            return f"file {path} does not exist"
        if not path.is_file():
            return f"{path} is not a regular file"
    except OSError as exc:  # e.g. a parent directory without search permission
        return f"cannot look at {path}: {exc.strerror or exc}"
    if not os.access(path, os.R_OK):
        return f"file {path} is not readable by the current user (uid {os.getuid()})"
    return None


def readable_file_error(path: Path) -> PydanticCustomError | None:
    problem = readable_file_problem(path)
    if problem is None:
        return None
    return PydanticCustomError(
        "local_file",
        "{problem}; create it or fix the path (relative paths start at the inventory's directory)",
        {"problem": problem},
    )


class SecretRef:
    """A reference to a secret (`env:NAME` or `file:PATH`), never the secret itself."""

    __slots__ = ("reference",)

    def __init__(self, reference: str) -> None:
        if not reference.startswith((ENV_PREFIX, FILE_PREFIX)):
            raise ValueError(
                "secret written inline; put it in an environment variable (env:NAME) or a file (file:PATH)"
            )
        self.reference = reference

    @property
    def kind(self) -> str:
        return "env" if self.reference.startswith(ENV_PREFIX) else "file"

    @property
    def target(self) -> str:
        """The variable name or the file path, without the prefix."""
        return self.reference.split(":", 1)[1]

    def reveal(self) -> str:
        """Read the value now (files are re-read, so a rotated secret is picked up)."""
        if self.kind == "env":
            try:
                return os.environ[self.target]
            except KeyError:
                raise LookupError(f"environment variable {self.target} is not set") from None
        text = Path(self.target).read_text(encoding="utf-8")
        # Files written by `echo` end with one newline that is not part of the secret.
        return text[:-1] if text.endswith("\n") else text

    def __repr__(self) -> str:
        return f"SecretRef({self.reference!r})"

    def __str__(self) -> str:
        return self.reference

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and other.reference == self.reference

    def __hash__(self) -> int:
        return hash(self.reference)

    # --- pydantic integration -------------------------------------------------------------

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.with_info_plain_validator_function(
            cls._validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda ref: ref.reference, return_schema=core_schema.str_schema()
            ),
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> dict[str, Any]:
        return {"type": "string", "pattern": "^(env|file):.+$"}

    @classmethod
    def _validate(cls, value: Any, info: ValidationInfo) -> SecretRef:
        if isinstance(value, SecretRef):
            return value
        if value is None:
            raise PydanticCustomError("secret_ref_missing", "no value given; write env:NAME or file:PATH")
        if not isinstance(value, str):
            raise PydanticCustomError(
                "secret_ref_type",
                "expected a secret reference (env:NAME or file:PATH), got {got}",
                {"got": type(value).__name__},
            )
        if not value.startswith((ENV_PREFIX, FILE_PREFIX)):
            # The value itself must never appear in the message: it may be the password.
            raise PydanticCustomError(
                "secret_inline",
                "secret written inline; put it in an environment variable (env:NAME) or a file (file:PATH)",
            )
        kind, target = value.split(":", 1)
        if not target.strip():
            raise PydanticCustomError(
                "secret_ref_empty",
                "'{ref}' names nothing; write env:NAME or file:PATH",
                {"ref": shown(value)},
            )
        if kind == "file":
            path = resolve_local_path(target, info)
            if checks_local_files(info) and (error := readable_file_error(path)):
                raise error
            # Stored resolved, so reveal() does not depend on the current directory.
            return cls(FILE_PREFIX + str(path))
        if checks_local_files(info):
            if target not in os.environ:
                raise PydanticCustomError(
                    "secret_env_unset",
                    "environment variable {name} is not set; export it before running migrate",
                    {"name": target},
                )
            if os.environ[target] == "":
                raise PydanticCustomError(
                    "secret_env_empty",
                    "environment variable {name} is empty; export the secret in it",
                    {"name": target},
                )
        return cls(value)


def mask_values(value: Any, secrets: list[str]) -> Any:
    """`value` (JSON-shaped) with every string in it masked; keys and non-strings stay as they are,
    so the shape, and whatever reads it back, survive a secret that equals a key or a number."""
    # The order is worked out once for the whole document (a fleet plan masks 500 plans' strings).
    return _masked_values(value, _masking_order(secrets))


def _masked_values(value: Any, ordered: list[str]) -> Any:
    if isinstance(value, str):
        return _masked(value, ordered)
    if isinstance(value, dict):
        return {key: _masked_values(item, ordered) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked_values(item, ordered) for item in value]
    return value


def mask(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each non-empty secret value in `text` with `********`."""
    return _masked(text, _masking_order(secrets))


def _masking_order(secrets: Iterable[str]) -> list[str]:
    # Longest first, so a secret that contains another one is hidden whole.
    return sorted({s for s in secrets if s}, key=len, reverse=True)


def _masked(text: str, ordered: list[str]) -> str:
    for secret in ordered:
        text = text.replace(secret, MASK)
    return text
