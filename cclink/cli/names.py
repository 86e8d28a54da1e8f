"""Keys as people type them on the command line: a public key, or the name of a paired device or contact."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cclink.wire.contacts import ContactBook
    from cclink.wire.keys import PublicKey


def share_key(text: str, book: ContactBook | None = None) -> PublicKey:
    """The key --share names: a public key, or a device's or contact's name."""
    return key_or_name(text, book)


def key_or_name(text: str, book: ContactBook | None = None) -> PublicKey:
    """The key text spells out, or the key of the device or contact named text (book: the contacts file).

    A key needs no contacts file, so a damaged one stands in the way only of names.
    """
    from cclink.errors import InvalidPublicKey, UsageError
    from cclink.wire import contacts
    from cclink.wire.keys import PublicKey

    try:
        return PublicKey.parse(text)
    except InvalidPublicKey as not_a_key:
        try:
            contacts.check_name(text)
        except UsageError:
            # What is wrong with it as a key says more than that it is no name either.
            raise not_a_key from None
    return (book or contacts.ContactBook.default()).get(text).key
