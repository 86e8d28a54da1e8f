"""Keys as people type them on the command line: a public key, or the name of a paired device or contact."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cclink.wire.keys import PublicKey


def share_key(text: str) -> PublicKey:
    """The key --share names."""
    from cclink.wire.keys import PublicKey

    return PublicKey.parse(text)
