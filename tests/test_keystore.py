"""The key's flows in process (cclink.flows.keystore): a real key file under a temp HOME, a scripted UI."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from support.ui import ScriptedUI

from cclink.errors import Declined, NoInput, WeakSecret, WrongPassphrase
from cclink.flows import keystore
from cclink.net.agent_server import UnlockedKey
from cclink.wire import keyfile
from cclink.wire.keys import Identity

PASSPHRASE = "correct horse battery"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv(keystore.PASSPHRASE_ENV, raising=False)
    return tmp_path


def key_file(home: Path) -> Path:
    return home / ".pubky" / "secret_key"


def keys(home: Path) -> keystore.KeyStore:
    return keystore.KeyStore(key_file(home))


def test_init_asks_for_a_passphrase_and_the_key_opens_with_it(home: Path) -> None:
    created = keystore.init(
        ScriptedUI.answering(secrets=[PASSPHRASE]), keys(home), None, no_passphrase=False, assume_yes=False
    )

    assert created.encrypted and not created.imported and created.path == key_file(home)
    assert keys(home).load(ScriptedUI.answering(secrets=[PASSPHRASE])).public_key == created.public_key
    with pytest.raises(WrongPassphrase):
        keys(home).load(ScriptedUI.answering(secrets=["incorrect horse battery"], interactive=False))
    mistyped = ScriptedUI.answering(secrets=["incorrect horse battery", PASSPHRASE])
    assert keys(home).load(mistyped).public_key == created.public_key
    assert mistyped.said == ["Wrong passphrase; try again."]


def test_init_without_a_passphrase_asks_nothing(home: Path) -> None:
    ui = ScriptedUI.answering()
    created = keystore.init(ui, keys(home), None, no_passphrase=True, assume_yes=False)

    assert not created.encrypted and ui.asked == []
    assert keys(home).load(ScriptedUI.answering()).public_key == created.public_key


def test_a_weak_passphrase_writes_nothing(home: Path) -> None:
    with pytest.raises(WeakSecret):
        keystore.init(ScriptedUI.answering(secrets=["short"]), keys(home), None, no_passphrase=False, assume_yes=False)
    assert not key_file(home).exists()


@pytest.mark.parametrize(
    ("answer", "interactive", "refusal"),
    [(False, True, Declined), (None, False, NoInput)],
    ids=["declined", "no-terminal"],
)
def test_an_existing_key_is_kept_unless_the_person_agrees(
    home: Path, answer: bool | None, interactive: bool, refusal: type[Exception]
) -> None:
    first = keystore.init(ScriptedUI.answering(), keys(home), None, no_passphrase=True, assume_yes=False)
    before = key_file(home).read_bytes()
    ui = ScriptedUI.answering(answers=[] if answer is None else [answer], interactive=interactive)

    with pytest.raises(refusal, match="kept the existing key"):
        keystore.init(ui, keys(home), None, no_passphrase=True, assume_yes=False)

    assert key_file(home).read_bytes() == before
    assert keystore.whoami(ScriptedUI.answering(), keys(home))[0] == first.public_key


@pytest.mark.parametrize("ui", [ScriptedUI.answering(answers=[True]), ScriptedUI.answering(interactive=False)])
def test_an_existing_key_is_replaced_when_agreed_or_with_yes(home: Path, ui: ScriptedUI) -> None:
    first = keystore.init(ScriptedUI.answering(), keys(home), None, no_passphrase=True, assume_yes=False)

    second = keystore.init(ui, keys(home), None, no_passphrase=True, assume_yes=not ui.interactive)

    assert second.public_key != first.public_key
    assert keystore.whoami(ScriptedUI.answering(), keys(home))[0] == second.public_key


def test_importing_an_encrypted_key_asks_its_passphrase_then_a_new_one(home: Path, tmp_path: Path) -> None:
    identity = Identity.generate()
    source = tmp_path / "exported"
    keyfile.save_identity(source, identity, "old passphrase 123")
    ui = ScriptedUI.answering(secrets=["old passphrase 123", PASSPHRASE])

    imported = keystore.init(ui, keys(home), str(source), no_passphrase=False, assume_yes=False)

    assert imported.imported and imported.public_key == identity.public_key
    assert ui.asked == [
        "Passphrase of the key being imported: ",
        "New passphrase for the key (at least 8 characters): ",
    ]
    assert keys(home).load(ScriptedUI.answering(secrets=[PASSPHRASE])).public_key == identity.public_key


# --- whoami without the passphrase ------------------------------------------------------------


def noting(home: Path) -> keystore.KeyStore:
    return keystore.KeyStore(key_file(home), home / "state" / "public-key.json")


def test_whoami_of_an_encrypted_key_asks_no_passphrase_once_the_key_was_opened_here(home: Path) -> None:
    keys = noting(home)
    created = keystore.init(
        ScriptedUI.answering(secrets=[PASSPHRASE]), keys, None, no_passphrase=False, assume_yes=False
    )
    ui = ScriptedUI.answering()

    assert keystore.whoami(ui, keys)[0] == created.public_key
    assert ui.asked == []


def test_whoami_asks_again_for_a_key_file_replaced_behind_its_back(home: Path, tmp_path: Path) -> None:
    keys = noting(home)
    keystore.init(ScriptedUI.answering(secrets=[PASSPHRASE]), keys, None, no_passphrase=False, assume_yes=False)
    other = Identity.generate()
    keyfile.save_identity(key_file(home), other, PASSPHRASE)
    ui = ScriptedUI.answering(secrets=[PASSPHRASE])

    assert keystore.whoami(ui, keys)[0] == other.public_key
    assert ui.asked == [f"Passphrase for {key_file(home)}: "]
    assert keystore.whoami(ScriptedUI.answering(), keys)[0] == other.public_key  # remembered now


@pytest.mark.parametrize("note", [b"", b"{", b"[1]", b'{"key_file_sha256": 1}', b"x" * 5000], ids=str)
def test_a_damaged_note_only_means_asking_for_the_passphrase(home: Path, note: bytes) -> None:
    keys = noting(home)
    created = keystore.init(
        ScriptedUI.answering(secrets=[PASSPHRASE]), keys, None, no_passphrase=False, assume_yes=False
    )
    assert keys.public_key_note is not None
    keys.public_key_note.write_bytes(note)

    assert keystore.whoami(ScriptedUI.answering(secrets=[PASSPHRASE]), keys)[0] == created.public_key


def test_whoami_of_an_unencrypted_key_needs_no_note(home: Path) -> None:
    created = keystore.init(ScriptedUI.answering(), keys(home), None, no_passphrase=True, assume_yes=False)
    assert keystore.whoami(ScriptedUI.answering(), keys(home))[0] == created.public_key


# --- a key unlocked in the agent ---------------------------------------------------------------


class HeldKey:
    """The KeyStore's unlocked source over the agent's own holder of the key, on a clock the test moves."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.key = UnlockedKey()
        self.now = now

    def unlock(self, key_file: Path, identity: Identity, seconds: int) -> None:
        digest = hashlib.sha256(key_file.read_bytes()).digest()
        self.key.unlock(bytearray(identity.seed), digest, seconds, self.now)

    def seed(self, key_file_sha256: bytes) -> bytes | None:
        held = self.key.key(key_file_sha256, self.now)
        return held[0] if held is not None else None


