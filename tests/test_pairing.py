"""`cclink pair` in process: the wire format, and both sides' flows over one in-memory DHT (docs/pairing.md).

A's side (offer, then complete) runs in a thread while B's (join) runs in the
test's; both see real time, and their polls sleep a moment, never long.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import dataclass, field, replace

import nacl.secret
import pytest
from support.desks import Desk
from support.ui import ScriptedUI

from cclink.errors import (
    CannotDecrypt,
    CclinkError,
    Declined,
    Expired,
    MalformedPacket,
    MalformedRecord,
    NoInput,
    NotFound,
    PairingFailed,
    UsageError,
)
from cclink.flows import pairing
from cclink.flows.environment import Environment
from cclink.flows.pairing import PairOutcome, PairRequest
from cclink.wire import packet, words
from cclink.wire import pairing as wire
from cclink.wire.contacts import Contact
from cclink.wire.keys import Identity, PublicKey
from cclink.wire.pairing import Card, Code, Message, Pake

SHORT_TIMEOUT = 20  # seconds a side waits in these tests: a guard against hangs only


def live(desk: Desk) -> Environment:
    """The desk's environment on the real clock, its polls sleeping a moment (two threads share no fake clock)."""
    return replace(desk.env(), clock=time.time, sleep=lambda seconds: time.sleep(min(seconds, 0.01)))


@dataclass
class Offering:
    """A's side: the code taken in the test's thread, completed in another."""

    offer: pairing.Offer
    ui: ScriptedUI
    outcome: PairOutcome | None = None
    error: BaseException | None = None
    thread: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def start(cls, desk: Desk, ui: ScriptedUI, request: PairRequest) -> Offering:
        env = live(desk)
        running = cls(pairing.offer(ui, env, request), ui)
        running.thread = threading.Thread(target=running._complete, args=(env, request), daemon=True)
        running.thread.start()
        return running

    def _complete(self, env: Environment, request: PairRequest) -> None:
        try:
            self.outcome = pairing.complete(self.ui, env, self.offer, request)
        except BaseException as error:  # noqa: BLE001 - handed to the test, which looks at it
            self.error = error

    @property
    def code(self) -> str:
        return str(self.offer.code)

    def result(self) -> PairOutcome:
        assert self.thread is not None
        self.thread.join(SHORT_TIMEOUT * 3)
        assert not self.thread.is_alive(), "A's side never ended"
        if self.error is not None:
            raise self.error
        assert self.outcome is not None
        return self.outcome


@pytest.fixture
def laptop(desks) -> Desk:
    desk = desks("laptop")
    desk.make_key()
    return desk


@pytest.fixture
def desktop(desks) -> Desk:
    desk = desks("desktop")
    desk.make_key()
    return desk


def request(**changes) -> PairRequest:
    return replace(PairRequest(timeout=SHORT_TIMEOUT), **changes)


def saying_yes() -> ScriptedUI:
    return ScriptedUI.answering(answers=[True])


def book(desk: Desk) -> list[Contact]:
    return live(desk).contacts.all()


def key_of(desk: Desk) -> Identity:
    return desk.keys.load(ScriptedUI.answering())


def wrong_words(code: str) -> str:
    nameplate, first, second = code.split("-")
    other = words.EVEN[(words.EVEN.index(first) + 1) % 256]
    return f"{nameplate}-{other}-{second}"


def mailbox_of(code: Code, role: str) -> PublicKey:
    return wire.mailbox(code.nameplate, role).public_key


def put_in_mailbox(desk: Desk, code: Code, role: str, value: bytes) -> None:
    """Write an item to a mailbox as anyone can: its key is derived from the nameplate alone."""
    live(desk).records.put_message(wire.mailbox(code.nameplate, role), value)


# --- the code and the word list ----------------------------------------------------------------


def test_the_word_lists_are_the_pgp_lists_of_256_words_each() -> None:
    assert len(words.EVEN) == len(words.ODD) == 256
    assert len(set(words.EVEN) | set(words.ODD)) == 512
    picked = (words.EVEN[0x9E], words.ODD[0x9E], words.EVEN[0xFF], words.ODD[0xFF])
    assert picked == ("quiver", "onlooker", "zulu", "yucatan")


