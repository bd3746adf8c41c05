"""Property-manager contacts per estate, from a YAML file.

    # contacts.yaml: estate id → the people to tell
    sj-fangsong-001:
      - name: 王经理
        email: wang@example.com
        webhook_url: https://pm.example.com/hooks/jiayuan
        phone: "13800000000"

Each contact needs a name and an e-mail address or a webhook URL (or both).  Anything
else is refused with the file and the entry named.  The estate registry (issue 5) can
stand in for the file by offering the same ``for_estate`` method (``ContactSource``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import yaml


class ContactsError(ValueError):
    """A contacts file that cannot be used; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Contact:
    name: str
    email: str = ""
    webhook_url: str = ""
    phone: str = ""


class ContactSource(Protocol):
    def for_estate(self, estate: str) -> list[Contact]: ...


_FIELDS = ("name", "email", "webhook_url", "phone")


class ContactBook:
    """Contacts per estate id; an estate nobody listed has none."""

    def __init__(self, contacts: Mapping[str, list[Contact]]) -> None:
        self._contacts = {estate: list(people) for estate, people in contacts.items()}

    def for_estate(self, estate: str) -> list[Contact]:
        return list(self._contacts.get(estate, []))

    @property
    def estates(self) -> list[str]:
        return sorted(self._contacts)

    @classmethod
    def load(cls, path: str | Path) -> ContactBook:
        path = Path(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ContactsError(f"{path}: contacts file not found") from None
        except UnicodeDecodeError as error:
            raise ContactsError(f"{path}: not UTF-8 text: {error.reason}") from None
        except OSError as error:
            raise ContactsError(f"{path}: cannot read: {error.strerror}") from None
        except yaml.YAMLError as error:
            raise ContactsError(f"{path}: not valid YAML: {error}") from None
        if data is None:
            return cls({})
        if not isinstance(data, dict):
            raise ContactsError(f"{path}: expected a mapping of estate id → list of contacts")
        book: dict[str, list[Contact]] = {}
        for estate, people in data.items():
            where = f"{path}: estate {estate!r}"
            if not isinstance(estate, str) or not estate:
                raise ContactsError(f"{where}: an estate id must be a non-empty string")
            if not isinstance(people, list):
                raise ContactsError(f"{where}: expected a list of contacts")
            book[estate] = [
                _contact(entry, f"{where} contact #{number}")
                for number, entry in enumerate(people, start=1)
            ]
            _no_duplicates(book[estate], where)
        return cls(book)


def _contact(entry: Any, where: str) -> Contact:
    if not isinstance(entry, dict):
        raise ContactsError(f"{where}: expected a mapping with {', '.join(_FIELDS)}")
    unknown = sorted(str(key) for key in entry if key not in _FIELDS)
    if unknown:
        raise ContactsError(f"{where}: unknown key(s) {unknown}; known: {list(_FIELDS)}")
    for key, value in entry.items():
        if not isinstance(value, str):
            hint = " (quote phone numbers)" if key == "phone" else ""
            raise ContactsError(f"{where}: {key} {value!r} is not a string{hint}")
    if not str(entry.get("name", "")).strip():
        raise ContactsError(f"{where}: name is missing")
    contact = Contact(**{key: value.strip() for key, value in entry.items()})
    where = f"{where} ({contact.name})"
    if not contact.email and not contact.webhook_url:
        raise ContactsError(f"{where}: give an email or a webhook_url (or both)")
    if contact.email and ("@" not in contact.email or " " in contact.email):
        raise ContactsError(f"{where}: email {contact.email!r} is not an address")
    if contact.webhook_url:
        parts = urlsplit(contact.webhook_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ContactsError(f"{where}: webhook_url {contact.webhook_url!r} is not http(s)")
    return contact


def _no_duplicates(people: list[Contact], where: str) -> None:
    # Notification keys are per address: two entries with one address would be one message.
    seen: set[str] = set()
    for contact in people:
        for address in (contact.email.lower(), contact.webhook_url):
            if address and address in seen:
                raise ContactsError(f"{where}: {address} is listed twice")
            if address:
                seen.add(address)
