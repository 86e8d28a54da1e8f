"""End-to-end: malformed input ends in one clear error line, a specific exit code, and no side effects.

Every case runs the real `cclink` command (see tests/support/machines.py) and checks four
things: exactly one `cclink: error: <Sentence>.` line on stderr and no
traceback, the exact exit code of cclink/errors.py, nothing written under the
machine's HOME (the key file and ~/.claude unchanged, no stray temp files), and
nothing launched (the fake claude's log stays empty).

Bad DHT records are crafted here with dnspython and published through
cclink.dht with a real key, so the BEP 44 signature is valid and only the
content is bad; the test's own helpers build the DNS message and the TXT JSON
so that they can put anything there.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
import stat
import struct
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rrset
import pytest
from support.machines import Machine, require

from cclink.errors import BadSignature, MalformedPacket
from cclink.net import record_store
from cclink.net.dht_client import get as dht_get
from cclink.net.krpc import Item as MutableItem
from cclink.net.record_store import RecordStore
from cclink.wire import agecrypt, envelope, kdf, payload, z32
from cclink.wire.keys import Identity
from cclink.wire.payload import Payload
from cclink.wire.record import Record, new_record

pytestmark = pytest.mark.e2e

# Exit codes are part of the interface (cclink/errors.py), so they are spelled out.
USAGE = 2
KEY_FILE = 3
WIRE = 5
CANNOT_DECRYPT = 6
NOT_FOUND = 7

ERROR_PREFIX = "cclink: error: "
PASSPHRASE = "correct horse battery"
WRONG_PASSPHRASE = "incorrect horse battery"
PIN = "tulip-harbor-42"
WRONG_PIN = "maple-harbor-42"
RECORD_TTL = 3600
GET_TIMEOUT = 20
# A key used only as a well-formed PUBKEY to damage.
GOOD_Z32 = Identity(bytes(range(32))).public_key.z32


# --- running and checking -------------------------------------------------------------


def _text(output: str | bytes) -> str:
    return output.decode("utf-8", "replace") if isinstance(output, bytes) else output


def describe(result: subprocess.CompletedProcess) -> str:
    return (
        f"{result.args}\nexit {result.returncode}\n"
        f"--- stdout\n{_text(result.stdout)}\n--- stderr\n{_text(result.stderr)}"
    )


def assert_clean_failure(result: subprocess.CompletedProcess, code: int, *fragments: str) -> str:
    """Exit code `code`, stdout empty, stderr exactly one error sentence holding every fragment."""
    stdout, stderr = _text(result.stdout), _text(result.stderr)
    assert result.returncode == code, describe(result)
    assert "Traceback" not in stdout + stderr, describe(result)
    assert stdout == "", describe(result)
    lines = stderr.splitlines()
    assert len(lines) == 1, describe(result)
    line = lines[0]
    assert line.startswith(ERROR_PREFIX) and line.endswith((".", "!", "?")), describe(result)
    assert line[len(ERROR_PREFIX)].isupper() or not line[len(ERROR_PREFIX)].isalpha(), describe(result)
    for fragment in fragments:
        assert fragment.lower() in line.lower(), f"{fragment!r} not in {line!r}"
    return line


def assert_nothing_launched(*machines: Machine) -> None:
    for machine in machines:
        assert machine.launches() == [], f"{machine.name} launched claude"


def run_together(*calls: Callable[[], subprocess.CompletedProcess]) -> list[subprocess.CompletedProcess]:
    """Run independent cclink commands at once (each is its own process) and return their results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(call) for call in calls]
        return [future.result() for future in futures]


# --- what is on disk ----------------------------------------------------------------------