@pytest.mark.parametrize("typed", ["7-quiver-onlooker", " 7 Quiver ONLOOKER ", "7--quiver - onlooker"])
def test_a_code_is_read_whatever_its_case_and_spacing(typed: str) -> None:
    assert str(Code.parse(typed)) == "7-quiver-onlooker"


@pytest.mark.parametrize(
    ("typed", "words_in_error"),
    [
        ("7-quiver", "a number and two words"),
        ("0-quiver-onlooker", "from 1 to 9999"),
        ("10000-quiver-onlooker", "from 1 to 9999"),
        ("7-onlooker-quiver", "seem swapped"),
        ("7-guitar-ocean", "not the words cclink prints"),
        ("\u0667-quiver-onlooker", "a number and two words"),  # an Arabic-Indic seven
    ],
)
def test_a_code_that_is_not_one_is_refused(typed: str, words_in_error: str) -> None:
    with pytest.raises(UsageError, match=words_in_error):
        Code.parse(typed)


def test_random_codes_parse_back_to_themselves() -> None:
    for _ in range(50):
        code = Code.random()
        assert Code.parse(str(code)) == code


# --- the messages, as hostile input ----------------------------------------------------------


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def a_valid(role: str = "B", phase: str = "pake") -> dict:
    document: dict = {"v": 1, "phase": phase, "created": 1_800_000_000}
    if role == "A" and phase == "pake":
        return document | {"pake": b64(b"A" + bytes(32)), "ttl": 600}
    if phase == "closed":
        return document | {"reason": "declined", "answers": b64(bytes(16))}
    document |= {"answers": b64(bytes(16)), "box": b64(bytes(60))}
    return document | ({"pake": b64(b"B" + bytes(32))} if role == "B" else {})


@pytest.mark.parametrize(
    ("role", "phase"),
    [("A", "pake"), ("A", "key"), ("A", "confirmed"), ("A", "closed"), ("B", "pake"), ("B", "confirmed")],
)
def test_each_message_a_role_sends_reads_back(role: str, phase: str) -> None:
    message = Message.from_json(json.dumps(a_valid(role, phase)).encode(), role)

    assert Message.from_json(message.to_json(), role) == message


@pytest.mark.parametrize(
    "change",
    [
        {"phase": "key"},  # B never sends a key message
        {"phase": "hello"},
        {"v": 2},
        {"created": True},
        {"created": -1},
        {"created": 2**60},
        {"pake": b64(b"B" + bytes(33))},  # SPAKE2's message is 33 bytes exactly
        {"pake": b64(b"B" + bytes(31))},
        {"answers": b64(bytes(17))},
        {"box": b64(bytes(wire.MAX_BOX + 1))},
        {"box": "not base64!"},
        {"box": 12},
        {"extra": 1},
        {"reason": "declined"},  # a field of another phase
    ],
    ids=lambda change: "-".join(f"{key}={str(value)[:12]}" for key, value in change.items()),
)
def test_a_message_off_its_shape_is_refused(change: dict) -> None:
    with pytest.raises(MalformedRecord):
        Message.from_json(json.dumps(a_valid() | change).encode(), "B")


@pytest.mark.parametrize(
    "data",
    [
        b"[]",
        b"nonsense",
        b'{"v":1,"v":1}',
        b"\xff",
        json.dumps({k: v for k, v in a_valid().items() if k != "box"}).encode(),
    ],
    ids=["array", "not-json", "repeated-key", "not-utf8", "missing-field"],
)
def test_what_is_not_a_message_is_refused(data: bytes) -> None:
    with pytest.raises(MalformedRecord):
        Message.from_json(data, "B")


def test_an_item_too_large_or_not_dns_or_under_another_name_is_refused() -> None:
    code, other = Code(7, "quiver", "onlooker"), Code(8, "quiver", "onlooker")
    message = Message.from_json(json.dumps(a_valid()).encode(), "B")
    with pytest.raises(MalformedPacket):
        wire.from_dns(mailbox_of(code, "B"), bytes(wire.MAX_ITEM + 1), "B")
    with pytest.raises(MalformedPacket):
        wire.from_dns(mailbox_of(code, "B"), b"\x00\x01garbage", "B")
    with pytest.raises(MalformedPacket):
        wire.from_dns(mailbox_of(code, "B"), wire.to_dns(mailbox_of(other, "B"), message), "B")
    assert wire.from_dns(mailbox_of(code, "B"), wire.to_dns(mailbox_of(code, "B"), message), "B") == message


