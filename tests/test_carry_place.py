"""placing.place() on hostile carried files: real age (pyrage), real archives, a temp HOME.

A publisher who can encrypt to the picker chooses every byte of the carried
file. Whatever it holds, place() must end in one of cclink's own errors with
its exit code, hold memory and disk within bounds, and leave nothing behind:
no staging folder, nothing under ~/.claude/projects.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pyrage
import pytest
from support.archives import HOSTILE, SESSION, SESSION_FILE, pax, raw_archive, raw_header, raw_member
from support.carry import with_junk_stanzas
from support.machines import require

from cclink.errors import MalformedArchive, NoSpace, WireError
from cclink.flows import carry, placing
from cclink.local import claude
from cclink.wire import agecrypt

PUBLISHER_PROJECT = "/home/a/app"
# The child's whole address space: Python with cclink and its libraries takes about 200 MiB of it.
ADDRESS_SPACE = 512 << 20


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture(scope="module")
def identity() -> pyrage.x25519.Identity:
    return pyrage.x25519.Identity.generate()


def encrypted(path: Path, plaintext: bytes, identity: pyrage.x25519.Identity) -> Path:
    path.write_bytes(pyrage.encrypt(plaintext, [identity.to_public()]))
    return path


def place(ciphertext: Path, identity: pyrage.x25519.Identity, home: Path) -> placing.Placed:
    return placing.place(ciphertext, identity, SESSION, publisher_project=PUBLISHER_PROJECT, local_project=home / "app")


def left_behind(home: Path) -> list[Path]:
    """Whatever place() left under ~/.claude/projects, folders it made for the project aside."""
    return [p for p in claude.projects_dir().rglob("*") if p.is_file() or p.name.startswith(".cclink-incoming-")]


# --- hostile archives -------------------------------------------------------------------------


CASES = {
    name: HOSTILE[name]
    for name in ("file-twice", "file-then-directory", "mtime-1e300", "name-part-too-long", "nested-too-deep")
}


@pytest.mark.parametrize("pieces", CASES.values(), ids=CASES.keys())
def test_a_hostile_archive_is_the_archive_error_and_leaves_nothing(tmp_path, home, identity, pieces):
    ciphertext = encrypted(tmp_path / "carry.age", raw_archive(*pieces).getvalue(), identity)

    with pytest.raises(MalformedArchive) as refused:
        place(ciphertext, identity, home)

    assert refused.value.exit_code == WireError.exit_code == 5
    assert left_behind(home) == []


def test_what_the_cwd_rewrite_adds_is_written_within_the_limit(tmp_path, home, identity, monkeypatch):
    transcript = f'{{"cwd":"{PUBLISHER_PROJECT}"}}\n'.encode() * 20_000  # the local project's path is longer
    ciphertext = encrypted(
        tmp_path / "carry.age", raw_archive(raw_member(f"{SESSION}.jsonl", transcript)).getvalue(), identity
    )
    monkeypatch.setattr(carry, "MAX_UNPACKED", len(transcript) + 100_000)  # room for the transcript, not for 3 MB more
    local = home / ("a-much-longer-local-project-directory" * 3)

    with pytest.raises(NoSpace):
        placing.place(ciphertext, identity, SESSION, publisher_project=PUBLISHER_PROJECT, local_project=local)

    assert left_behind(home) == []


# --- the age header ---------------------------------------------------------------------------


def test_the_header_of_a_genuine_age_file_is_measured_exactly(identity):
    for _ in range(20):  # age's grease stanza varies in length
        data = pyrage.encrypt(b"payload", [identity.to_public()])
        mac_line = data.index(b"\n--- ") + 1
        assert agecrypt.header_size(data) == data.index(b"\n", mac_line) + 1 < 1024


@pytest.mark.parametrize(
    "damage",
    [lambda data: with_junk_stanzas(data, 16 << 10), lambda data: b"not an age file at all" + data],
    ids=["header-of-16-KiB", "no-age-header"],
)
def test_a_carried_file_whose_age_header_is_too_large_is_refused_before_decrypting(tmp_path, home, identity, damage):
    # rage parses an age header in time quadratic in its size: a MiB of it is most of an hour.
    genuine = encrypted(tmp_path / "genuine.age", raw_archive(SESSION_FILE).getvalue(), identity).read_bytes()
    ciphertext = tmp_path / "carry.age"
    ciphertext.write_bytes(damage(genuine))

    with pytest.raises(MalformedArchive, match="header") as refused:
        place(ciphertext, identity, home)

    assert refused.value.exit_code == 5
    assert left_behind(home) == []


# --- memory ------------------------------------------------------------------------------------

CHILD = """
import resource, sys
import pyrage
from pathlib import Path
from cclink.flows import placing
from cclink.errors import CclinkError

identity = pyrage.x25519.Identity.from_str(Path(sys.argv[2]).read_text())
try:
    placing.place(
        Path(sys.argv[1]), identity, sys.argv[3], publisher_project="/home/a/app", local_project=Path.home() / "app"
    )
    outcome = "placed"
except CclinkError as error:
    outcome = f"{type(error).__name__} {error.exit_code}"
except BaseException as error:
    outcome = f"unexpected {type(error).__name__}"
print(outcome, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024))
"""


def place_in_a_child(tmp_path: Path, home: Path, identity: pyrage.x25519.Identity, plaintext: bytes) -> tuple[str, int]:
    """place() in a process of its own whose address space is capped: its outcome and its peak resident memory."""
    ciphertext = encrypted(tmp_path / "carry.age", plaintext, identity)
    key = tmp_path / "key"
    key.write_text(str(identity))
    # prlimit, not preexec_fn: Python code in a child forked from a threaded process can hang.
    result = subprocess.run(
        [require("prlimit"), f"--as={ADDRESS_SPACE}", sys.executable, "-c", CHILD, str(ciphertext), str(key), SESSION],
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    outcome, peak = result.stdout.rsplit(" ", 1)
    return outcome, int(peak)


def test_a_tar_header_announcing_gigabytes_is_refused_without_reading_it(tmp_path, home, identity):
    bomb = raw_archive(raw_header("././@PaxHeader", tarfile.XHDTYPE, 3 << 30), SESSION_FILE).getvalue()
    assert len(bomb) < 1024

    outcome, _ = place_in_a_child(tmp_path, home, identity, bomb)

    assert outcome == "MalformedArchive 5"
    assert left_behind(home) == []


def test_thousands_of_members_with_extended_headers_do_not_pile_up_in_memory(tmp_path, home, identity):
    # Each member's PAX header holds as many distinct fields as the header cap allows; tarfile keeps them all.
    fields = {f"k{i:04}": "" for i in range(700)}
    members = (
        raw_member("././@PaxHeader", pax(path=f"{SESSION}/{n}", **fields), tarfile.XHDTYPE) + raw_member("x")
        for n in range(2500)
    )
    bomb = raw_archive(SESSION_FILE, *members).getvalue()
    (tmp_path / "small").mkdir()
    (tmp_path / "small" / "home").mkdir()
    _, baseline = place_in_a_child(
        tmp_path / "small", tmp_path / "small" / "home", identity, raw_archive(SESSION_FILE).getvalue()
    )

    outcome, peak = place_in_a_child(tmp_path, home, identity, bomb)

    assert outcome == "placed"
    assert peak < baseline + (48 << 20)  # their fields take over 100 MiB when kept
