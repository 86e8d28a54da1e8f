"""Your own key: create or import it, load it (asking for its passphrase through the UI), say where it is.

The CLI hands the flows a `KeyStore` for the key file's place
(~/.pubky/secret_key, where the Rust cclink keeps it too); tests hand one
under a temporary directory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cclink.errors import WrongPassphrase
from cclink.flows.ui import SECRET_TRIES, UI, go_ahead
from cclink.local import files
from cclink.wire import keyfile
from cclink.wire.keys import Identity, PublicKey

PASSPHRASE_ENV = "CCLINK_PASSPHRASE"


@dataclass(frozen=True)
class KeyStore:
    """Where the user's key lives."""

    path: Path

    @classmethod
    def default(cls) -> KeyStore:
        return cls(files.key_path())

    def exists(self) -> bool:
        return self.path.exists()

    def load(self, ui: UI) -> Identity:
        """The user's key, asking for its passphrase only if it is encrypted (again, if mistyped)."""
        attempt = 1
        while True:
            try:
                return keyfile.load_identity(
                    self.path, lambda: ui.secret(f"Passphrase for {self.path}: ", PASSPHRASE_ENV)
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
    return InitOutcome(identity.public_key, path, passphrase is not None, import_from is not None)


def _read_import(ui: UI, source: str) -> Identity:
    data, name = keyfile.read_for_import(source)
    return keyfile.identity_from_bytes(
        data, lambda: ui.secret("Passphrase of the key being imported: ", PASSPHRASE_ENV), name
    )


def whoami(ui: UI, keys: KeyStore) -> tuple[PublicKey, Path]:
    return keys.load(ui).public_key, keys.path