def test_a_card_opens_only_with_its_key_and_only_when_well_formed() -> None:
    key, other = bytes(range(32)), bytes(32)
    card = Card(Identity.generate().public_key, "laptop.local", "device", confirmed=False)
    assert Card.open(key, card.seal(key)) == card
    with pytest.raises(CannotDecrypt):
        Card.open(other, card.seal(key))
    for plain in (b"{}", b'{"key":"x","host":"h","kind":"device","confirmed":false}', b"[1]"):
        with pytest.raises(MalformedRecord):
            Card.open(key, bytes(nacl.secret.SecretBox(key).encrypt(plain)))


def test_spake2_agrees_only_on_the_same_code() -> None:
    code = Code.random()
    a, b, wrong = Pake("A", code), Pake("B", code), Pake("B", Code.parse(wrong_words(str(code))))

    keys = a.finish(b.message)
    assert keys == b.finish(a.message)
    assert Pake("A", code).finish(wrong.message) != wrong.finish(Pake("A", code).message)
    assert len(keys.verification.split()) == 3
    with pytest.raises(CannotDecrypt):
        Pake("A", code).finish(Pake("A", code).message)  # a message of the same role
    with pytest.raises(CannotDecrypt):
        Pake("A", code).finish(b"B" + bytes(32))  # not a point of the group


@pytest.mark.parametrize("host", ["h" * 300, "\U0001f600" * 100, "laptop\udcff"], ids=["long", "astral", "surrogate"])
def test_every_message_fits_in_one_dht_item_and_reads_back(host: str) -> None:
    card = Card(Identity.generate().public_key, host, "contact", confirmed=True)
    biggest = Message("confirmed", 2**40, pake=b"B" + bytes(32), answers=bytes(16), box=card.seal(bytes(32)))
    mailbox = mailbox_of(Code(9999, "zulu", "yucatan"), "B")
    value = wire.to_dns(mailbox, biggest)

    assert len(value) <= wire.MAX_ITEM < packet.MAX_MESSAGE_SIZE
    read = wire.from_dns(mailbox, value, "B")
    assert read.box is not None
    opened = Card.open(bytes(32), read.box)
    assert opened.key == card.key and opened.host == host[: wire.MAX_HOST].replace("\udcff", "?")


def test_mailboxes_are_the_same_for_everyone_and_differ_per_nameplate_and_role() -> None:
    assert wire.mailbox(7, "A").public_key == wire.mailbox(7, "A").public_key
    assert len({wire.mailbox(n, r).public_key for n in (7, 8) for r in ("A", "B")}) == 4


# --- pairing ------------------------------------------------------------------------------------


def test_two_machines_pair_and_each_stores_the_other_as_a_device(laptop: Desk, desktop: Desk) -> None:
    a = Offering.start(laptop, saying_yes(), request())
    b_ui = saying_yes()

    joined = pairing.join(b_ui, live(desktop), request(), a.code)
    offered = a.result()

    assert [(c.name, c.key, c.kind) for c in book(laptop)] == [("desktop", key_of(desktop).public_key, "device")]
    assert [(c.name, c.key, c.kind) for c in book(desktop)] == [("laptop", key_of(laptop).public_key, "device")]
    assert offered.verification == joined.verification
    for ui in (a.ui, b_ui):
        assert any(joined.verification in line for line in ui.said)
        assert "every handoff you publish" in ui.asked[0]


def test_colleagues_pair_under_the_names_given(laptop: Desk, desktop: Desk) -> None:
    a = Offering.start(laptop, saying_yes(), request(kind="contact", name="bob"))

    pairing.join(saying_yes(), live(desktop), request(kind="contact", name="alice"), a.code)
    a.result()

    assert [(c.name, c.kind) for c in book(laptop)] == [("bob", "contact")]
    assert [(c.name, c.kind) for c in book(desktop)] == [("alice", "contact")]
    assert "only what you --share" in a.ui.asked[0]


