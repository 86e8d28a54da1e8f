"""Your own key: create or import it, load it (asking for its passphrase through the UI), say where it is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cclink.errors import Aborted
from cclink.flows.ui import UI
from cclink.local import files
from cclink.wire import keyfile
from cclink.wire.keys import Identity, PublicKey

PASSPHRASE_ENV = "CCLINK_PASSPHRASE"


def load_identity(ui: UI) -> Identity:
    """The user's key, asking for its passphrase only if it is encrypted."""
    path = files.key_path()
    return keyfile.load_identity(path, lambda: ui.secret(f"Passphrase for {path}: ", PASSPHRASE_ENV))


def has_identity() -> bool:
    return files.key_path().exists()


@dataclass(frozen=True)
class InitOutcome:
    public_key: PublicKey
    path: Path
    encrypted: bool
    imported: bool


def init(ui: UI, import_from: str | None, no_passphrase: bool, assume_yes: bool) -> InitOutcome:
    """Create or import the key, encrypted with a passphrase unless told otherwise."""
    path = files.key_path()
    if import_from is not None:
        identity = _read_import(ui, import_from)
    else:
        identity = Identity.generate()
    if path.exists() and not ui.confirm(
        f"A key already exists at {path}. Replace it? The old key is lost",
        assume_yes=assume_yes,
        when_not_interactive=False,
    ):
        raise Aborted(f"kept the existing key at {path}; pass -y to replace it")
    passphrase = None
    if not no_passphrase:
        passphrase = ui.secret("New passphrase for the key (at least 8 characters): ", PASSPHRASE_ENV, confirm=True)
        from cclink.wire import kdf  # Argon2 and HKDF: only when a passphrase is set

        kdf.check_passphrase(passphrase)
    keyfile.save_identity(path, identity, passphrase)
    return InitOutcome(identity.public_key, path, passphrase is not None, import_from is not None)


def _read_import(ui: UI, source: str) -> Identity:
    data, name = keyfile.read_for_import(source)
    return keyfile.identity_from_bytes(
        data, lambda: ui.secret("Passphrase of the key being imported: ", PASSPHRASE_ENV), name
    )


def whoami(ui: UI) -> tuple[PublicKey, Path]:
    return load_identity(ui).public_key, files.key_path()
