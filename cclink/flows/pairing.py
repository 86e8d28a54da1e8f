"""`cclink pair` and `cclink devices`: two machines swap public keys through a short code and SPAKE2 (docs/pairing.md).

The side that prints the code is A (`offer`, then `complete`), the side that
types it is B (`join`). They talk through two mailboxes on the DHT, one each,
which anyone can write to: so every item read is parsed as hostile, a stale
or foreign one is skipped, and nothing is stored until both people
confirmed and each side saw the other's sealed confirmation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from cclink import text
from cclink.errors import (
    CannotDecrypt,
    CclinkError,
    Expired,
    NetworkError,
    NoInput,
    NoNetwork,
    NotFound,
    PairingFailed,
    UsageError,
    WeakSecret,
    WireError,
)
from cclink.flows.environment import Environment
from cclink.flows.ui import UI, go_ahead
from cclink.net.record_store import RecordStore
from cclink.net.seq_memory import SeqMemory
from cclink.wire import contacts, pairing
from cclink.wire.contacts import Contact, ContactBook, Kind
from cclink.wire.keys import PublicKey
from cclink.wire.pairing import Card, Code, Keys, Message, Pake, Phase, Reason, Role

CODE_ENV = "CCLINK_PAIR_CODE"
NAMEPLATE_TRIES = 5
FIRST_POLL = 0.5  # seconds between looks at the other mailbox, growing to MAX_POLL
MAX_POLL = 5.0
NOTHING_PAIRED = "nothing was paired"
KIND_MISMATCH = (
    "one machine pairs as a device of yours and the other as a colleague; nothing was paired "
    "(use --colleague on both or on neither)"
)
SAME_KEY = "both machines use the same key, so they need no pairing; nothing was paired"

T = TypeVar("T")


@dataclass(frozen=True)
class PairRequest:
    kind: Kind = "device"  # how this side stores the other
    name: str | None = None  # the other's name here (default: from its hostname)
    timeout: int = pairing.DEFAULT_TIMEOUT  # seconds
    assume_yes: bool = False


@dataclass(frozen=True)
class PairOutcome:
    peer: Contact  # as stored here
    verification: str


def check_request(ui: UI, request: PairRequest) -> None:
    """Refuse what would fail later, before anything goes on the DHT."""
    if request.name is not None:
        contacts.check_name(request.name)
    if not 1 <= request.timeout <= pairing.MAX_TIMEOUT:
        raise UsageError(f"--timeout takes 1 to {pairing.MAX_TIMEOUT} seconds")
    if not request.assume_yes and not ui.is_interactive():
        raise NoInput(f"{NOTHING_PAIRED}: there is no terminal to confirm on; pass -y to pair without asking")


# --- the mailboxes ------------------------------------------------------------------------


@dataclass
class Mailboxes:
    """The two mailboxes of a code's nameplate, and the newest seq read from each (older items are stale)."""

    code: Code
    env: Environment
    store: RecordStore
    newest: dict[Role, int] = field(default_factory=dict)
    closed: bool = False

    @classmethod
    def of(cls, env: Environment, code: Code) -> Mailboxes:
        # A memory of this pairing alone: the throwaway mailbox keys must not crowd the user's (seq_memory.py).
        return cls(code, env, RecordStore(env.records.items, SeqMemory.in_memory()))

    def put(self, role: Role, message: Message) -> None:
        identity = pairing.mailbox(self.code.nameplate, role)
        self.store.put_message(identity, pairing.to_dns(identity.public_key, message))

    def read(self, role: Role) -> Message | None:
        """The newest message in role's mailbox not read before; None when there is none, or it is junk."""
        key = pairing.mailbox(self.code.nameplate, role).public_key
        item = self.store.find_item(key)
        if item is None or item.seq <= self.newest.get(role, -1):
            return None
        self.newest[role] = item.seq
        try:
            return pairing.from_dns(key, item.value, role)
        except WireError:
            return None  # anyone can write here: junk is skipped, never fatal

    def wait(self, role: Role, pick: Callable[[Message], T | None], deadline: float, ui: UI, doing: str) -> T:
        """The first new message in role's mailbox that pick makes something of; Expired at the deadline."""
        delay = FIRST_POLL
        with ui.progress(doing) as progress:
            while True:
                picked = self._look(role, pick)
                if picked is not None:
                    return picked
                left = deadline - self.env.clock()
                if left <= 0:
                    raise Expired(f"the other machine did not answer in time; {NOTHING_PAIRED}")
                progress.update(f"{doing} ({text.format_duration(left)} left)")
                self.env.sleep(min(delay, left))
                delay = min(delay * 1.5, MAX_POLL)

    def _look(self, role: Role, pick: Callable[[Message], T | None]) -> T | None:
        try:
            message = self.read(role)
        except NoNetwork:
            raise
        except NetworkError:
            return None  # a lookup that failed now may work at the next look
        return pick(message) if message is not None else None

    def close(self, role: Role, reason: Reason, answering: bytes | None = None) -> None:
        """Leave a closed note in role's mailbox, once: the other side stops, and nobody else can join."""
        if self.closed:
            return
        self.closed = True
        message = Message("closed", int(self.env.clock()), answers=answering, reason=reason)
        try:
            self.put(role, message)
        except NetworkError:
            pass  # the other side gives up at its deadline instead