def test_without_a_terminal_yes_pairs_and_its_absence_is_refused_before_anything_is_put(
    laptop: Desk, desktop: Desk
) -> None:
    with pytest.raises(NoInput, match="pass -y"):
        pairing.offer(ScriptedUI.answering(interactive=False), live(laptop), request())
    assert laptop.items.puts == 0

    a = Offering.start(laptop, ScriptedUI.answering(interactive=False), request(assume_yes=True))
    pairing.join(ScriptedUI.answering(interactive=False), live(desktop), request(assume_yes=True), a.code)
    a.result()

    assert len(book(laptop)) == len(book(desktop)) == 1


def test_the_code_can_come_from_a_prompt(laptop: Desk, desktop: Desk) -> None:
    a = Offering.start(laptop, saying_yes(), request())
    b_ui = ScriptedUI.answering(secrets=[a.code.upper().replace("-", " ")], answers=[True])

    pairing.join(b_ui, live(desktop), request(), None)
    a.result()

    assert b_ui.asked[0].startswith("Code shown on the other machine")
    assert len(book(desktop)) == 1


def test_a_wrong_code_fails_on_both_sides_and_stores_nothing(laptop: Desk, desktop: Desk) -> None:
    a = Offering.start(laptop, saying_yes(), request())

    with pytest.raises(CannotDecrypt, match="code was wrong"):
        pairing.join(saying_yes(), live(desktop), request(), wrong_words(a.code))
    with pytest.raises(CannotDecrypt, match="code was wrong"):
        a.result()

    assert book(laptop) == book(desktop) == []


def test_a_strangers_guess_makes_the_pairing_fail_and_closes_the_code(laptop: Desk, desktop: Desk) -> None:
    a = Offering.start(laptop, saying_yes(), request())
    code = Code.parse(a.code)
    # The stranger reads A's message as anyone can, and answers it with a guess at the words.
    item = laptop.items.items[mailbox_of(code, "A").raw]
    first = wire.from_dns(mailbox_of(code, "A"), item.value, "A")
    assert first.pake is not None
    guess = Pake("B", Code.parse(wrong_words(a.code)))
    sealed = Card(Identity.generate().public_key, "mallory", "device", False).seal(guess.finish(first.pake).box_b)
    forged = Message("pake", int(time.time()), pake=guess.message, answers=wire.answers(first.pake), box=sealed)
    put_in_mailbox(desktop, code, "B", wire.to_dns(mailbox_of(code, "B"), forged))

    with pytest.raises(CannotDecrypt, match="someone tried to guess it"):
        a.result()
    with pytest.raises(NotFound, match="already used, or given up"):
        pairing.join(saying_yes(), live(desktop), request(), a.code)
    assert book(laptop) == book(desktop) == []


def test_junk_and_stale_items_in_the_mailbox_are_skipped(laptop: Desk, desktop: Desk) -> None:
    a = Offering.start(laptop, saying_yes(), request())
    code = Code.parse(a.code)
    # B never sends a key message; a well-formed answer to some other A's message is stale.
    wrong_phase = Message("key", 1, answers=bytes(16), box=bytes(60))
    stale = Message("pake", 1, pake=Pake("B", code).message, answers=bytes(16), box=bytes(60))
    for value in (
        b"not dns",
        wire.to_dns(mailbox_of(code, "B"), wrong_phase),
        wire.to_dns(mailbox_of(code, "B"), stale),
    ):
        put_in_mailbox(desktop, code, "B", value)

    pairing.join(saying_yes(), live(desktop), request(), a.code)
    a.result()

    assert len(book(laptop)) == len(book(desktop)) == 1


def test_an_expired_code_is_refused(laptop: Desk, desktop: Desk) -> None:
    env = laptop.env()  # the desks' shared clock, which the test moves on
    offer = pairing.offer(saying_yes(), env, request())
    laptop.clock.advance(SHORT_TIMEOUT + 1)

    with pytest.raises(Expired, match="has expired"):
        pairing.join(saying_yes(), desktop.env(), request(), str(offer.code))
    with pytest.raises(Expired, match="did not answer in time"):
        pairing.complete(saying_yes(), env, offer, request())
    with pytest.raises(NotFound, match="already used, or given up"):
        pairing.join(saying_yes(), desktop.env(), request(), str(offer.code))


