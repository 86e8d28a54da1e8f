"""The key file (docs/wire.md §1; vectors in tests/vectors/keyfile.json) and private file writing."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from vector_files import case, cases, data

from cclink.errors import KeyFileError, WeakSecret, WrongPassphrase
from cclink.local import files
from cclink.wire import envelope, keyfile
from cclink.wire.keys import Identity

SEED_42 = case("keys", "identities", "seed 42")
SEED = bytes.fromhex(SEED_42["seed_hex"])
Z32 = SEED_42["z32"]
PLAIN_KEY = data(case("keyfile", "written", "seed 42, no passphrase"), "data")  # the seed in hex, a newline
PASSPHRASE = "correct horse"
FAST = {"memory_kib": 8, "time_cost": 1, "parallelism": 1}


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def never_asked() -> str:
    pytest.fail("the passphrase was asked for a key that needs none")


class Asker:
    """A passphrase callback that counts its calls."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return self.answer


def write(path: Path, data: bytes, mode: int = 0o600) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


@pytest.fixture
def umask_zero() -> Iterator[None]:
    previous = os.umask(0)
    yield
    os.umask(previous)


# --- files.py --------------------------------------------------------------------------


def test_write_private_creates_private_dirs_and_file(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "secret"
    files.write_private(target, b"data")
    assert target.read_bytes() == b"data"
    assert mode_of(target) == 0o600
    assert mode_of(tmp_path / "a") == 0o700
    assert mode_of(tmp_path / "a" / "b") == 0o700


def test_write_private_ignores_a_loose_umask(tmp_path: Path, umask_zero: None) -> None:
    target = tmp_path / "new" / "secret"
    files.write_private(target, b"data")
    assert mode_of(target) == 0o600
    assert mode_of(tmp_path / "new") == 0o700


def test_write_private_keeps_existing_dir_mode(tmp_path: Path) -> None:
    tmp_path.chmod(0o755)
    files.write_private(tmp_path / "secret", b"data")
    assert mode_of(tmp_path) == 0o755


def test_write_private_replaces_and_tightens(tmp_path: Path) -> None:
    target = write(tmp_path / "secret", b"old contents that are longer", 0o644)
    files.write_private(target, b"new")
    assert target.read_bytes() == b"new"
    assert mode_of(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret"]  # no temp left


def test_write_private_large_and_empty(tmp_path: Path) -> None:
    big = os.urandom(3 * 1024 * 1024)
    files.write_private(tmp_path / "big", big)
    assert (tmp_path / "big").read_bytes() == big
    files.write_private(tmp_path / "empty", b"")
    assert (tmp_path / "empty").read_bytes() == b""


def test_write_private_cleans_up_on_failure(tmp_path: Path) -> None:
    (tmp_path / "occupied").mkdir()
    (tmp_path / "occupied" / "x").write_text("keeps the directory non-empty")
    with pytest.raises(OSError):
        files.write_private(tmp_path / "occupied", b"data")  # os.replace onto a directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]


def test_write_private_parent_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    with pytest.raises(OSError):
        files.write_private(tmp_path / "plain" / "secret", b"data")


def test_key_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert files.key_path() == tmp_path / ".pubky" / "secret_key"


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert files.cache_dir() == tmp_path / ".cache" / "cclink"
    monkeypatch.setenv("XDG_CACHE_HOME", "")
    assert files.cache_dir() == tmp_path / ".cache" / "cclink"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert files.cache_dir() == tmp_path / ".cache" / "cclink"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert files.cache_dir() == tmp_path / "xdg" / "cclink"
    assert not (tmp_path / "xdg").exists()  # not created


# --- plaintext key files ----------------------------------------------------------------


@pytest.mark.parametrize("vector", cases("keyfile", "written"))
def test_save_plaintext(tmp_path: Path, vector: dict) -> None:
    path = tmp_path / ".pubky" / "secret_key"
    identity = Identity(bytes.fromhex(vector["seed_hex"]))
    keyfile.save_identity(path, identity, None)
    assert path.read_bytes() == data(vector, "data")
    assert mode_of(path) == 0o600
    assert mode_of(path.parent) == 0o700
    assert not keyfile.is_encrypted(path)
    assert keyfile.load_identity(path, never_asked).public_key == identity.public_key


@pytest.mark.parametrize("vector", cases("keyfile", "plaintext"))
def test_plaintext_forms(tmp_path: Path, vector: dict) -> None:
    path = write(tmp_path / "secret_key", data(vector, "data"))
    assert keyfile.load_identity(path, never_asked).seed.hex() == vector["seed_hex"]
    assert (
        keyfile.identity_from_bytes(data(vector, "data"), never_asked, "standard input").seed.hex()
        == vector["seed_hex"]
    )


@pytest.mark.parametrize("vector", cases("keyfile", "refused"))
def test_bad_plaintext(vector: dict) -> None:
    with pytest.raises(KeyFileError, match=vector["reason"]) as caught:
        keyfile.identity_from_bytes(data(vector, "data"), never_asked, "standard input")
    assert "standard input" in str(caught.value)


@pytest.mark.parametrize("vector", cases("envelope", "opened"))
def test_envelope_vectors_as_key_files(tmp_path: Path, vector: dict) -> None:
    path = write(tmp_path / "secret_key", bytes.fromhex(vector["envelope_hex"]))
    assert keyfile.is_encrypted(path)
    asker = Asker(vector["passphrase"])
    assert keyfile.load_identity(path, asker).seed.hex() == vector["seed_hex"]
    assert asker.calls == 1


def test_bad_plaintext_file_names_path(tmp_path: Path) -> None:
    path = write(tmp_path / "secret_key", b"not a key")
    with pytest.raises(KeyFileError, match=str(path)):
        keyfile.load_identity(path, never_asked)


# --- encrypted key files ----------------------------------------------------------------


def test_save_and_load_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    keyfile.save_identity(path, Identity(SEED), PASSPHRASE)
    data = path.read_bytes()
    assert envelope.is_envelope(data) and mode_of(path) == 0o600
    assert keyfile.is_encrypted(path)
    assert envelope.read_header(data).memory_kib == 65536  # init writes the default cost
    asker = Asker(PASSPHRASE)
    assert keyfile.load_identity(path, asker).public_key.z32 == Z32
    assert asker.calls == 1


def test_encrypted_wrong_passphrase(tmp_path: Path) -> None:
    path = write(tmp_path / "secret_key", envelope.seal(SEED, PASSPHRASE, **FAST))
    with pytest.raises(WrongPassphrase, match=str(path)):
        keyfile.load_identity(path, Asker("wrong horse"))


def test_encrypted_from_standard_input() -> None:
    data = envelope.seal(SEED, PASSPHRASE, **FAST)
    assert keyfile.identity_from_bytes(data, Asker(PASSPHRASE), "standard input").seed == SEED
    with pytest.raises(WrongPassphrase, match="standard input"):
        keyfile.identity_from_bytes(data, Asker("wrong horse"), "standard input")


@pytest.mark.parametrize("cut", [8, 9, 20, 52, 53, 60])
def test_broken_envelope_is_refused_before_asking(cut: int) -> None:
    data = envelope.seal(SEED, PASSPHRASE, **FAST)[:cut]
    with pytest.raises(KeyFileError, match="standard input"):
        keyfile.identity_from_bytes(data, never_asked, "standard input")


def test_hostile_envelope_is_refused_before_asking() -> None:
    data = bytearray(envelope.seal(SEED, PASSPHRASE, **FAST))
    data[9:13] = b"\xff\xff\xff\xff"
    with pytest.raises(KeyFileError, match="unsafe"):
        keyfile.identity_from_bytes(bytes(data), never_asked, "standard input")


@pytest.mark.parametrize("passphrase", ["", "short", "1234567"])
def test_weak_passphrase_writes_nothing(tmp_path: Path, passphrase: str) -> None:
    path = tmp_path / "secret_key"
    with pytest.raises(WeakSecret):
        keyfile.save_identity(path, Identity(SEED), passphrase)
    assert not path.exists()


# --- loading: existence and permissions -------------------------------------------------


def test_missing_key(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "secret_key"
    with pytest.raises(KeyFileError, match="cclink init") as caught:
        keyfile.load_identity(path, never_asked)
    assert str(path) in str(caught.value)
    with pytest.raises(KeyFileError, match="cclink init"):
        keyfile.is_encrypted(path)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o400, 0o700, 0o666, 0o000, 0o4600])
def test_loose_or_odd_modes_are_refused(tmp_path: Path, mode: int) -> None:
    path = write(tmp_path / "secret_key", PLAIN_KEY)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as caught:
        keyfile.load_identity(path, never_asked)
    assert f"chmod 600 {path}" in str(caught.value)


def test_mode_is_checked_before_the_passphrase(tmp_path: Path) -> None:
    path = write(tmp_path / "secret_key", envelope.seal(SEED, PASSPHRASE, **FAST), 0o644)
    with pytest.raises(KeyFileError, match="chmod 600"):
        keyfile.load_identity(path, never_asked)


def test_a_directory_is_not_a_key(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    path.mkdir(mode=0o600)
    with pytest.raises(KeyFileError, match="regular file"):
        keyfile.load_identity(path, never_asked)


def test_a_fifo_does_not_hang(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    os.mkfifo(path, 0o600)
    with pytest.raises(KeyFileError, match="regular file"):
        keyfile.load_identity(path, never_asked)


def test_symlink_to_private_file_is_followed(tmp_path: Path) -> None:
    target = write(tmp_path / "real", PLAIN_KEY)
    link = tmp_path / "secret_key"
    link.symlink_to(target)
    assert keyfile.load_identity(link, never_asked).seed == SEED


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "secret_key", b" " * 100_000 + PLAIN_KEY)
    with pytest.raises(KeyFileError, match="too large"):
        keyfile.load_identity(path, never_asked)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_directory(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    write(locked / "secret_key", PLAIN_KEY)
    locked.chmod(0o000)
    try:
        with pytest.raises(KeyFileError, match="cannot"):
            keyfile.load_identity(locked / "secret_key", never_asked)
    finally:
        locked.chmod(0o700)


def test_save_into_unwritable_place(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("")
    with pytest.raises(KeyFileError, match="cannot write"):
        keyfile.save_identity(tmp_path / "plain" / "secret_key", Identity(SEED), None)


def test_overwrite_plaintext_with_encrypted(tmp_path: Path) -> None:
    path = tmp_path / "secret_key"
    keyfile.save_identity(path, Identity(SEED), None)
    other = Identity(bytes.fromhex(case("keys", "identities", "seed 99")["seed_hex"]))
    keyfile.save_identity(path, other, PASSPHRASE)
    assert keyfile.is_encrypted(path)
    assert keyfile.load_identity(path, Asker(PASSPHRASE)).seed == other.seed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret_key"]