def _failing(boxes: Mailboxes, role: Role, answering: bytes | None, work: Callable[[], T]) -> T:
    """work(); if it fails, role's mailbox is closed (with the reason, when the failure gave one) first."""
    try:
        return work()
    except _Refusal as refusal:
        boxes.close(role, refusal.reason, answering)
        raise refusal.error from None
    except (CclinkError, KeyboardInterrupt):
        boxes.close(role, "gave-up", answering)
        raise


class _Refusal(Exception):
    """A failure the other side is told the reason of, as it closes the mailbox."""

    def __init__(self, reason: Reason, error: CclinkError) -> None:
        super().__init__(error.message)
        self.reason = reason
        self.error = error


# --- A: the side that prints the code ---------------------------------------------------------


@dataclass
class Offer:
    """A's nameplate, taken: the code to show, and what completing needs."""

    code: Code
    boxes: Mailboxes
    pake: Pake
    me: PublicKey
    deadline: float


def offer(ui: UI, env: Environment, request: PairRequest) -> Offer:
    """Take a free nameplate and leave A's SPAKE2 message in its mailbox; show offer.code to the person."""
    check_request(ui, request)
    me = env.keys.public_key(ui)
    now = env.clock()
    with ui.progress("Choosing a code"):
        code, boxes = _free_nameplate(env, now)
        pake = Pake("A", code)
        boxes.put("A", Message("pake", int(now), pake=pake.message, ttl=request.timeout))
    return Offer(code, boxes, pake, me, now + request.timeout)


def _free_nameplate(env: Environment, now: float) -> tuple[Code, Mailboxes]:
    for _ in range(NAMEPLATE_TRIES):
        code = Code.random()
        boxes = Mailboxes.of(env, code)
        held = boxes.read("A")
        if held is None or not _in_use(held, now):
            return code, boxes
    raise NetworkError("every pairing code tried is in use; try again in a minute")


def _in_use(message: Message, now: float) -> bool:
    lasts = message.ttl if message.ttl is not None else pairing.DEFAULT_TIMEOUT
    return message.created + lasts > now and message.created <= now + pairing.MAX_SKEW


def complete(ui: UI, env: Environment, offer: Offer, request: PairRequest) -> PairOutcome:
    """Wait for B, check what it sent, confirm, and store B once B confirmed too; the nameplate is closed after."""
    return _failing(offer.boxes, "A", None, lambda: _complete(ui, env, offer, request))