def test_a_code_is_single_use(laptop: Desk, desktop: Desk, desks) -> None:
    third = desks("tablet")
    third.make_key()
    a = Offering.start(laptop, saying_yes(), request())
    pairing.join(saying_yes(), live(desktop), request(), a.code)
    a.result()

    with pytest.raises(NotFound, match="already used"):
        pairing.join(saying_yes(), live(third), request(), a.code)
    assert book(third) == [] and len(book(laptop)) == 1


def test_a_nameplate_in_use_is_not_taken_again(laptop: Desk, desktop: Desk, monkeypatch) -> None:
    codes = iter([Code(7, "quiver", "onlooker"), Code(7, "zulu", "yucatan"), Code(8, "zulu", "yucatan")])
    monkeypatch.setattr(Code, "random", classmethod(lambda cls: next(codes)))
    pairing.offer(saying_yes(), live(laptop), request())

    second = pairing.offer(saying_yes(), live(desktop), request())

    assert second.code.nameplate == 8


@pytest.mark.parametrize("colleague_side", ["A", "B"])
def test_disagreeing_on_the_kind_is_refused_on_both_sides(laptop: Desk, desktop: Desk, colleague_side: str) -> None:
    colleague = request(kind="contact")
    a = Offering.start(laptop, saying_yes(), colleague if colleague_side == "A" else request())

    with pytest.raises(UsageError, match="--colleague on both or on neither"):
        pairing.join(saying_yes(), live(desktop), colleague if colleague_side == "B" else request(), a.code)
    with pytest.raises(UsageError, match="--colleague on both or on neither"):
        a.result()
    assert book(laptop) == book(desktop) == []


@pytest.mark.parametrize("who", ["A", "B"])
def test_a_declined_confirmation_stores_nothing_on_either_side(laptop: Desk, desktop: Desk, who: str) -> None:
    no = ScriptedUI.answering(answers=[False])
    a = Offering.start(laptop, no if who == "A" else saying_yes(), request())
    b_ui = no if who == "B" else saying_yes()

    failures: dict[str, CclinkError] = {}
    for side, run in (("B", lambda: pairing.join(b_ui, live(desktop), request(), a.code)), ("A", a.result)):
        with pytest.raises(CclinkError) as failed:
            run()
        failures[side] = failed.value

    other = "B" if who == "A" else "A"
    assert isinstance(failures[who], Declined)
    assert isinstance(failures[other], PairingFailed) and "declined" in str(failures[other])
    assert book(laptop) == book(desktop) == []


def test_two_machines_with_the_same_key_need_no_pairing(laptop: Desk, desktop: Desk) -> None:
    desktop.use_key(key_of(laptop))
    a = Offering.start(laptop, saying_yes(), request())

    with pytest.raises(UsageError, match="same key"):
        pairing.join(saying_yes(), live(desktop), request(), a.code)
    with pytest.raises(UsageError, match="same key"):
        a.result()


def test_pairing_again_replaces_the_entry_of_that_key(laptop: Desk, desktop: Desk) -> None:
    for name in ("old-name", "new-name"):
        a = Offering.start(laptop, saying_yes(), request(name=name))
        pairing.join(saying_yes(), live(desktop), request(), a.code)
        a.result()

    assert [c.name for c in book(laptop)] == ["new-name"]


def test_a_hostile_hostname_becomes_a_plain_name(laptop: Desk, desktop: Desk) -> None:
    a = Offering.start(laptop, saying_yes(), request())

    pairing.join(saying_yes(), replace(live(desktop), hostname="\x1b]0;pwned\x07evil.example.com"), request(), a.code)
    a.result()

    assert [c.name for c in book(laptop)] == ["0-pwned-evil"]


# --- devices -------------------------------------------------------------------------------------


def test_remove_asks_and_forgets_and_rename_renames(laptop: Desk) -> None:
    contacts = live(laptop).contacts
    peer = contacts.add(Contact("desktop", Identity.generate().public_key, "device", 0))

    assert pairing.rename(contacts, "desktop", "tower").name == "tower"
    with pytest.raises(Declined):
        pairing.remove(ScriptedUI.answering(answers=[False]), contacts, "tower", assume_yes=False)
    with pytest.raises(NoInput):
        pairing.remove(ScriptedUI.answering(interactive=False), contacts, "tower", assume_yes=False)
    removed = pairing.remove(ScriptedUI.answering(answers=[True]), contacts, "tower", assume_yes=False)

    assert removed.key == peer.key and contacts.all() == []
