"""The contacts file: devices and colleagues by name, kept 0600 and refused when damaged."""

from __future__ import annotations

import stat

import pytest

from cclink.errors import ContactsError, UnknownContact, UsageError
from cclink.wire.contacts import MAX_CONTACTS, Contact, ContactBook, check_name, name_from
from cclink.wire.keys import Identity


def key():
    return Identity.generate().public_key


@pytest.fixture
def book(tmp_path):
    return ContactBook(tmp_path / ".pubky" / "cclink-contacts.json")


def test_a_book_without_a_file_is_empty(book):
    assert book.all() == []
    assert book.find("laptop") is None


def test_added_contacts_are_found_by_name_in_any_case_and_by_key(book):
    laptop = book.add(Contact("laptop", key(), "device", 1))
    alice = book.add(Contact("alice", key(), "contact", 2))
    assert book.find("LAPTOP") == laptop
    assert book.find(alice.key.display) == alice
    assert book.find(alice.key.z32) == alice
    assert book.devices() == [laptop]
    assert book.all() == [laptop, alice]
    assert stat.S_IMODE(book.path.stat().st_mode) == 0o600


def test_a_name_taken_by_another_key_gets_a_number(book):
    first = book.add(Contact("desk", key(), "device", 1))
    second = book.add(Contact("desk", key(), "device", 1))
    assert (first.name, second.name) == ("desk", "desk-2")


def test_pairing_the_same_key_again_replaces_its_entry(book):
    same = key()
    book.add(Contact("old", same, "contact", 1))
    book.add(Contact("new", same, "device", 2))
    assert [(c.name, c.kind) for c in book.all()] == [("new", "device")]


def test_rename_and_remove(book):
    laptop = book.add(Contact("laptop", key(), "device", 1))
    book.add(Contact("desk", key(), "device", 1))
    assert book.rename("laptop", "travel").key == laptop.key
    with pytest.raises(UsageError, match="taken"):
        book.rename("travel", "desk")
    assert book.remove("travel").key == laptop.key
    assert [c.name for c in book.all()] == ["desk"]
    with pytest.raises(UnknownContact):
        book.remove("travel")
    with pytest.raises(UnknownContact, match="cclink devices"):
        book.get("nobody")


@pytest.mark.parametrize("name", ["", "-rf", ".hidden", "a b", "x" * 41, "name\x1b[31m", "é"])
def test_names_people_cannot_type_safely_are_refused(name):
    with pytest.raises(UsageError):
        check_name(name)


def test_a_name_that_looks_like_a_key_is_refused():
    with pytest.raises(UsageError, match="public key"):
        check_name(key().z32)


@pytest.mark.parametrize(
    ("hostname", "name"),
    [
        ("laptop.local", "laptop"),
        ("my mac\x1b[2J", "my-mac-2J"),
        ("---", "device"),
        ("", "device"),
        ("a" * 80, "a" * 40),
    ],
)
def test_names_from_a_peers_hostname_are_cleaned(hostname, name):
    assert name_from(hostname) == name


@pytest.mark.parametrize(
    "content",
    [
        b"not json",
        b"[]",
        b'{"version": 2, "contacts": []}',
        b'{"version": 1, "contacts": [{"name": "-x", "key": "k", "kind": "device", "added": 1}]}',
        b'{"version": 1, "contacts": {}}',
        b'{"version": 1, "version": 1, "contacts": []}',
    ],
)
def test_a_damaged_file_is_refused_with_its_path(book, content):
    book.path.parent.mkdir(parents=True)
    book.path.write_bytes(content)
    with pytest.raises(ContactsError, match=r"cclink-contacts\.json"):
        book.all()


def test_the_file_holds_a_bounded_number_of_contacts(book):
    for number in range(MAX_CONTACTS):
        book.add(Contact(f"c{number}", key(), "contact", 1))
    with pytest.raises(ContactsError, match="already holds"):
        book.add(Contact("one-more", key(), "contact", 1))