def _complete(ui: UI, env: Environment, offer: Offer, request: PairRequest) -> PairOutcome:
    boxes, mine = offer.boxes, pairing.answers(offer.pake.message)
    reply = boxes.wait(
        "B", lambda m: m if m.answers == mine else None, offer.deadline, ui, "Waiting for the other machine"
    )
    if reply.phase == "closed":
        raise _closed_error(reply.reason)
    assert reply.pake is not None and reply.box is not None  # B's pake and confirmed messages hold both
    try:
        keys = offer.pake.finish(reply.pake)
        side = _Side("A", boxes, keys, offer.me, mine, pairing.answers(reply.pake), offer.deadline)
        card = side.open(reply.box)
    except (CannotDecrypt, WireError):
        raise _Refusal("wrong-code", CannotDecrypt(pairing.WRONG_CODE)) from None
    return _agree(ui, env, request, side, card)


# --- B: the side that types the code -------------------------------------------------------------


def join(ui: UI, env: Environment, request: PairRequest, typed: str | None) -> PairOutcome:
    """Pair with the machine showing the code typed (asked for, or CCLINK_PAIR_CODE, when typed is None)."""
    check_request(ui, request)
    code = Code.parse(typed) if typed is not None else _ask_code(ui)
    me = env.keys.public_key(ui)
    now = env.clock()
    boxes = Mailboxes.of(env, code)
    with ui.progress(f"Looking for the other machine (code {code.nameplate}-...)"):
        first = boxes.read("A")
    _check_offer(first, code, now)
    assert first is not None and first.pake is not None
    pake = Pake("B", code)
    keys = pake.finish(first.pake)
    theirs, mine = pairing.answers(first.pake), pairing.answers(pake.message)
    card = Card(me, env.hostname, request.kind, confirmed=False)
    side = _Side("B", boxes, keys, me, mine, theirs, now + request.timeout, pake.message)
    with ui.progress("Answering"):
        boxes.put("B", Message("pake", int(now), pake=pake.message, answers=theirs, box=card.seal(keys.box_b)))
    return _failing(boxes, "B", theirs, lambda: _joined(ui, env, request, side))


def _ask_code(ui: UI) -> Code:
    def check(typed: str) -> None:
        try:
            Code.parse(typed)
        except UsageError as wrong:
            raise WeakSecret(wrong.message) from None

    return Code.parse(ui.secret("Code shown on the other machine: ", CODE_ENV, check=check))


def _check_offer(first: Message | None, code: Code, now: float) -> None:
    again = "run `cclink pair` again on the other machine"
    if first is None or first.created > now + pairing.MAX_SKEW:
        raise NotFound(f"no machine is waiting with the code {code}; check it, or {again}")
    if first.phase != "pake":
        raise NotFound(f"the code {code} was already used, or given up; {again}")
    assert first.ttl is not None  # A's pake message holds one
    if now > first.created + first.ttl:
        raise Expired(f"the code {code} has expired; {again}")


def _joined(ui: UI, env: Environment, request: PairRequest, side: _Side) -> PairOutcome:
    def pick(message: Message) -> Message | None:
        if message.phase in ("key", "confirmed") and message.answers != side.mine:
            raise PairingFailed(f"another machine used this code first; {NOTHING_PAIRED}")
        return message

    reply = side.boxes.wait("A", pick, side.deadline, ui, "Waiting for the other machine")
    if reply.phase == "closed":
        raise _closed_error(reply.reason)
    assert reply.box is not None  # A's key and confirmed messages hold one
    try:
        card = side.open(reply.box)
    except (CannotDecrypt, WireError):
        raise _Refusal("wrong-code", CannotDecrypt(pairing.WRONG_CODE)) from None
    return _agree(ui, env, request, side, card)


# --- both sides: show, confirm, wait for the other's confirmation, store ---------------------------


