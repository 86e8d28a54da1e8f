"""The agent's carry directory: the carried sessions it offers, each in a directory of its own.

`cclink --carry` links the session's encrypted file into a new directory
of the agent's carry directory (`link_into`) and names only that
directory's id in its carry request; the agent offers nothing from
anywhere else (`TransferFiles`). One 0700 directory per transfer:
`carry.age` and `transfer.json` (docs/wire.md §10a).
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from pathlib import Path

from cclink.local import files, runtime
from cclink.wire import agent_protocol
from cclink.wire.agent_protocol import ProtocolError, Transfer

CARRY_FILE = "carry.age"  # bittorrent.FILE_NAME: the name the torrent is made under
TRANSFER_FILE = "transfer.json"
HANDOVER_WAIT = 3600.0  # a transfer directory that no agent took (its command is gone) is removed after this


def link_into(carry: Path, archive: Path) -> tuple[str, Path]:
    """A new transfer directory in carry holding archive as CARRY_FILE (a hard link, else a copy); its id and path."""
    runtime.private_dir(carry, create=True)
    transfer_id = secrets.token_hex(16)
    directory = carry / transfer_id
    directory.mkdir(mode=0o700)
    try:
        try:
            os.link(archive, directory / CARRY_FILE, follow_symlinks=False)
        except OSError:  # another file system (a cache elsewhere), or one without hard links
            with open(archive, "rb") as source, files.create_private(directory / CARRY_FILE) as target:
                shutil.copyfileobj(source, target, 1 << 20)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return transfer_id, directory


class TransferFiles:
    """The agent's carry directory: a 0700 directory per transfer, with its encrypted file and what it is.

    A request names a transfer by its id only (32 hex digits, checked by
    the protocol), so nothing outside this directory is ever offered.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, transfer_id: str) -> Path:
        return self.directory / agent_protocol.transfer_id(transfer_id) / CARRY_FILE

    def archive(self, transfer_id: str, size: int) -> Path:
        """The transfer's file, once checked: a regular file of ours, of size bytes, in a private directory.

        OSError when it is not.
        """
        path = self.path(transfer_id)
        runtime.private_dir(self.directory, create=False)
        runtime.check_private(path.parent)
        info = os.lstat(path)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
            raise OSError("its file is not a file of this user")  # a link, say: never followed
        if info.st_size != size:
            raise OSError("its file is not of the size the transfer says")
        return path

    def save(self, transfer_id: str, transfer: Transfer) -> None:
        files.write_private(
            self.path(transfer_id).with_name(TRANSFER_FILE), agent_protocol.encode_transfer_file(transfer)
        )

    def saved_ids(self) -> list[str]:
        """The ids of the transfer directories there (at most a few more than the agent offers at once)."""
        try:
            runtime.private_dir(self.directory, create=False)
            names = []
            with os.scandir(self.directory) as entries:
                for entry in entries:
                    if agent_protocol.TRANSFER_ID.fullmatch(entry.name):
                        names.append(entry.name)
                    if len(names) >= 4 * agent_protocol.MAX_TRANSFERS:
                        break
        except OSError:
            return []
        return sorted(names)

    def saved(self, now: float) -> list[tuple[str, Transfer]]:
        """Each transfer directory's id and what it is; one that says nothing readable is removed.

        Except for a while after it was made: a command links its file in
        before it asks, and the agent writes what it is once it takes it.
        """
        found = []
        for transfer_id in self.saved_ids():
            described = self.path(transfer_id).with_name(TRANSFER_FILE)
            data = files.read_bounded(described, agent_protocol.MAX_TRANSFER_FILE)
            try:
                found.append((transfer_id, agent_protocol.decode_transfer_file(data or b"")))
            except ProtocolError:
                if data is not None or self._made_before(transfer_id, now - HANDOVER_WAIT):
                    self.remove(transfer_id)
        return found

    def _made_before(self, transfer_id: str, when: float) -> bool:
        try:
            return os.lstat(self.path(transfer_id).parent).st_mtime < when
        except OSError:
            return False

    def remove(self, transfer_id: str) -> None:
        shutil.rmtree(self.path(transfer_id).parent, ignore_errors=True)
