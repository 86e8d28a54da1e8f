"""Your own key: create or import it, load it (asking for its passphrase through the UI), say where it is.

The CLI hands the flows a `KeyStore` for the key file's place
(~/.pubky/secret_key, where the Rust cclink keeps it too); tests hand one
under a temporary directory. Its `unlocked` source, when it has one (the
agent, after `cclink unlock`), is asked before the passphrase is, for the
key of exactly the key file's present bytes.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from cclink.errors import CclinkError, UsageError, WireError, WrongPassphrase
from cclink.flows.ui import SECRET_TRIES, UI, go_ahead
from cclink.local import files
from cclink.wire import envelope, keyfile, strictjson
from cclink.wire.keys import Identity, PublicKey

PASSPHRASE_ENV = "CCLINK_PASSPHRASE"
# In the state directory: the public key of the encrypted key file, so that whoami needs no passphrase.
PUBLIC_KEY_NOTE = "public-key.json"
MAX_NOTE_SIZE = 1024


class UnlockedKeys(Protocol):
    """Where a key unlocked earlier is held (the agent, after `cclink unlock`)."""

    def seed(self, key_file_sha256: bytes) -> bytes | None:
        """The seed of the key opened from a key file whose bytes have this SHA-256; None if none is held."""
        ...


@dataclass(frozen=True)
class OpenedKey:
    """A key as loaded, and the key file it came from: its bytes' SHA-256, whether they are encrypted."""

    identity: Identity
    key_file_sha256: bytes
    encrypted: bool


@dataclass(frozen=True)
class KeyStore:
    """Where the user's key lives, and where the public key of an encrypted one is remembered (for whoami)."""

    path: Path
    public_key_note: Path | None = None
    unlocked: UnlockedKeys | None = field(default=None, compare=False)

    @classmethod
    def default(cls, unlocked: UnlockedKeys | None = None) -> KeyStore:
        return cls(files.key_path(), files.state_dir() / PUBLIC_KEY_NOTE, unlocked)

    def public_key(self, ui: UI) -> PublicKey:
        """The user's public key; for an encrypted key, the passphrase is asked only until it is remembered."""
        known = self.known_public_key()
        return known if known is not None else self.load(ui).public_key

    def known_public_key(self) -> PublicKey | None:
        """The user's public key if it is known without the passphrase (a plain key, or one remembered)."""
        data = keyfile.read_key_file(self.path)
        return keyfile.plain_public_key(data, str(self.path)) or self._remembered(data)

    def _remembered(self, key_file: bytes) -> PublicKey | None:
        """The public key noted for exactly these key file bytes; None for a missing, stale or damaged note."""
        if self.public_key_note is None:
            return None
        try:
            with open(self.public_key_note, "rb") as note:
                data = strictjson.loads(note.read(MAX_NOTE_SIZE + 1).decode("utf-8"))
            if not isinstance(data, dict) or data.get("key_file_sha256") != hashlib.sha256(key_file).hexdigest():
                return None
            noted = data.get("public_key")
            return PublicKey.parse(noted) if isinstance(noted, str) else None
        except (OSError, ValueError, WireError, UsageError):
            # Only a cache: whatever is wrong with it, the passphrase still opens the key.
            return None

    def remember_public_key(self, public_key: PublicKey) -> None:
        """Note the public key of the key file as it is now, if it is encrypted; a failure to write costs nothing."""
        if self.public_key_note is None:
            return
        try:
            data = keyfile.read_key_file(self.path)
            if keyfile.plain_public_key(data, str(self.path)) is not None or self._remembered(data) == public_key:
                return
            note = {"key_file_sha256": hashlib.sha256(data).hexdigest(), "public_key": public_key.z32}
            files.write_private(self.public_key_note, json.dumps(note).encode() + b"\n", durable=False)
        except (OSError, CclinkError):
            pass

    def exists(self) -> bool:
        return self.path.exists()

    def load(self, ui: UI) -> Identity:
        """The user's key, asking for its passphrase only if it is encrypted and not unlocked (again, if mistyped)."""
        return self.open(ui).identity

    def open(self, ui: UI) -> OpenedKey:
        """The user's key as load gives it, with what `cclink unlock` needs to know of its key file."""
        data = keyfile.read_key_file(self.path)
        digest = hashlib.sha256(data).digest()
        encrypted = envelope.is_envelope(data)
        seed = self.unlocked.seed(digest) if encrypted and self.unlocked is not None else None
        identity = Identity(seed) if seed is not None else self._opened_with_passphrase(ui, data)
        self.remember_public_key(identity.public_key)
        return OpenedKey(identity, digest, encrypted)

    def _opened_with_passphrase(self, ui: UI, data: bytes) -> Identity:
        attempt = 1
        while True:
            try:
                return keyfile.identity_from_bytes(
                    data, lambda: ui.secret(f"Passphrase for {self.path}: ", PASSPHRASE_ENV), str(self.path)
                )
            except WrongPassphrase:
                if attempt == SECRET_TRIES or not ui.can_retype(PASSPHRASE_ENV):
                    raise
                ui.say("Wrong passphrase; try again.")
                attempt += 1


@dataclass(frozen=True)
class InitOutcome:
    public_key: PublicKey
    path: Path
    encrypted: bool
    imported: bool


def init(ui: UI, keys: KeyStore, import_from: str | None, no_passphrase: bool, assume_yes: bool) -> InitOutcome:
    """Create or import the key, encrypted with a passphrase unless told otherwise."""
    path = keys.path
    if import_from is not None:
        identity = _read_import(ui, import_from)
    else:
        identity = Identity.generate()
    if path.exists():
        go_ahead(
            ui,
            f"A key already exists at {path}. Replace it? The old key is lost",
            assume_yes=assume_yes,
            otherwise=f"kept the existing key at {path}",
            unattended=False,
        )
    passphrase = None
    if not no_passphrase:
        from cclink.wire import kdf  # Argon2 and HKDF: only when a passphrase is set

        passphrase = ui.secret(
            "New passphrase for the key (at least 8 characters): ",
            PASSPHRASE_ENV,
            confirm=True,
            check=kdf.check_passphrase,
        )
    keyfile.save_identity(path, identity, passphrase)
    keys.remember_public_key(identity.public_key)
    return InitOutcome(identity.public_key, path, passphrase is not None, import_from is not None)


def _read_import(ui: UI, source: str) -> Identity:
    data, name = keyfile.read_for_import(source)
    return keyfile.identity_from_bytes(
        data, lambda: ui.secret("Passphrase of the key being imported: ", PASSPHRASE_ENV), name
    )


def whoami(ui: UI, keys: KeyStore) -> tuple[PublicKey, Path]:
    return keys.public_key(ui), keys.path
