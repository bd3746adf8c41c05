"""The API tokens file, managed: make a token (its SHA-256 goes into the file, the token
itself only to the caller, once), list the entries, revoke one by name.

Every change is checked with the gateway's own reader (``parse_tokens``) before the file
is replaced, atomically and readable by its owner only; a refused change leaves the file
as it was.  The gateway reads the file at start (docs/security_api.md).
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jiayuan.api_auth import AuthFileError, Role, parse_tokens, token_hash

HEADER = (
    "# API tokens of the Jiayuan gateway (docs/security_api.md): SHA-256 hashes, never the\n"
    "# tokens. Written by `jiayuan api token create|revoke`; read by the gateway at start.\n"
)
TOKEN_BYTES = 32


@dataclass(frozen=True, slots=True)
class TokenEntry:
    name: str
    role: str
    streets: tuple[str, ...]
    estates: tuple[str, ...]


def _entries(path: Path) -> list[dict[str, Any]]:
    """The file's entries as they stand (checked), or none when it does not exist yet."""
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise AuthFileError(f"{path}: cannot read the tokens file: {error}") from None
    parse_tokens(data, str(path))
    entries: list[dict[str, Any]] = data["tokens"]
    return entries


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    document = {"tokens": entries}
    parse_tokens(document, str(path))  # the gateway must accept what is written
    text = HEADER + yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def create_token(
    path: str | Path,
    name: str,
    role: Role,
    streets: Sequence[str] = (),
    estates: Sequence[str] = (),
) -> str:
    """Add a new token's hash to the file; the token (shown once, stored nowhere)."""
    where = Path(path)
    entries = _entries(where)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    entry: dict[str, Any] = {"name": name, "sha256": token_hash(token), "role": role.value}
    if streets:
        entry["streets"] = list(streets)
    if estates:
        entry["estates"] = list(estates)
    _write(where, [*entries, entry])
    return token


def list_tokens(path: str | Path) -> list[TokenEntry]:
    return [
        TokenEntry(
            e["name"], e["role"], tuple(e.get("streets") or ()), tuple(e.get("estates") or ())
        )
        for e in _entries(Path(path))
    ]


def revoke_token(path: str | Path, name: str) -> None:
    """Remove the token called ``name``; KeyError when there is none."""
    where = Path(path)
    entries = _entries(where)
    kept = [e for e in entries if e["name"] != name]
    if len(kept) == len(entries):
        raise KeyError(f"no token named {name!r} in {where}")
    _write(where, kept)