def home_state(home: Path, *, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Every entry under home (symlinks not followed): kind, mode, and for files inode, mtime and content hash.

    skip names top-level directories a command may legitimately write (the DHT cache).
    """
    state: dict[str, tuple] = {}
    for directory, dirnames, filenames in os.walk(home):
        here = Path(directory)
        if here == home:
            dirnames[:] = [name for name in dirnames if name not in skip]
        for name in dirnames + filenames:
            path = here / name
            info = path.lstat()
            detail: object = None
            if stat.S_ISREG(info.st_mode):
                detail = (info.st_ino, info.st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            elif stat.S_ISLNK(info.st_mode):
                detail = os.readlink(path)
            state[str(path.relative_to(home))] = (stat.S_IFMT(info.st_mode), stat.S_IMODE(info.st_mode), detail)
    return state


def temp_files(home: Path) -> list[Path]:
    """Files that look like an interrupted atomic write (files.write_private names them .<name>.<hex>.tmp)."""
    return [path for path in home.rglob("*.tmp")]


def give_key(machine: Machine, identity: Identity) -> None:
    """Store identity as the machine's unencrypted key file (docs/wire.md §1), without running cclink."""
    plant(machine.key_file, identity.seed.hex().encode("ascii") + b"\n")


def plant(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def publishable(machine: Machine) -> tuple[Path, str]:
    """A project with a fresh session on the machine, so a publish could go ahead if the input were good."""
    project = machine.project("app")
    return project, machine.add_session(project)


# --- key files ------------------------------------------------------------------------------


@functools.cache
def sample_envelope() -> bytes:
    """A real CCLINKEK envelope under PASSPHRASE, with Argon2 parameters cheap enough for tests."""
    return envelope.seal(Identity.generate().seed, PASSPHRASE, memory_kib=8, time_cost=1, parallelism=1)


def envelope_with(*, version: int = 1, memory_kib: int = 8, time_cost: int = 1, parallelism: int = 1) -> bytes:
    """The sample envelope with its header rewritten (docs/wire.md §3), ciphertext kept."""
    real = sample_envelope()
    salt_and_age = real[envelope.HEADER_SIZE - kdf.SALT_SIZE :]
    return b"CCLINKEK" + bytes([version]) + struct.pack(">III", memory_kib, time_cost, parallelism) + salt_and_age


Planter = Callable[[Path], None]


def file_of(data: bytes | Callable[[], bytes], mode: int = 0o600) -> Planter:
    return lambda path: plant(path, data() if callable(data) else data, mode)


def directory_at(path: Path) -> None:
    path.mkdir(parents=True)


def fifo_at(path: Path) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.mkfifo(path, 0o600)


def symlink_to(target_mode: int | None) -> Planter:
    """A symlink at the path to a valid key file of target_mode elsewhere, or to nothing when None."""

    def make(path: Path) -> None:
        target = path.parent.parent / "elsewhere" / "key"
        if target_mode is not None:
            plant(target, Identity.generate().seed.hex().encode("ascii"), target_mode)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.symlink_to(target)

    return make


def valid_hex_key() -> bytes:
    return Identity.generate().seed.hex().encode("ascii") + b"\n"


@dataclass(frozen=True)
class BadKey:
    """Something planted where a key file is read; `{path}` in a fragment stands for that path."""

    plant: Planter
    fragments: tuple[str, ...]
    code: int = KEY_FILE
    env: dict[str, str] = field(default_factory=dict)
    # Importing reads a file given by the user, not the private key file: no mode
    # check and no size cap, so some cases read differently (None: not an import case).
    import_fragments: tuple[str, ...] | None = ()

    def fragments_for(self, path: Path, importing: bool = False) -> tuple[str, ...]:
        chosen = self.import_fragments if importing and self.import_fragments else self.fragments
        return tuple(fragment.replace("{path}", str(path)) for fragment in chosen)


NOT_HEX = "the key in {path} is not 64 hexadecimal characters"
UNSAFE = "the encrypted key in {path} asks for unsafe key derivation settings"
NO_PASSPHRASE = {}  # the envelope cases run without CCLINK_PASSPHRASE: refusing must not need it
WITH_PASSPHRASE = {"CCLINK_PASSPHRASE": PASSPHRASE}

BAD_KEYS: dict[str, BadKey] = {
    "invalid-hex": BadKey(file_of(b"zz" * 32 + b"\n"), (NOT_HEX,)),
    "62-hex-chars": BadKey(file_of(b"ab" * 31 + b"\n"), (NOT_HEX,)),
    "66-hex-chars": BadKey(file_of(b"ab" * 33 + b"\n"), (NOT_HEX,)),
    "hex-with-inner-space": BadKey(file_of(b"ab" * 16 + b" " + b"ab" * 16 + b"\n"), (NOT_HEX,)),
    "empty-file": BadKey(file_of(b""), ("the key in {path} is empty",)),
    "binary-junk": BadKey(
        file_of(bytes([0xFF, 0x00, 0x9C, 0xC3]) * 24),
        ("the key in {path} is neither 64 hexadecimal characters nor an encrypted key",),
    ),
    "too-large": BadKey(file_of(b"a" * 70_000), ("{path} is too large to be a key file",)),
    "mode-0644": BadKey(
        file_of(valid_hex_key, 0o644), ("{path} has mode 0644", "chmod 600 {path}"), import_fragments=None
    ),
    "mode-0400": BadKey(
        file_of(valid_hex_key, 0o400), ("{path} has mode 0400", "chmod 600 {path}"), import_fragments=None
    ),
    "directory": BadKey(
        directory_at, ("{path} is not a regular file",), import_fragments=("cannot read {path}", "is a directory")
    ),
    # A FIFO at the key path must not hang the command (keyfile opens it non-blocking);
    # `--import` of a FIFO legitimately waits for its writer, like any reader.
    "fifo": BadKey(fifo_at, ("{path} is not a regular file",), import_fragments=None),
    # keyfile follows symlinks and checks the mode of the file they lead to.
    "symlink-to-0644-key": BadKey(
        symlink_to(0o644), ("{path} has mode 0644", "chmod 600 {path}"), import_fragments=None
    ),
    "dangling-symlink": BadKey(
        symlink_to(None), ("no key at {path}", "cclink init"), import_fragments=("cannot read {path}", "no such file")
    ),
    "wrong-passphrase": BadKey(
        file_of(sample_envelope),
        ("wrong passphrase for the encrypted key in {path}",),
        env={"CCLINK_PASSPHRASE": WRONG_PASSPHRASE},
    ),
    "envelope-without-passphrase-or-tty": BadKey(
        file_of(sample_envelope), ("set CCLINK_PASSPHRASE",), code=USAGE, env=NO_PASSPHRASE
    ),
    "envelope-half-header": BadKey(
        file_of(lambda: sample_envelope()[: envelope.HEADER_SIZE // 2]),
        ("the encrypted key in {path} is truncated",),
        env=NO_PASSPHRASE,
    ),
    "envelope-header-only": BadKey(
        file_of(lambda: sample_envelope()[: envelope.HEADER_SIZE]),
        ("the encrypted key in {path} is damaged", "no age ciphertext"),
        env=NO_PASSPHRASE,
    ),
    "envelope-truncated-ciphertext": BadKey(
        file_of(lambda: sample_envelope()[:-10]),
        ("the encrypted key in {path} is damaged or truncated",),
        env=WITH_PASSPHRASE,
    ),
    # Hostile headers: refused from the header alone. No passphrase is available, so
    # an implementation that went on to derive would fail with NoInput (2) instead.
    "argon2-memory-4GiB": BadKey(
        file_of(lambda: envelope_with(memory_kib=4 * 1024 * 1024)), (UNSAFE, "4194304 KiB"), env=NO_PASSPHRASE
    ),
    "argon2-time-2**32-1": BadKey(
        file_of(lambda: envelope_with(time_cost=2**32 - 1)), (UNSAFE, "4294967295 passes"), env=NO_PASSPHRASE
    ),
    "argon2-parallelism-0": BadKey(
        file_of(lambda: envelope_with(parallelism=0)), (UNSAFE, "parallelism 0"), env=NO_PASSPHRASE
    ),
    "envelope-version-2": BadKey(
        file_of(lambda: envelope_with(version=2)), ("{path} has format version 2",), env=NO_PASSPHRASE
    ),
}
IMPORTABLE = {name: case for name, case in BAD_KEYS.items() if case.import_fragments is not None}


@pytest.mark.parametrize("case", BAD_KEYS.values(), ids=BAD_KEYS.keys())
def test_bad_key_file_stops_whoami_pickup_and_publish(laptop: Machine, case: BadKey) -> None:
    case.plant(laptop.key_file)
    project, _ = publishable(laptop)
    before = home_state(laptop.home)

    results = run_together(
        lambda: laptop.run("whoami", env=case.env),
        lambda: laptop.run("pickup", "-y", env=case.env),
        lambda: laptop.run(cwd=project, env=case.env),
    )

    for result in results:
        assert_clean_failure(result, case.code, *case.fragments_for(laptop.key_file))
    # Nothing written at all: not the key, not ~/.claude, not even the DHT cache.
    assert home_state(laptop.home) == before
    assert_nothing_launched(laptop)


def test_symlinked_key_file_is_followed(laptop: Machine) -> None:
    """keyfile.py follows a symlink to a private (0600) key file, so dotfile managers work."""
    symlink_to(0o600)(laptop.key_file)
    target = laptop.key_file.resolve()
    expected = Identity(bytes.fromhex(target.read_text())).public_key.z32

    assert laptop.public_key_z32() == expected


def import_source(machine: Machine, case: BadKey) -> Path:
    """The bad thing planted as a file to import, outside ~/.pubky."""
    source = machine.home / "incoming" / "secret_key"
    case.plant(source)
    return source


@pytest.mark.parametrize("case", IMPORTABLE.values(), ids=IMPORTABLE.keys())
def test_import_of_bad_key_file_is_refused_and_creates_no_key(laptop: Machine, case: BadKey) -> None:
    source = import_source(laptop, case)
    before = home_state(laptop.home)

    result = laptop.run("init", "--import", str(source), "--no-passphrase", env=case.env)

    assert_clean_failure(result, case.code, *case.fragments_for(source, importing=True))
    assert home_state(laptop.home) == before
    assert not (laptop.home / ".pubky").exists()
    assert_nothing_launched(laptop)


@pytest.mark.parametrize("name", ["binary-junk", "wrong-passphrase", "argon2-memory-4GiB"])
def test_refused_import_keeps_the_existing_key_even_with_yes(laptop: Machine, name: str) -> None:
    case = BAD_KEYS[name]
    give_key(laptop, Identity.generate())
    source = import_source(laptop, case)
    before = home_state(laptop.home)

    result = laptop.run("init", "--import", str(source), "--no-passphrase", "-y", env=case.env)

    assert_clean_failure(result, case.code, *case.fragments_for(source, importing=True))
    assert home_state(laptop.home) == before


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "the key in standard input is empty"),
        (b"CCLINKEK\x01", "the encrypted key in standard input is truncated"),
    ],
    ids=["empty", "truncated-envelope"],
)
def test_import_of_bad_key_from_stdin_is_refused(laptop: Machine, data: bytes, fragment: str) -> None:
    result = laptop.run("init", "--import", "-", "--no-passphrase", input=data)

    assert_clean_failure(result, KEY_FILE, fragment)
    assert not (laptop.home / ".pubky").exists()


def test_import_reads_a_key_file_whatever_its_mode_and_stores_it_0600(laptop: Machine) -> None:
    """The mode rule is for the stored key file; the file being imported is only read (and may be 0644)."""
    identity = Identity.generate()
    source = laptop.home / "incoming" / "secret_key"
    plant(source, identity.seed.hex().encode("ascii"), 0o644)

    assert laptop.init(import_from=source) == identity.public_key.z32
    assert stat.S_IMODE(laptop.key_file.stat().st_mode) == 0o600


def test_import_of_endless_source_is_refused_as_too_large(laptop: Machine) -> None:
    # prlimit caps the address space so that an unbounded read cannot take the test machine's memory
    # with it (not preexec_fn: Python code in a child forked from this threaded process can hang).
    result = laptop.run(
        "init", "--import", "/dev/zero", "--no-passphrase", wrap=[require("prlimit"), f"--as={512 * 1024 * 1024}"]
    )

    assert_clean_failure(result, KEY_FILE, "/dev/zero", "too large")
    assert not (laptop.home / ".pubky").exists()


# --- PUBKEY arguments ---------------------------------------------------------------------


def _replace_char(text: str, index: int, char: str) -> str:
    return text[:index] + char + text[index + 1 :]


def _with_padding_bits(text: str) -> str:
    """The same key with a non-zero padding bit in its last symbol (52 * 5 = 260 bits for 256)."""
    last = z32.ALPHABET.index(text[-1])
    return text[:-1] + z32.ALPHABET[last | 1]


NOT_A_PUBLIC_KEY = "is not a public key"
NOT_A_POINT = "is not a valid Ed25519 key"
BAD_PUBKEYS = {
    "too-short": (GOOD_Z32[:51], NOT_A_PUBLIC_KEY),
    "too-long": (GOOD_Z32 + "y", NOT_A_PUBLIC_KEY),
    "digit-0": (_replace_char(GOOD_Z32, 10, "0"), "not z-base-32"),
    "letter-v": (_replace_char(GOOD_Z32, 51, "v"), "not z-base-32"),
    "non-ascii": (_replace_char(GOOD_Z32, 0, "é"), "not z-base-32"),
    "non-zero-padding-bits": (_with_padding_bits(GOOD_Z32), "not z-base-32"),
    "pk-prefix-only": ("pk:", NOT_A_PUBLIC_KEY),
    "pk-prefix-and-too-short": ("pk:" + GOOD_Z32[:51], NOT_A_PUBLIC_KEY),
    "only-spaces": ("   ", NOT_A_PUBLIC_KEY),
    # 52 valid z32 characters, 32 bytes, but no usable Ed25519 point (keys.py asks libsodium).
    "small-order-point": (z32.encode(b"\x01" + bytes(31)), NOT_A_POINT),  # the identity point, y = 1
    "not-on-curve": (z32.encode(b"\x02" + bytes(31)), NOT_A_POINT),  # y = 2 has no x
    "outside-prime-subgroup": (z32.encode(b"\x03" + bytes(31)), NOT_A_POINT),  # y = 3: a torsion component
}


def dht_item(swarm, public_key: bytes) -> MutableItem | None:
    """Whatever item the DHT holds under public_key, signed properly or not."""
    return dht_get(swarm.network, public_key, lambda item: True, timeout=GET_TIMEOUT)


@pytest.mark.parametrize(
    ("pubkey", "fragment"),
    [pytest.param(*case, id=name) for name, case in BAD_PUBKEYS.items()],
)
def test_bad_pubkey_is_refused_by_pickup_and_share(laptop: Machine, swarm, pubkey: str, fragment: str) -> None:
    identity = Identity.generate()
    give_key(laptop, identity)
    project, _ = publishable(laptop)
    before = home_state(laptop.home)

    pickup, share = run_together(
        lambda: laptop.run("pickup", pubkey, "-y"),
        lambda: laptop.run("--share", pubkey, cwd=project),
    )

    assert_clean_failure(pickup, USAGE, fragment)
    assert_clean_failure(share, USAGE, fragment)
    assert home_state(laptop.home) == before
    assert_nothing_launched(laptop)
    assert dht_item(swarm, identity.public_key.raw) is None, "--share published despite the bad key"


@pytest.mark.parametrize("command", ["pickup", "share"])
def test_empty_pubkey_is_refused(laptop: Machine, swarm, command: str) -> None:
    identity = Identity.generate()
    give_key(laptop, identity)
    project, _ = publishable(laptop)

    if command == "pickup":
        result = laptop.run("pickup", "", "-y")
    else:
        result = laptop.run("--share", "", cwd=project)

    assert_clean_failure(result, USAGE, NOT_A_PUBLIC_KEY)
    assert dht_item(swarm, identity.public_key.raw) is None


# --- crafted records on the DHT --------------------------------------------------------------


def compact_json(document: object) -> bytes:
    """JSON as cclink writes records: compact, non-ASCII kept."""
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def pieces(data: bytes, sizes: tuple[int, ...] = ()) -> list[bytes]:
    """data cut into character-strings: first the given sizes, then 254-byte pieces as pkarr does."""
    out, rest = [], data
    for size in sizes:
        out.append(rest[:size])
        rest = rest[size:]
    out.extend(rest[i : i + 254] for i in range(0, len(rest), 254))
    return [piece for piece in out if piece] or [b""]


def txt_answer(name: str, strings: list[bytes]) -> dns.rrset.RRset:
    rdata = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
    return dns.rrset.from_rdata(dns.name.from_text(name), 86400, rdata)


def a_answer(name: str) -> dns.rrset.RRset:
    rdata = dns.rdtypes.IN.A.A(dns.rdataclass.IN, dns.rdatatype.A, "192.0.2.1")
    return dns.rrset.from_rdata(dns.name.from_text(name), 86400, rdata)


def dns_message(*answers: dns.rrset.RRset) -> bytes:
    """A pkarr-style DNS response (id 0, flags QR, no questions) holding answers in order."""
    message = dns.message.Message(id=0)
    message.flags = dns.flags.QR
    for answer in answers:
        message.answer.append(answer)
    return message.to_wire()


@dataclass
class Stage:
    """A publisher with a session on its own machine; builds records and DNS messages for it."""

    identity: Identity
    other: Identity
    session_id: str
    project: Path
    now: float

    @property
    def z32(self) -> str:
        return self.identity.public_key.z32

    @property
    def name(self) -> str:
        return f"_cclink.{self.z32}."

    def record(self, *, pin: bool = False, signer: Identity | None = None) -> Record:
        """A correctly signed record whose blob opens to the stage's session (with the key, or PIN)."""
        signer = signer or self.identity
        body = Payload(session_id=self.session_id, hostname="laptop", project=str(self.project))
        salt = os.urandom(kdf.SALT_SIZE) if pin else None
        recipient = kdf.pin_recipient(PIN, salt) if salt else signer.public_key.age_recipient()
        return new_record(signer, payload.seal(body, recipient), ttl=RECORD_TTL, now=self.now, pin_salt=salt)

    def document(self, **kwargs) -> dict:
        return json.loads(self.record(**kwargs).to_json())

    def txt(self, content: bytes, sizes: tuple[int, ...] = ()) -> bytes:
        """content as the `_cclink` TXT answer of a DNS message."""
        return dns_message(txt_answer(self.name, pieces(content, sizes)))


Builder = Callable[[Stage], bytes]
DELETE = object()


def raw(value: bytes) -> Builder:
    return lambda stage: value


def txt(content: bytes) -> Builder:
    return lambda stage: stage.txt(content)


def tampered(*, pin: bool = False, **changes: object) -> Builder:
    """A valid signed record with fields changed after signing.

    DELETE removes a field; a callable gets the stage and the old value.
    """

    def build(stage: Stage) -> bytes:
        document = stage.document(pin=pin)
        for key, change in changes.items():
            if change is DELETE:
                del document[key]
            elif callable(change):
                document[key] = change(stage, document.get(key))
            else:
                document[key] = change
        return stage.txt(compact_json(document))

    return build


def flip_first_blob_byte(stage: Stage, blob: str) -> str:
    data = bytearray(base64.b64decode(blob))
    data[0] ^= 1
    return b64(bytes(data))


def another_record_of_the_other_key(stage: Stage) -> bytes:
    """The other key's own valid record, replayed under the stage's key."""
    return stage.txt(stage.record(signer=stage.other).to_json())


def other_key_cclink_answer(stage: Stage) -> bytes:
    record = stage.record(signer=stage.other)
    return dns_message(txt_answer(f"_cclink.{stage.other.public_key.z32}.", pieces(record.to_json())))


def split_then_garbage(stage: Stage) -> bytes:
    strings = [*pieces(stage.record().to_json()), b"garbage"]
    return dns_message(txt_answer(stage.name, strings))


def garbage_answer_before_valid_one(stage: Stage) -> bytes:
    """Two `_cclink` TXT answers: docs/wire.md §6 says the first one is read."""
    valid = txt_answer(stage.name, pieces(stage.record().to_json()))
    return dns_message(txt_answer(stage.name, [b"not json"]), valid)


def duplicate_json_key(stage: Stage) -> bytes:
    text = stage.record().to_json()
    return stage.txt(b'{"ttl":1,' + text[1:])


# A DNS header (id 0, QR) that promises one answer; the pointer-loop case follows it with a name pointing at itself.
DNS_HEADER_ONE_ANSWER = struct.pack(">HHHHHH", 0, 0x8000, 0, 1, 0, 0)
SIGNATURE_MISMATCH = "the handoff record's signature does not verify"
NOT_DNS = "the packet does not hold a valid DNS message"
NO_RECORD = "no handoff is published under pk:"

BAD_RECORDS: dict[str, tuple[Builder, int, str]] = {
    # The value is not a DNS message at all.
    "not-dns": (raw(b"this is not a DNS message"), WIRE, NOT_DNS),
    "dns-name-pointer-loop": (raw(DNS_HEADER_ONE_ANSWER + b"\xc0\x0c" + bytes(10)), WIRE, NOT_DNS),
    # A DNS message, but no `_cclink` TXT for this key: nothing is published (the revocation shape).
    "dns-without-answers": (lambda stage: dns_message(), NOT_FOUND, NO_RECORD),
    "txt-under-another-label": (
        lambda stage: dns_message(txt_answer(f"_other.{stage.z32}.", pieces(stage.record().to_json()))),
        NOT_FOUND,
        NO_RECORD,
    ),
    "cclink-a-record": (lambda stage: dns_message(a_answer(stage.name)), NOT_FOUND, NO_RECORD),
    "cclink-txt-of-another-key": (other_key_cclink_answer, NOT_FOUND, NO_RECORD),
    # The TXT is not a record.
    "txt-not-json": (txt(b"hello, world"), WIRE, "the handoff record is not valid JSON"),
    "txt-not-utf8": (txt(b'{"blob":"\xff\xfe"}'), WIRE, "the handoff record is not UTF-8 text"),
    "txt-json-array": (txt(b"[]"), WIRE, "the handoff record is not a JSON object"),
    "duplicate-json-key": (duplicate_json_key, WIRE, "the handoff record repeats a JSON key"),
    # Bad base64 and sizes.
    "blob-bad-base64": (tampered(blob="not*base64!"), WIRE, "the handoff record's blob is not valid base64"),
    "blob-non-canonical-base64": (tampered(blob="QUJ="), WIRE, "the handoff record's blob is not canonical base64"),
    "pin-salt-bad-base64": (tampered(pin_salt="%%%%"), WIRE, "the handoff record's pin_salt is not valid base64"),
    "pin-salt-16-bytes": (tampered(pin_salt=b64(bytes(16))), WIRE, "the handoff record's pin_salt is not 32 bytes"),
    "signature-32-bytes": (tampered(signature=b64(bytes(32))), WIRE, "the handoff record's signature is not 64 bytes"),
    # Missing fields.
    **{
        f"missing-{key}": (tampered(**{key: DELETE}), WIRE, f"the handoff record has no {key} field")
        for key in ("blob", "ttl", "pubkey", "signature")
    },
    # Wrong types.
    "created-at-string": (
        tampered(created_at=lambda stage, old: str(old)),
        WIRE,
        "created_at is not a non-negative integer",
    ),
    "ttl-negative": (tampered(ttl=-1), WIRE, "ttl is not a non-negative integer"),
    "burn-string": (tampered(burn="yes"), WIRE, "burn is not true or false"),
    "recipient-not-a-key": (tampered(recipient="abc"), WIRE, "recipient is not a public key"),
    "blob-number": (tampered(blob=7), WIRE, "blob is not a string"),
    # Signatures and publishers.
    "inner-signature-of-other-bytes": (
        tampered(signature=lambda stage, old: b64(stage.identity.sign(b"something else"))),
        WIRE,
        SIGNATURE_MISMATCH,
    ),
    "record-of-another-publisher": (
        another_record_of_the_other_key,
        WIRE,
        "names a different publisher than the key it was published under",
    ),
    "pubkey-names-another-key": (
        tampered(pubkey=lambda stage, old: stage.other.public_key.z32),
        WIRE,
        "names a different publisher",
    ),
    "pubkey-with-pk-prefix": (
        tampered(pubkey=lambda stage, old: "pk:" + old),
        WIRE,
        "pubkey is not a bare lower-case z-base-32 key",
    ),
    # Signed, then tampered: the inner signature must catch every field.
    "tampered-burn": (tampered(burn=True), WIRE, SIGNATURE_MISMATCH),
    "tampered-recipient": (tampered(recipient=lambda stage, old: stage.other.public_key.z32), WIRE, SIGNATURE_MISMATCH),
    "tampered-pin-salt-added": (tampered(pin_salt=b64(bytes(32))), WIRE, SIGNATURE_MISMATCH),
    "tampered-pin-salt-changed": (
        tampered(pin=True, pin_salt=lambda stage, old: b64(bytes(32))),
        WIRE,
        SIGNATURE_MISMATCH,
    ),
    "tampered-ttl": (tampered(ttl=lambda stage, old: old + 86400), WIRE, SIGNATURE_MISMATCH),
    "tampered-created-at": (tampered(created_at=lambda stage, old: old + 60), WIRE, SIGNATURE_MISMATCH),
    "tampered-blob": (tampered(blob=flip_first_blob_byte), WIRE, SIGNATURE_MISMATCH),
    "tampered-hostname": (tampered(hostname="evil"), WIRE, SIGNATURE_MISMATCH),
    # Character-strings that do not join into the record.
    "split-then-garbage-string": (split_then_garbage, WIRE, "the handoff record is not valid JSON"),
    "garbage-answer-before-valid-one": (garbage_answer_before_valid_one, WIRE, "the handoff record is not valid JSON"),
}


def put_value(swarm, identity: Identity, value: bytes) -> None:
    """Store value as identity's BEP 44 item: a valid outer signature over whatever bytes we crafted."""
    published = RecordStore.on_dht(swarm.network).put_message(identity, value)
    assert published.nodes > 0


@pytest.fixture
def stage(machines) -> tuple[Stage, Machine, Machine]:
    """A fresh publisher key: `owner` holds it and the session, `stranger` has no key at all."""
    owner, stranger = machines("owner"), machines("stranger")
    identity = Identity.generate()
    give_key(owner, identity)
    project, session_id = publishable(owner)
    # The stranger has the session too, so only the record's checks stand between it and a launch.
    stranger.add_session(stranger.project("app"), session_id)
    return Stage(identity, Identity.generate(), session_id, project, time.time()), owner, stranger


@pytest.mark.parametrize(("build", "code", "fragment"), BAD_RECORDS.values(), ids=BAD_RECORDS.keys())
def test_bad_record_on_the_dht_is_refused_by_pickup_and_list(
    swarm, stage: tuple[Stage, Machine, Machine], build: Builder, code: int, fragment: str
) -> None:
    scene, owner, stranger = stage
    put_value(swarm, scene.identity, build(scene))
    before = {machine.name: home_state(machine.home, skip=(".cache", ".local")) for machine in (owner, stranger)}

    results = run_together(
        lambda: owner.run("pickup", "-y"),
        lambda: stranger.run("pickup", scene.z32, "-y"),
        lambda: owner.run("list"),
    )

    for result in results[:2] if code == NOT_FOUND else results:
        assert_clean_failure(result, code, fragment)
    if code == NOT_FOUND:  # a packet holding no handoff is nothing published, which list says without failing
        assert results[2].returncode == 0 and results[2].stdout.startswith("No handoff is published under")
    for machine in (owner, stranger):
        assert home_state(machine.home, skip=(".cache", ".local")) == before[machine.name]
        assert temp_files(machine.home) == []
    assert_nothing_launched(owner, stranger)


def valid_split(stage: Stage) -> bytes:
    return stage.txt(compact_json(stage.document()), sizes=(1, 2, 100))


def valid_among_other_answers(stage: Stage) -> bytes:
    """Unrelated answers first, and the `_cclink` name in upper case (names compare case-insensitively)."""
    record = compact_json(stage.document())
    return dns_message(
        a_answer(f"www.{stage.z32}."),
        txt_answer(f"_other.{stage.z32}.", [b"x"]),
        txt_answer(stage.name.upper(), pieces(record)),
        txt_answer(stage.name, [b"not json, and not read: only the first _cclink answer counts"]),
    )


@pytest.mark.parametrize(
    "build", [valid_split, valid_among_other_answers], ids=["split-irregularly", "among-other-answers"]
)
def test_crafted_but_valid_record_is_picked_up(swarm, stage: tuple[Stage, Machine, Machine], build: Builder) -> None:
    """The crafting above is sound: the same helpers, with nothing tampered, make a record pickup accepts."""
    scene, owner, _ = stage
    put_value(swarm, scene.identity, build(scene))

    listed, picked = run_together(lambda: owner.run("list", "--json"), lambda: owner.run("pickup", "-y"))

    assert listed.returncode == 0, describe(listed)
    assert json.loads(listed.stdout)["session_id"] == scene.session_id
    assert picked.returncode == 0, describe(picked)
    assert [launch.argv for launch in owner.launches()] == [[f"--resume={scene.session_id}"]]


def test_signed_record_with_undecryptable_blob(swarm, stage: tuple[Stage, Machine, Machine]) -> None:
    """Signatures hold but the blob is not age.

    `pickup` refuses (6, or 3 without a key); `list` shows the record without its session.
    """
    scene, owner, stranger = stage
    record = new_record(scene.identity, b"not an age file", ttl=RECORD_TTL, now=scene.now)
    put_value(swarm, scene.identity, scene.txt(record.to_json()))

    mine, theirs, listed = run_together(
        lambda: owner.run("pickup", "-y"),
        lambda: stranger.run("pickup", scene.z32, "-y"),
        lambda: owner.run("list", "--json"),
    )

    assert_clean_failure(mine, CANNOT_DECRYPT, "does not decrypt with it")
    assert_clean_failure(theirs, KEY_FILE, "there is no key here")
    assert listed.returncode == 0, describe(listed)
    assert "session_id" not in json.loads(listed.stdout)
    assert_nothing_launched(owner, stranger)


UNSAFE_ID = "the session id in the handoff is not"
NOT_ABSOLUTE = "the project path in the handoff is not a usable absolute path"
# Payloads a publisher can sign and encrypt that must never steer the picker. Each id
# below also names a session file on the picker, so only the payload's checks stop it.
UNSAFE_PAYLOADS = {
    "path-as-session-id": ({"s": "../../.ssh/id"}, UNSAFE_ID),
    # `claude --resume -c` would read `-c` as an option of its own.
    "flag-as-session-id": ({"s": "--dangerously-skip-permissions"}, UNSAFE_ID),
    "short-flag-as-session-id": ({"s": "-c"}, UNSAFE_ID),
    "relative-project": ({"p": "."}, NOT_ABSOLUTE),
    "project-with-nul": ({"p": "/home/me/app\0/x"}, NOT_ABSOLUTE),
}


@pytest.mark.parametrize(("change", "fragment"), UNSAFE_PAYLOADS.values(), ids=UNSAFE_PAYLOADS.keys())
def test_signed_record_with_unsafe_payload_is_refused(
    swarm, stage: tuple[Stage, Machine, Machine], change: dict, fragment: str
) -> None:
    """A validly signed and encrypted payload with an unsafe session id or project is refused.

    Unsafe: a path or a flag as the session id, or a relative project.
    """
    scene, owner, _ = stage
    body = {"h": "laptop", "p": str(scene.project), "s": scene.session_id, **change}
    if body["s"].startswith("-"):
        owner.add_session(scene.project, body["s"])
    blob = agecrypt.encrypt(compact_json(body), scene.identity.public_key.age_recipient())
    record = new_record(scene.identity, blob, ttl=RECORD_TTL, now=scene.now)
    put_value(swarm, scene.identity, scene.txt(record.to_json()))

    picked, listed = run_together(lambda: owner.run("pickup", "-y"), lambda: owner.run("list"))

    assert_clean_failure(picked, WIRE, fragment)
    assert_clean_failure(listed, WIRE, fragment)
    assert_nothing_launched(owner)


# --- the outer (BEP 44) signature ---------------------------------------------------------------


def bep44_signable(seq: int, value: bytes) -> bytes:
    """What a BEP 44 mutable item's signature covers, with an empty salt (docs/wire.md §6)."""
    return b"3:seqi%de1:v%d:" % (seq, len(value)) + value


@pytest.fixture
def signed_item() -> tuple[Identity, Identity, Record, bytes]:
    """A publisher, another key, a valid record and its DNS message."""
    identity, other = Identity.generate(), Identity.generate()
    body = Payload(session_id="0b6a3c1e-4d3f-4a2b-9c1d-5e6f7a8b9c0d", project="/home/me/app")
    record = new_record(
        identity, payload.seal(body, identity.public_key.age_recipient()), ttl=RECORD_TTL, now=1_700_000_000
    )
    value = dns_message(txt_answer(f"_cclink.{identity.public_key.z32}.", pieces(record.to_json())))
    return identity, other, record, value


def test_outer_signature_verifies_for_an_honest_item(signed_item) -> None:
    identity, _, record, value = signed_item
    item = MutableItem(seq=7, signature=identity.sign(bep44_signable(7, value)), value=value)

    resolved = record_store._verified_record(identity.public_key, item)

    assert (resolved.record, resolved.seq) == (record, 7)


def _forge(kind: str, identity: Identity, other: Identity, value: bytes) -> MutableItem:
    seq = 7
    honest = identity.sign(bep44_signable(seq, value))
    if kind == "random-bytes":
        return MutableItem(seq, bytes(range(64)), value)
    if kind == "signed-by-another-key":
        return MutableItem(seq, other.sign(bep44_signable(seq, value)), value)
    if kind == "seq-changed-after-signing":
        return MutableItem(seq + 1, honest, value)
    if kind == "value-changed-after-signing":
        return MutableItem(seq, honest, value[:-1] + bytes([value[-1] ^ 1]))
    if kind == "signature-of-63-bytes":
        return MutableItem(seq, honest[:63], value)
    if kind == "seq-beyond-64-bits":
        return MutableItem(2**64, honest, value)
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "error", "fragment"),
    [
        ("random-bytes", BadSignature, "the packet's signature does not verify"),
        ("signed-by-another-key", BadSignature, "the packet's signature does not verify"),
        ("seq-changed-after-signing", BadSignature, "the packet's signature does not verify"),
        ("value-changed-after-signing", BadSignature, "the packet's signature does not verify"),
        ("signature-of-63-bytes", MalformedPacket, "a packet signature is not 64 bytes"),
        ("seq-beyond-64-bits", MalformedPacket, "seq is not a 64-bit unsigned integer"),
    ],
)
def test_forged_outer_signature_is_refused_by_rendezvous(signed_item, kind: str, error: type, fragment: str) -> None:
    """Honest libtorrent nodes never store a bad BEP 44 signature, so this is checked below the CLI."""
    identity, other, _, value = signed_item
    item = _forge(kind, identity, other, value)

    with pytest.raises(error) as raised:
        record_store._verified_record(identity.public_key, item)

    assert raised.value.exit_code == WIRE
    assert fragment in str(raised.value)


