"""The agent's protocol (wire/agent_protocol.py): every request and answer round-trips, and anything else,
garbage, huge lines, repeated keys, wrong types, unknown fields, is refused with a ProtocolError alone.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cclink.wire import agent_protocol, z32
from cclink.wire.agent_protocol import (
    MAX_ANSWER_LINE,
    MAX_CARRY_LINE,
    MAX_DEVICE_ITEMS,
    MAX_ERROR,
    MAX_KEPT,
    MAX_NODES,
    MAX_REQUEST_LINE,
    MAX_TRANSFERS,
    Answer,
    CarriedItem,
    Carry,
    Entry,
    GetKey,
    Item,
    Keep,
    Lock,
    ProtocolError,
    Status,
    Stop,
    Transfer,
    TransferEntry,
    Unlock,
)

KEY = bytes(range(32))
ITEM = Item(KEY, 2**63 - 1, bytes(range(64)), bytes(range(256)) * 3 + bytes(232), 2**40)
ENTRY = Entry(KEY, 7, "revocation", 1_800_000_000, None, None, 1_800_000_100)
SEED = bytes(range(100, 132))
DIGEST = bytes(range(200, 232))
UNLOCK = Unlock(bytearray(SEED), DIGEST, 900)


@pytest.mark.parametrize(
    "request_",
    [Keep(ITEM), Keep(Item(KEY, 0, bytes(64), b"", 0)), Status(), Stop(), UNLOCK, GetKey(DIGEST), Lock()],
    ids=["keep", "keep-empty", "status", "stop", "unlock", "key", "lock"],
)
def test_requests_round_trip_on_one_bounded_line(request_) -> None:
    line = agent_protocol.encode_request(request_)
    assert line.endswith(b"\n") and line.count(b"\n") == 1 and len(line) <= MAX_REQUEST_LINE
    assert agent_protocol.decode_request(line) == request_


@pytest.mark.parametrize(
    "answer",
    [
        Answer(True),
        Answer(False, error="no"),
        Answer(True, pid=42, kept=()),
        Answer(True, pid=42, kept=(ENTRY, Entry(KEY, 8, "handoff", 5, 20, 3, 4))),
        Answer(True, pid=42, kept=(), unlocked_until=1_800_000_000),
        Answer(True, seed=SEED, unlocked_until=2**53),
        Answer(True, forgot=True),
        Answer(True, forgot=False),
    ],
)
def test_answers_round_trip(answer: Answer) -> None:
    assert agent_protocol.decode_answer(agent_protocol.encode_answer(answer)) == answer


def test_the_largest_status_answer_fits_its_line() -> None:
    largest = Entry(KEY, 2**63 - 1, "revocation", 2**53, 1000, 2**53, 2**53)
    line = agent_protocol.encode_answer(Answer(True, pid=2**31, kept=(largest,) * MAX_KEPT))
    assert len(line) <= MAX_ANSWER_LINE
    assert len(agent_protocol.decode_answer(line).kept or ()) == MAX_KEPT


def keep_fields(**changes: object) -> dict[str, object]:
    return fields_of(Keep(ITEM), **changes)


def unlock_fields(**changes: object) -> dict[str, object]:
    return fields_of(UNLOCK, **changes)


def fields_of(request: agent_protocol.Request, **changes: object) -> dict[str, object]:
    fields = json.loads(agent_protocol.encode_request(request))
    fields.update(changes)
    return {key: value for key, value in fields.items() if value is not DROP}


DROP = object()


@pytest.mark.parametrize(
    "fields",
    [
        keep_fields(v=2),
        keep_fields(v=True),
        keep_fields(v=DROP),
        keep_fields(op="forget"),
        keep_fields(extra=1),
        keep_fields(seq=-1),
        keep_fields(seq=2**63),
        keep_fields(seq=True),
        keep_fields(seq=1.0),
        keep_fields(seq="1"),
        keep_fields(expires_at=2**53 + 1),
        keep_fields(signature="00" * 63),
        keep_fields(signature="AB" * 64),
        keep_fields(signature="0g" * 64),
        keep_fields(value="0"),
        keep_fields(value="00" * 1001),
        keep_fields(publisher="pk:" + z32.encode(KEY)),
        keep_fields(publisher=z32.encode(KEY)[:-1] + "!"),
        keep_fields(publisher=z32.encode(bytes(31))),
        keep_fields(publisher=None),
        keep_fields(value=DROP),
        {"v": 1, "op": "status", "extra": True},
        {"v": 1, "op": "stop", "item": {}},
        unlock_fields(seed="00" * 31),
        unlock_fields(seed="00" * 33),
        unlock_fields(seed="AB" * 32),
        unlock_fields(seed=DROP),
        unlock_fields(seed=list(SEED)),
        unlock_fields(key_file_sha256="00" * 31),
        unlock_fields(key_file_sha256=DROP),
        unlock_fields(seconds=0),
        unlock_fields(seconds=-1),
        unlock_fields(seconds=True),
        unlock_fields(seconds=86401),
        unlock_fields(seconds=DROP),
        unlock_fields(extra=1),
        unlock_fields(v=2),
        fields_of(GetKey(DIGEST), key_file_sha256="zz" * 32),
        fields_of(GetKey(DIGEST), key_file_sha256=DROP),
        fields_of(GetKey(DIGEST), seed=SEED.hex()),
        {"v": 1, "op": "lock", "seed": SEED.hex()},
    ],
)
def test_requests_with_a_wrong_field_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        agent_protocol.decode_request(json.dumps(fields).encode())


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b"\n",
        b"garbage\n",
        b"\xff\xfe\n",
        b"[1, 2]\n",
        b'"status"\n',
        b'{"v":1,"op":"status","op":"stop"}\n',
        b'{"v":NaN,"op":"status"}\n',
        b'{"v":1,"op":"\\ud800"}\n',
        b'{"v":1,"op":"status"}\n{"v":1,"op":"stop"}\n',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"v":1,"op":"status","pad":"' + b"x" * MAX_REQUEST_LINE + b'"}\n',
    ],
    ids=[
        "empty",
        "newline",
        "words",
        "binary",
        "list",
        "string",
        "repeated",
        "nan",
        "surrogate",
        "two",
        "deep",
        "huge",
    ],
)
def test_garbage_requests_are_refused(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        agent_protocol.decode_request(line)


@pytest.mark.parametrize(
    "document",
    [
        {"error": "no"},
        {"ok": 1},
        {"ok": True, "error": "x" * (MAX_ERROR + 1)},
        {"ok": True, "pid": 0},
        {"ok": True, "pid": True},
        {"ok": True, "kept": {}},
        {"ok": True, "kept": [{}]},
        {
            "ok": True,
            "kept": [{**json.loads(agent_protocol.encode_answer(Answer(True, kept=(ENTRY,))))["kept"][0], "kind": "x"}],
        },
        {"ok": True, "kept": [None] * (MAX_KEPT + 1)},
        {"ok": True, "more": 1},
        {"ok": True, "seed": "00" * 31},
        {"ok": True, "seed": SEED.hex().upper()},
        {"ok": True, "unlocked_until": -1},
        {"ok": True, "unlocked_until": 1.5},
        {"ok": True, "forgot": 1},
        {"ok": True, "forgot": "yes"},
    ],
)
def test_answers_that_are_not_the_protocols_are_refused(document: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        agent_protocol.decode_answer(json.dumps(document).encode())


def test_an_answer_over_its_bound_is_refused_before_parsing() -> None:
    with pytest.raises(ProtocolError):
        agent_protocol.decode_answer(b'{"ok":true,"error":"' + b"x" * MAX_ANSWER_LINE + b'"}')


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5000))
def test_arbitrary_bytes_are_a_request_or_a_protocol_error(data: bytes) -> None:
    try:
        agent_protocol.decode_request(data)
    except ProtocolError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000))
def test_arbitrary_bytes_are_a_kept_list_or_nothing(data: bytes) -> None:
    assert isinstance(agent_protocol.decode_kept(data), list)


@pytest.mark.parametrize("request_", [Keep(ITEM), UNLOCK], ids=["keep", "unlock"])
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_mutated_requests_are_a_request_or_a_protocol_error(
    request_: agent_protocol.Request, data: st.DataObject
) -> None:
    line = bytearray(agent_protocol.encode_request(request_))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(line) - 1))
        line[index] = data.draw(st.integers(0, 255))
    try:
        agent_protocol.decode_request(bytes(line))
    except ProtocolError:
        pass


def test_the_seed_is_in_no_representation_of_a_request_or_an_answer() -> None:
    for shown in (repr(UNLOCK), str(UNLOCK), repr(Answer(True, seed=SEED, unlocked_until=1))):
        assert SEED.hex() not in shown and str(SEED) not in shown and "bytearray" not in shown


def test_an_unlock_request_hands_over_a_seed_that_can_be_overwritten() -> None:
    request = agent_protocol.decode_request(agent_protocol.encode_request(UNLOCK))
    assert isinstance(request, Unlock) and isinstance(request.seed, bytearray) and request.seed == SEED


# --- carry: a carried session handed to the agent ----------------------------------------------------

REVOCATION = Item(KEY, 2**63 - 1, bytes(range(64)), bytes(range(40)), 2**40)
TRANSFER = Transfer(
    "0b7c1f55-6a4e-4d2b-9a51-3f7d2e8c9a10", ITEM, REVOCATION, bytes(20), 2**34, bytes(32), DIGEST, 2**40, 65535
)
CARRY = Carry("0f" * 16, TRANSFER)
TRANSFER_ENTRY = TransferEntry("0f" * 16, KEY, "s", 2**34, MAX_NODES, 2**40, "timed out", True, 2**53)


def test_the_largest_carry_request_fits_its_line_and_round_trips() -> None:
    for request in (CARRY, Carry("ab" * 16, Transfer("s", ITEM, None, bytes(20), 1, bytes(32), bytes(32), 0))):
        line = agent_protocol.encode_request(request)
        assert len(line) <= MAX_REQUEST_LINE and line.count(b"\n") == 1
        assert agent_protocol.decode_request(line) == request


def test_the_largest_status_answer_with_transfers_fits_its_line() -> None:
    largest = Entry(KEY, 2**63 - 1, "revocation", 2**53, 1000, 2**53, 2**53)
    answer = Answer(True, pid=2**31, kept=(largest,) * MAX_KEPT, transfers=(TRANSFER_ENTRY,) * MAX_TRANSFERS)
    line = agent_protocol.encode_answer(answer)
    assert len(line) <= MAX_ANSWER_LINE and agent_protocol.decode_answer(line) == answer


def carry_fields(**changes: object) -> dict[str, object]:
    return fields_of(CARRY, **changes)


def transfer_fields(**changes: object) -> dict[str, object]:
    transfer = json.loads(agent_protocol.encode_request(CARRY))["transfer"]
    transfer.update(changes)
    return carry_fields(transfer={key: value for key, value in transfer.items() if value is not DROP})


@pytest.mark.parametrize(
    "fields",
    [
        carry_fields(id="../../../etc/passwd"),
        carry_fields(id="/tmp/" + "0" * 27),
        carry_fields(id="0F" * 16),
        carry_fields(id="0" * 31),
        carry_fields(id=DROP),
        carry_fields(extra=1),
        carry_fields(transfer=[]),
        transfer_fields(path="/etc/passwd"),
        transfer_fields(session_id="../x"),
        transfer_fields(session_id=""),
        transfer_fields(size=0),
        transfer_fields(size=2**34 + 1),
        transfer_fields(info_hash="00" * 32),
        transfer_fields(archive_sha256=DROP),
        transfer_fields(handoff=None),
        transfer_fields(revocation={"seq": 1}),
        transfer_fields(deadline=-1),
        transfer_fields(port=0),
        transfer_fields(port=65536),
        transfer_fields(port=None),
        transfer_fields(port="6881"),
        transfer_fields(port=True),
    ],
)
def test_carry_requests_with_a_wrong_field_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        agent_protocol.decode_request(json.dumps(fields).encode())


def test_a_transfer_file_round_trips_and_anything_else_is_refused() -> None:
    data = agent_protocol.encode_transfer_file(TRANSFER)
    assert agent_protocol.decode_transfer_file(data) == TRANSFER
    for damaged in (b"", data[:-20], data.replace(b'"version":1', b'"version":2'), b"[" * 10_000):
        with pytest.raises(ProtocolError):
            agent_protocol.decode_transfer_file(damaged)


def test_a_transfer_without_a_port_is_one_from_before_ports_were_sent() -> None:
    """The port the record's hints name is optional: a command or a kept transfer file from before it still reads."""
    older = agent_protocol.encode_transfer_file(TRANSFER).replace(b',"port":65535', b"")
    assert agent_protocol.decode_transfer_file(older) == replace(TRANSFER, port=None)
    request = json.dumps(transfer_fields(port=DROP)).encode()
    assert agent_protocol.decode_request(request) == Carry(CARRY.transfer_id, replace(TRANSFER, port=None))


