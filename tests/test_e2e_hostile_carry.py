"""End-to-end: a hostile publisher seeds a crafted carried file, and the real `cclink pickup -y` refuses it cleanly.

The publisher here holds the key (anyone who can encrypt to the picker can
do the same), so the record's signature, the payload and the SHA-256 all
check out; only what the age file and the archive inside it hold is hostile.
The picker must exit with the archive error's code and one sentence, leave
nothing under ~/.claude, and launch nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pyrage
import pytest
from support.archives import HOSTILE, SESSION, SESSION_FILE, raw_archive
from support.carry import files_under, finish, short_project, with_junk_stanzas

from cclink.net import bittorrent, record_store
from cclink.net.endpoints import Network, format_endpoint
from cclink.wire import payload, record
from cclink.wire.keys import Identity
from cclink.wire.payload import CarryInfo, Payload

pytestmark = pytest.mark.e2e

WIRE = 5


@contextlib.contextmanager
def hostile_publisher(machine, network: Network, ciphertext: Path, project: Path) -> Iterator[bittorrent.Seeder]:
    """Seed ciphertext as it is and publish a genuine record about it, under the machine's own key."""
    identity = Identity(bytes.fromhex(machine.key_file.read_text().strip()))
    with bittorrent.Seeder(network) as seeder:
        seeder.seed(ciphertext)
        hints = tuple(format_endpoint(e) for e in seeder.listen_endpoints())
        info = CarryInfo(
            seeder.info_hash,
            seeder.size,
            hashlib.sha256(ciphertext.read_bytes()).digest(),
            hints[: CarryInfo.MAX_HINTS],
        )
        body = Payload(SESSION, "laptop", str(project)).with_carry(info)
        signed = record.new_record(
            identity, payload.seal(body, identity.public_key.age_recipient()), ttl=600, now=time.time()
        )
        record_store.RecordStore.on_dht(network).publish(identity, signed)
        yield seeder


def encrypted_for(machine, plaintext: bytes) -> bytes:
    identity = Identity(bytes.fromhex(machine.key_file.read_text().strip()))
    return pyrage.encrypt(plaintext, [identity.public_key.age_recipient()])


CRAFTED = {
    "file-twice": lambda machine: encrypted_for(machine, raw_archive(*HOSTILE["file-twice"]).getvalue()),
    "mtime-1e300": lambda machine: encrypted_for(machine, raw_archive(*HOSTILE["mtime-1e300"]).getvalue()),
    "age-header-of-16-KiB": lambda machine: with_junk_stanzas(
        encrypted_for(machine, raw_archive(SESSION_FILE).getvalue()), 16 << 10
    ),
}


@pytest.mark.parametrize("craft", CRAFTED.values(), ids=CRAFTED.keys())
def test_a_crafted_carried_file_ends_in_one_sentence_and_leaves_nothing(paired, swarm, short_dir, craft):
    laptop, desktop = paired
    project = short_project(short_dir, "app")
    ciphertext = short_dir / "seed" / bittorrent.FILE_NAME
    ciphertext.parent.mkdir()
    ciphertext.write_bytes(craft(laptop))

    with hostile_publisher(laptop, swarm.network, ciphertext, project) as seeder:
        picker = desktop.spawn("pickup", "-y", "--project-dir", str(desktop.project("app")))
        while picker.poll() is None:
            seeder.poll(0.2)
        code, _, err = finish(picker)

    assert code == WIRE, err
    assert err.count("cclink: error:") == 1 and "Traceback" not in err and "internal error" not in err
    assert desktop.launches() == []
    assert files_under(desktop.home / ".claude") == []
    assert not list((desktop.home / ".claude").rglob(".cclink-incoming-*"))
    # Fetching the same signed bytes again would end the same way: the download is not kept either.
    assert files_under(desktop.home / ".cache" / "cclink" / "incoming") == []