# --- PINs (the main PIN flows are tested elsewhere) -------------------------------------------


def test_wrong_pin_is_refused_and_launches_nothing(machines) -> None:
    publisher, stranger = machines("publisher"), machines("stranger")
    identity = Identity.generate()
    give_key(publisher, identity)
    project, session_id = publishable(publisher)
    stranger.add_session(stranger.project("app"), session_id)
    publisher.ok("--pin", cwd=project, env={"CCLINK_PIN": PIN})
    before = home_state(stranger.home, skip=(".cache", ".local"))

    result = stranger.run("pickup", identity.public_key.z32, "-y", env={"CCLINK_PIN": WRONG_PIN})

    assert_clean_failure(result, CANNOT_DECRYPT, "incorrect PIN for the handoff from", identity.public_key.display)
    assert home_state(stranger.home, skip=(".cache", ".local")) == before
    assert_nothing_launched(stranger, publisher)


def refused_publish(laptop: Machine, swarm, *args: str, env: dict[str, str] | None = None):
    """Run a publish that must be refused on a machine with a key and a session; check it wrote and put nothing."""
    identity = Identity.generate()
    give_key(laptop, identity)
    project, _ = publishable(laptop)
    before = home_state(laptop.home)

    result = laptop.run(*args, cwd=project, env=env)

    assert home_state(laptop.home) == before
    assert dht_item(swarm, identity.public_key.raw) is None
    return result


