"""The one exception hierarchy of cclink.

Every failure a user can cause or meet is a CclinkError whose message is one
sentence meant for them. The CLI prints that sentence and exits with the
class's exit code; nothing else in the package decides how errors look.
"""

from __future__ import annotations


class CclinkError(Exception):
    """Base of every error cclink reports to its user."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


# --- what the user typed or set up -------------------------------------------


class UsageError(CclinkError):
    """An argument, flag combination or environment value is not acceptable."""

    exit_code = 2


class InvalidPublicKey(UsageError):
    """A public key given by the user is not a z-base-32 Ed25519 key."""


class WeakSecret(UsageError):
    """A PIN or passphrase that the rules refuse."""


class UnknownContact(UsageError):
    """A name given by the user names no device or contact."""


class NoInput(UsageError):
    """A secret or confirmation is needed but there is neither a TTY nor a variable."""


class Aborted(CclinkError):
    """The input ended where an answer was expected (end of file at a prompt, no choice made)."""

    exit_code = 130


class NothingDone(CclinkError):
    """The command had nothing to do, or the person chose that nothing be done: said, but no failure."""

    exit_code = 0


class Declined(NothingDone):
    """The person answered no to a question."""


# --- local state ----------------------------------------------------------------


class KeyFileError(CclinkError):
    """The key file is missing, unreadable, malformed or has loose permissions."""

    exit_code = 3


class WrongPassphrase(KeyFileError):
    """The key file's passphrase does not open its envelope."""


class ContactsError(CclinkError):
    """The contacts file (wire/contacts.py) is unreadable, malformed, full or locked."""

    exit_code = 3


class SessionError(CclinkError):
    """A Claude Code session cannot be found or resumed on this machine."""

    exit_code = 4


class NoSpace(SessionError):
    """A carried session would not fit: past what cclink accepts, or past the disk's free space."""


class UnknownSession(SessionError):
    """A session id given to publish names no session on this machine."""

    def __init__(self, message: str, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


# --- what came over the wire -----------------------------------------------------


class WireError(CclinkError):
    """Bytes from the network (or a file) do not follow docs/wire.md."""

    exit_code = 5


class MalformedPacket(WireError):
    """A SignedPacket or DNS message that cannot be parsed."""


class MalformedRecord(WireError):
    """A handoff record whose JSON, fields or base64 are wrong."""


class MalformedPayload(WireError):
    """A decrypted payload that is neither JSON nor a bare session id."""


class BadSignature(WireError):
    """A signature that does not verify under the expected key."""


class RecordTooLarge(WireError):
    """A record that does not fit in one DHT item."""


class MalformedArchive(WireError):
    """A carried session archive that is damaged or holds more than the session."""


class IntegrityError(WireError):
    """Carried data whose SHA-256 differs from the one the signed record promised."""


class CannotDecrypt(CclinkError):
    """Ciphertext that none of our keys (or the PIN) opens."""

    exit_code = 6


class WrongPin(CannotDecrypt):
    """The PIN does not open a PIN-protected handoff."""


# --- the DHT ----------------------------------------------------------------------


class NotFound(CclinkError):
    """No active handoff record is published under a key."""

    exit_code = 7


class Expired(NotFound):
    """A handoff record whose TTL has run out."""


class Rollback(NotFound):
    """A genuinely signed item older than one this machine has already seen under its key.

    It was replaced, revoked, or replayed.
    """


class NetworkError(CclinkError):
    """The DHT could not be reached, or no node stored a publish."""

    exit_code = 8


class NoNetwork(NetworkError):
    """This machine has no network that reaches the DHT at all; retrying at once will not help."""


class TransferError(NetworkError):
    """Carried session data could not be fetched from its publisher in time."""


# --- pairing ----------------------------------------------------------------------


class PairingFailed(CclinkError):
    """The other side of a pairing declined, gave up, or another machine took the code: nothing was paired."""

    exit_code = 9