def test_the_archive_sha256_is_in_no_representation_of_a_transfer() -> None:
    assert DIGEST.hex() not in repr(CARRY) and str(DIGEST) not in repr(CARRY)


# --- device items carried with a transfer ------------------------------------------------------------

DEVICE_KEY = bytes(range(1, 33))
CARRIED = CarriedItem(replace(ITEM, publisher=DEVICE_KEY), replace(REVOCATION, publisher=DEVICE_KEY))
WITH_ITEMS = replace(TRANSFER, device_items=(CARRIED,) * MAX_DEVICE_ITEMS)


def test_a_transfer_with_device_items_and_their_revocations_round_trips_on_its_line_and_in_its_file() -> None:
    without_revocations = replace(TRANSFER, revocation=None, device_items=(CarriedItem(CARRIED.handoff, None),))
    for transfer in (WITH_ITEMS, without_revocations):
        line = agent_protocol.encode_request(Carry("0f" * 16, transfer))
        assert line.count(b"\n") == 1 and len(line) <= MAX_CARRY_LINE
        assert agent_protocol.decode_request(line) == Carry("0f" * 16, transfer)
        assert agent_protocol.decode_transfer_file(agent_protocol.encode_transfer_file(transfer)) == transfer


def test_a_transfer_without_device_items_is_one_from_before_they_were_sent() -> None:
    """Left out when there are none: a transfer file an older agent kept reads, and an older agent reads ours."""
    line = agent_protocol.encode_request(CARRY)
    assert b"device_items" not in line and agent_protocol.decode_request(line) == CARRY
    assert agent_protocol.decode_transfer_file(agent_protocol.encode_transfer_file(TRANSFER)).device_items == ()