def test_weak_pin_at_publish_is_refused_and_publishes_nothing(laptop: Machine, swarm) -> None:
    result = refused_publish(laptop, swarm, "--pin", env={"CCLINK_PIN": "12345678"})

    assert_clean_failure(result, USAGE, "a PIN must not be a run of consecutive characters")


def test_weak_pin_for_a_carry_is_refused_before_packing(laptop: Machine, swarm) -> None:
    """With --carry a PIN guards the whole conversation: one that passes the plain rules is still too weak."""
    result = refused_publish(laptop, swarm, "--carry", "--pin", env={"CCLINK_PIN": PIN[:10]})

    assert_clean_failure(
        result,
        USAGE,
        f"with --carry a PIN guards the whole conversation: it must be at least {kdf.MIN_CARRY_PIN_LENGTH}",
    )


# --- a session id that is no session here --------------------------------------------------------


def test_publishing_an_id_that_is_no_session_here_is_refused(laptop: Machine, swarm) -> None:
    """`cclink <id>` for an id with no file here would hand off nothing the other side can resume."""
    result = refused_publish(laptop, swarm, "0b6a3c1e-4d3f-4a2b-9c1d-5e6f7a8b9c0d")

    assert_clean_failure(result, 4, "there is no session 0b6a3c1e-4d3f-4a2b-9c1d-5e6f7a8b9c0d in ~/.claude/projects")