@dataclass(frozen=True)
class _Side:
    """One side once SPAKE2 finished: what it seals with, and how its messages and the other's name each other."""

    role: Role
    boxes: Mailboxes
    keys: Keys
    me: PublicKey
    mine: bytes  # answers() of this side's SPAKE2 message: the other side's messages carry it
    theirs: bytes  # answers() of the other side's: this side's messages carry it
    deadline: float
    pake: bytes | None = None  # B's own SPAKE2 message, which every message of B's repeats

    @property
    def peer_role(self) -> Role:
        return "B" if self.role == "A" else "A"

    def send(self, env: Environment, request: PairRequest, *, confirmed: bool) -> None:
        card = Card(self.me, env.hostname, request.kind, confirmed)
        sealed = card.seal(self.keys.box_a if self.role == "A" else self.keys.box_b)
        phase: Phase = "confirmed" if confirmed else "key"
        self.boxes.put(self.role, Message(phase, int(env.clock()), pake=self.pake, answers=self.theirs, box=sealed))

    def open(self, sealed: bytes) -> Card:
        """A card the other side sealed; CannotDecrypt or WireError when it is not one."""
        return Card.open(self.keys.box_b if self.role == "A" else self.keys.box_a, sealed)


def _agree(ui: UI, env: Environment, request: PairRequest, side: _Side, card: Card) -> PairOutcome:
    if card.kind != request.kind:
        raise _Refusal("kind", UsageError(KIND_MISMATCH))
    if card.key == side.me:
        raise _Refusal("same-key", UsageError(SAME_KEY))
    if side.role == "A":
        side.send(env, request, confirmed=False)
    name = request.name or contacts.name_from(card.host, "device" if request.kind == "device" else "colleague")
    _confirm(ui, request, side.keys.verification, name, card)
    side.send(env, request, confirmed=True)
    if not card.confirmed:
        card = side.boxes.wait(
            side.peer_role, _confirmation(side, card.key), side.deadline, ui, "Waiting for the other machine to confirm"
        )
    stored = env.contacts.add(Contact(name, card.key, request.kind, int(env.clock())))
    return PairOutcome(stored, side.keys.verification)


def _confirmation(side: _Side, peer: PublicKey) -> Callable[[Message], Card | None]:
    """What picks the other side's sealed confirmation (or its closing) out of its mailbox."""

    def pick(message: Message) -> Card | None:
        if message.answers is not None and message.answers != side.mine:
            return None  # about another pairing
        if message.phase == "closed":
            raise _closed_error(message.reason)
        if message.phase != "confirmed" or message.box is None:
            return None
        try:
            card = side.open(message.box)
        except (CannotDecrypt, WireError):
            return None  # not sealed with this pairing's key: someone else's, skipped
        return card if card.confirmed and card.key == peer else None

    return pick


def _confirm(ui: UI, request: PairRequest, verification: str, name: str, card: Card) -> None:
    ui.say(f"Verification: {verification}  (the other machine must show the same words)")
    ui.say(f"Other machine: {card.host}, key {card.key.display}")
    if request.kind == "device":
        what = f"{name} as a device of yours: it will be able to read every handoff you publish"
    else:
        what = f"{name} as a colleague: they will receive only what you --share with them"
    question = f"Does the other machine show '{verification}'? Then pair with {what}."
    try:
        go_ahead(ui, question, assume_yes=request.assume_yes, otherwise=NOTHING_PAIRED, unattended=False)
    except CclinkError as refused:
        raise _Refusal("declined", refused) from None


def _closed_error(reason: Reason | None) -> CclinkError:
    if reason == "wrong-code":
        return CannotDecrypt(pairing.WRONG_CODE)
    if reason == "kind":
        return UsageError(KIND_MISMATCH)
    if reason == "same-key":
        return UsageError(SAME_KEY)
    if reason == "declined":
        return PairingFailed(f"the other machine declined; {NOTHING_PAIRED}")
    return PairingFailed(f"the other machine gave up; {NOTHING_PAIRED}")


# --- cclink devices ------------------------------------------------------------------------------


def rename(book: ContactBook, old: str, new: str) -> Contact:
    return book.rename(old, new)


def remove(ui: UI, book: ContactBook, name: str, *, assume_yes: bool) -> Contact:
    """Forget a device or contact (asking first on a terminal): it gets nothing published from now on."""
    contact = book.get(name)
    what = "device" if contact.is_device else "colleague"
    question = f"Remove the {what} {contact.name} ({contact.key.display})? It will get nothing you publish from now on."
    go_ahead(ui, question, assume_yes=assume_yes, otherwise="nothing was removed", unattended=False)
    return book.remove(contact.key.z32)
