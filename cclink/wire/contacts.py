"""The contacts file: the keys `cclink pair` added, your other devices and colleagues (docs/wire.md §11).

It sits beside the key (`~/.pubky/cclink-contacts.json`), 0600, replaced
atomically under a lock. A device is one of your own machines: every handoff
you publish is also encrypted to it, and `cclink pickup` looks up its key. A
contact is someone else: it receives only what you `--share` with it.
Names are what people type (`--share alice`), so they are short and plain.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from cclink.errors import ContactsError, InvalidPublicKey, UnknownContact, UsageError
from cclink.local import files
from cclink.wire import strictjson
from cclink.wire.keys import PublicKey

FILE_NAME = "cclink-contacts.json"
VERSION = 1
MAX_CONTACTS = 256
MAX_FILE_SIZE = 64 * 1024
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,39}")
LOCK_WAIT = 5.0

Kind = Literal["device", "contact"]
KINDS: tuple[Kind, ...] = ("device", "contact")


@dataclass(frozen=True)
class Contact:
    name: str
    key: PublicKey
    kind: Kind
    added: int  # seconds since the epoch

    @property
    def is_device(self) -> bool:
        return self.kind == "device"


def check_name(name: str) -> None:
    """UsageError unless name is 1-40 letters, digits, `.`, `_` or `-`, starting with a letter or digit."""
    if _looks_like_key(name.removeprefix("pk:")):
        raise UsageError("a contact's name must not look like a public key (52 z-base-32 characters)")
    if not NAME_PATTERN.fullmatch(name):
        raise UsageError(
            "a contact's name is 1 to 40 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )


def name_from(hostname: str, fallback: str = "device") -> str:
    """A valid name made from a hostname someone else sent: its first label, cleaned; fallback if nothing is left."""
    label = hostname.split(".", 1)[0]
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", label).strip("-._")[:40].strip("-._")
    try:
        check_name(cleaned)
    except UsageError:
        return fallback
    return cleaned


class ContactBook:
    """The contacts file at path: read whole, changed under a lock, written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def default(cls) -> ContactBook:
        return cls(files.key_path().parent / FILE_NAME)

    def all(self) -> list[Contact]:
        """Every contact, devices first, each group in the order added; [] when there is no file."""
        contacts = self._read()
        return [c for c in contacts if c.is_device] + [c for c in contacts if not c.is_device]

    def devices(self) -> list[Contact]:
        return [contact for contact in self._read() if contact.is_device]

    def find(self, name_or_key: str) -> Contact | None:
        """The contact with that name (any case) or that key; None when there is none."""
        return _find(self._read(), name_or_key)

    def get(self, name_or_key: str) -> Contact:
        """As find, but UnknownContact when there is none."""
        contact = self.find(name_or_key)
        if contact is None:
            raise UnknownContact(f"there is no device or contact named '{name_or_key}'; `cclink devices` lists them")
        return contact

    def add(self, contact: Contact) -> Contact:
        """Keep contact, replacing any entry with its key; its name gets a suffix if another key has it."""
        check_name(contact.name)
        with self._changing() as contacts:
            others = [c for c in contacts if c.key != contact.key]
            if len(others) >= MAX_CONTACTS:
                raise ContactsError(f"{self.path} already holds {MAX_CONTACTS} contacts; remove some first")
            stored = replace(contact, name=_free_name(contact.name, others))
            contacts[:] = [*others, stored]
        return stored

    def rename(self, name_or_key: str, new_name: str) -> Contact:
        check_name(new_name)
        with self._changing() as contacts:
            contact = self._get(contacts, name_or_key)
            clash = _find(contacts, new_name)
            if clash is not None and clash.key != contact.key:
                raise UsageError(f"the name '{new_name}' is taken by another key")
            renamed = replace(contact, name=new_name)
            contacts[:] = [renamed if c.key == contact.key else c for c in contacts]
        return renamed

    def remove(self, name_or_key: str) -> Contact:
        with self._changing() as contacts:
            contact = self._get(contacts, name_or_key)
            contacts[:] = [c for c in contacts if c.key != contact.key]
        return contact

    # --- the file ------------------------------------------------------------------

    def _get(self, contacts: list[Contact], name_or_key: str) -> Contact:
        contact = _find(contacts, name_or_key)
        if contact is None:
            raise UnknownContact(f"there is no device or contact named '{name_or_key}'; `cclink devices` lists them")
        return contact

    def _read(self) -> list[Contact]:
        if not self.path.exists():
            return []
        data = files.read_bounded(self.path, MAX_FILE_SIZE)
        if data is None:
            raise ContactsError(f"{self.path} is not a regular file of at most {MAX_FILE_SIZE // 1024} KiB")
        return parse(data, str(self.path))

    def _changing(self) -> _Change:
        return _Change(self)