# --- a burn-after-read pickup checks everything before it revokes -----------------------------


@pytest.fixture
def burn_stage(stage: tuple[Stage, Machine, Machine], swarm) -> tuple[Stage, Machine]:
    """The owner's key has published a burn-after-read handoff of the owner's session."""
    scene, owner, _ = stage
    owner.ok("--burn", cwd=scene.project)
    return scene, owner


def assert_still_published(swarm, scene: Stage) -> None:
    item = dht_item(swarm, scene.identity.public_key.raw)
    assert item is not None
    assert record_store._verified_record(scene.identity.public_key, item).record.burn


def test_burn_pickup_into_a_missing_project_dir_fails_without_revoking(
    swarm, burn_stage: tuple[Stage, Machine]
) -> None:
    scene, owner = burn_stage

    result = owner.run("pickup", "-y", "--project-dir", "/nonexistent/cclink-test")

    assert_clean_failure(result, USAGE, "--project-dir /nonexistent/cclink-test is not a directory")
    assert_still_published(swarm, scene)
    assert_nothing_launched(owner)


def test_burn_pickup_of_a_session_not_here_fails_without_revoking(swarm, burn_stage: tuple[Stage, Machine]) -> None:
    scene, owner = burn_stage
    session_file = next(owner.sessions_folder(scene.project).glob("*.jsonl"))
    session_file.unlink()

    result = owner.run("pickup", "-y")

    assert_clean_failure(result, 4, f"session {scene.session_id} is not on this machine")
    assert_still_published(swarm, scene)
    assert_nothing_launched(owner)


def test_burn_pickup_without_claude_fails_without_revoking(swarm, burn_stage: tuple[Stage, Machine]) -> None:
    scene, owner = burn_stage
    without_claude = os.pathsep.join(part for part in owner.env["PATH"].split(os.pathsep) if not part.endswith("-bin"))

    result = owner.run("pickup", "-y", env={"PATH": without_claude})

    assert_clean_failure(result, 4, "the claude command was not found on PATH")
    assert_still_published(swarm, scene)