CARRIED_FIELDS = json.loads(agent_protocol.encode_request(Carry("0f" * 16, WITH_ITEMS)))["transfer"]["device_items"][0]


@pytest.mark.parametrize(
    "entries",
    [
        [CARRIED_FIELDS] * (MAX_DEVICE_ITEMS + 1),
        [],
        None,
        {"handoff": CARRIED_FIELDS["handoff"]},
        [[CARRIED_FIELDS["handoff"]]],
        [CARRIED_FIELDS | {"extra": 1}],
        [{"handoff": CARRIED_FIELDS["handoff"]}],
        [CARRIED_FIELDS | {"handoff": None}],
        [CARRIED_FIELDS | {"revocation": {"seq": 1}}],
        [CARRIED_FIELDS | {"handoff": CARRIED_FIELDS["handoff"] | {"signature": "00"}}],
    ],
    ids=[
        "too-many",
        "empty",
        "null",
        "object",
        "list",
        "extra",
        "no-revocation",
        "no-handoff",
        "bad-revocation",
        "bad-item",
    ],
)
def test_carry_requests_with_wrong_device_items_are_refused(entries: object) -> None:
    with pytest.raises(ProtocolError):
        agent_protocol.decode_request(json.dumps(transfer_fields(device_items=entries)).encode())


def test_only_a_carry_request_may_be_longer_than_a_request_line() -> None:
    carry = agent_protocol.encode_request(Carry("0f" * 16, WITH_ITEMS))
    assert len(carry) > MAX_REQUEST_LINE
    assert agent_protocol.decode_request(carry).transfer.device_items == WITH_ITEMS.device_items  # type: ignore[union-attr]
    for op in ("status", "keep"):
        padded = b'{"v":1,"op":"' + op.encode() + b'","pad":"' + b"x" * MAX_REQUEST_LINE + b'"}\n'
        with pytest.raises(ProtocolError, match=f"over {MAX_REQUEST_LINE} bytes"):
            agent_protocol.decode_request(padded)
    with pytest.raises(ProtocolError, match=f"over {MAX_CARRY_LINE} bytes"):
        agent_protocol.decode_request(carry[:-2] + b" " * MAX_CARRY_LINE + b"}\n")