class _Change:
    """The contacts as a list to change in place, written back when the block ends without an error."""

    def __init__(self, book: ContactBook) -> None:
        self._book = book
        self._lock = files.locked(book.path.with_name(book.path.name + ".lock"), wait=LOCK_WAIT)

    def __enter__(self) -> list[Contact]:
        if not self._lock.__enter__():
            self._lock.__exit__(None, None, None)
            raise ContactsError(f"{self._book.path} is being changed by another cclink; try again")
        try:
            self._contacts = self._book._read()
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        return self._contacts

    def __exit__(self, kind: object, error: object, traceback: object) -> None:
        try:
            if error is None:
                try:
                    files.write_private(self._book.path, serialize(self._contacts))
                except OSError as problem:
                    raise ContactsError(f"could not write {self._book.path}: {problem.strerror}") from None
        finally:
            self._lock.__exit__(None, None, None)


# --- the format ---------------------------------------------------------------------


def serialize(contacts: list[Contact]) -> bytes:
    document = {
        "version": VERSION,
        "contacts": [{"name": c.name, "key": c.key.z32, "kind": c.kind, "added": c.added} for c in contacts],
    }
    return (json.dumps(document, indent=2) + "\n").encode()


def parse(data: bytes, where: str) -> list[Contact]:
    """The contacts in a file's bytes; ContactsError naming where for anything off."""
    try:
        document = strictjson.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ContactsError(f"{where} is not valid JSON") from None
    if not isinstance(document, dict) or document.get("version") != VERSION:
        raise ContactsError(f"{where} is not a version {VERSION} cclink contacts file")
    entries = document.get("contacts")
    if not isinstance(entries, list) or len(entries) > MAX_CONTACTS:
        raise ContactsError(f"{where} must hold a list of at most {MAX_CONTACTS} contacts")
    contacts: list[Contact] = []
    for entry in entries:
        contact = _contact(entry, where)
        if _find(contacts, contact.name) is not None or _find(contacts, contact.key.z32) is not None:
            raise ContactsError(f"{where} names a contact or key twice")
        contacts.append(contact)
    return contacts


def _contact(entry: object, where: str) -> Contact:
    if not isinstance(entry, dict):
        raise ContactsError(f"{where} holds a contact that is not an object")
    name, key, kind, added = entry.get("name"), entry.get("key"), entry.get("kind"), entry.get("added")
    try:
        if not isinstance(name, str) or not isinstance(key, str):
            raise UsageError("name and key must be strings")
        check_name(name)
        public_key = PublicKey.parse(key)
    except (UsageError, InvalidPublicKey):
        raise ContactsError(f"{where} holds a contact with a bad name or key") from None
    if kind not in KINDS or not isinstance(added, int) or isinstance(added, bool) or added < 0:
        raise ContactsError(f"{where} holds a contact with a bad kind or date")
    return Contact(name, public_key, kind, added)


def _find(contacts: list[Contact], name_or_key: str) -> Contact | None:
    for contact in contacts:
        if contact.name.lower() == name_or_key.lower():
            return contact
    if _looks_like_key(name_or_key.removeprefix("pk:")):
        try:
            key = PublicKey.parse(name_or_key)
        except InvalidPublicKey:
            return None
        return next((contact for contact in contacts if contact.key == key), None)
    return None


def _free_name(name: str, others: list[Contact]) -> str:
    """name, or name-2, name-3 ... : the first no other contact has."""
    candidate, number = name, 1
    while _find(others, candidate) is not None:
        number += 1
        suffix = f"-{number}"
        candidate = name[: 40 - len(suffix)] + suffix
    return candidate


def _looks_like_key(text: str) -> bool:
    return len(text) == 52 and re.fullmatch(r"[ybndrfg8ejkmcpqxot1uwisza345h769]+", text.lower()) is not None