def encrypted_key(home: Path) -> Identity:
    identity = Identity.generate()
    keyfile.save_identity(key_file(home), identity, PASSPHRASE)
    return identity


def test_a_key_unlocked_for_this_key_file_is_loaded_without_asking(home: Path) -> None:
    identity = encrypted_key(home)
    held = HeldKey()
    held.unlock(key_file(home), identity, 900)
    ui = ScriptedUI.answering(interactive=False)

    opened = keystore.KeyStore(key_file(home), unlocked=held).open(ui)

    assert opened.identity.public_key == identity.public_key and opened.encrypted
    assert opened.key_file_sha256 == hashlib.sha256(key_file(home).read_bytes()).digest()
    assert ui.asked == []


def test_a_replaced_key_file_gets_nothing_from_the_key_unlocked_for_the_old_one(home: Path) -> None:
    held = HeldKey()
    held.unlock(key_file(home), encrypted_key(home), 900)
    replacement = encrypted_key(home)
    ui = ScriptedUI.answering(secrets=[PASSPHRASE])

    loaded = keystore.KeyStore(key_file(home), unlocked=held).load(ui)

    assert loaded.public_key == replacement.public_key
    assert ui.asked == [f"Passphrase for {key_file(home)}: "]


def test_once_the_time_is_up_the_passphrase_is_asked_again(home: Path) -> None:
    identity = encrypted_key(home)
    held = HeldKey()
    held.unlock(key_file(home), identity, 900)
    keys = keystore.KeyStore(key_file(home), unlocked=held)
    assert keys.load(ScriptedUI.answering()).public_key == identity.public_key

    held.now += 901  # a whole second more: the agent rounds the time up
    ui = ScriptedUI.answering(secrets=[PASSPHRASE])
    assert keys.load(ui).public_key == identity.public_key
    assert ui.asked == [f"Passphrase for {key_file(home)}: "]
    assert held.key.until(held.now) is None


def test_an_unencrypted_key_file_never_asks_the_unlocked_source(home: Path) -> None:
    created = keystore.init(ScriptedUI.answering(), keys(home), None, no_passphrase=True, assume_yes=False)

    class Refusing:
        def seed(self, key_file_sha256: bytes) -> bytes | None:
            raise AssertionError("asked for an unencrypted key")

    opened = keystore.KeyStore(key_file(home), unlocked=Refusing()).open(ScriptedUI.answering())

    assert opened.identity.public_key == created.public_key and not opened.encrypted
