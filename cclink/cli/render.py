"""How results look: the text lines and JSON documents the commands print.

No prompts and no exit codes here: app.py calls these with a flow's result.
"""

from __future__ import annotations

import datetime
import os
from typing import TYPE_CHECKING, Any, NamedTuple

from cclink import text
from cclink.cli import console

if TYPE_CHECKING:
    from cclink.flows.manage import ListOutcome
    from cclink.flows.pickup import PickupOutcome
    from cclink.flows.publish import PublishOutcome
    from cclink.net.dht_client import Stored
    from cclink.wire.agent_protocol import Answer, Entry, TransferEntry
    from cclink.wire.payload import CarryInfo
    from cclink.wire.record import Record

Json = dict[str, Any]


def print_json(data: Json) -> None:
    console.out(console.safe_json(data))


def utc(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def home_relative(path: str) -> str:
    home = os.path.expanduser("~")
    if path == home or path.startswith(home + os.sep):
        return "~" + path[len(home) :]
    return path


def audience(record: Record) -> str:
    if record.pin_salt is not None:
        return "anyone with the PIN"
    recipient = record.recipient_key()
    return recipient.display if recipient is not None else "your own key"


def mode_line(outcome: PublishOutcome) -> str:
    """` For you and laptop, desk, burn after read.`: who can open it and how it ends, after the expiry."""
    parts = []
    if outcome.mode == "pin":
        parts.append("PIN-protected")
    elif outcome.mode == "share" and (recipient := outcome.record.recipient_key()) is not None:
        parts.append(f"Shared with {_named(outcome.shared_with, recipient.display)}")
    elif outcome.devices:
        # Names from the contacts file are plain (contacts.NAME_PATTERN): nothing to escape.
        parts.append(f"For you and {', '.join(outcome.devices)}{_own_copies(outcome)}")
    if outcome.record.burn:
        parts.append("burn after read")
    if not parts:
        return ""
    text = ", ".join(parts)
    return f" {text[:1].upper()}{text[1:]}."


def _own_copies(outcome: PublishOutcome) -> str:
    """` (a copy of its own for gamma on 20 DHT nodes, ...)`: the devices the record had no room for."""
    stored = [(item.device, item.stored) for item in outcome.device_items if item.stored is not None]
    if not stored:
        return ""
    return " (a copy of its own " + ", ".join(f"for {name} on {stored_on(put)}" for name, put in stored) + ")"


def copies(count: int) -> str:
    """`1 copy`, `3 copies`."""
    return f"{count} cop{'y' if count == 1 else 'ies'}"


def _named(name: str | None, key: str) -> str:
    return f"{name} ({key})" if name else key


def stored_on(stored: Stored) -> str:
    """`8 DHT nodes`, `20 DHT nodes and 2 relays`, `1 relay`."""
    parts = [f"{stored.nodes} DHT node{'s' if stored.nodes != 1 else ''}"] if stored.nodes or not stored.relays else []
    if stored.relays:
        parts.append(f"{stored.relays} relay{'s' if stored.relays != 1 else ''}")
    return " and ".join(parts)


def record_json(record: Record) -> Json:
    recipient = record.recipient_key()
    return {
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "ttl": record.ttl,
        "burn": record.burn,
        "pin": record.pin_salt is not None,
        "recipient": recipient.display if recipient else None,
    }


def publish_json(outcome: PublishOutcome) -> Json:
    return {
        "session_id": outcome.session_id,
        "project": outcome.project,
        "publisher": outcome.publisher.display,
        "mode": outcome.mode,
        **record_json(outcome.record),
        "seq": outcome.published.seq,
        "nodes": outcome.published.nodes,
        "relays": outcome.published.relays,
        "pickup_command": outcome.pickup_command,
        "qr_command": outcome.qr_command,
        "devices": list(outcome.devices),
        "device_items": [
            {"device": item.device, "nodes": item.stored.nodes if item.stored else None}
            for item in outcome.device_items
        ],
        "shared_with": outcome.shared_with,
        "carry": carry_json(outcome.carry) if outcome.carry else None,
    }


def carry_json(info: CarryInfo) -> Json:
    return {
        "size": info.size,
        "sha256": info.sha256.hex(),
        "info_hash": info.info_hash.hex(),
        "hints": list(info.hints),
    }


def pickup_json(outcome: PickupOutcome) -> Json:
    return {
        "session_id": outcome.payload.session_id,
        "project": outcome.payload.project,
        "hostname": outcome.payload.hostname,
        "publisher": outcome.publisher.display,
        "from": outcome.sender,
        **record_json(outcome.record),
        "revoked": outcome.revoked,
        "session_on_this_machine": outcome.session is not None,
        "resume_directory": str(outcome.project_dir) if outcome.project_dir else None,
        "carry": carry_json(outcome.payload.carry) if outcome.payload.carry else None,
    }


def expiry(record: Record, now: float) -> str:
    """`in 9m 54s (2026-12-03 09:40 UTC), 10m after publishing`, or `3m ago (...)`."""
    when = f"({utc(record.expires_at)}), {text.format_duration(record.ttl)} after publishing"
    if record.is_expired(now):
        return f"{text.format_duration(now - record.expires_at)} ago {when}"
    return f"in {text.format_duration(record.expires_at - now)} {when}"


def list_json(outcome: ListOutcome, now: float) -> Json:
    if outcome.record is None:
        return {
            "publisher": outcome.publisher.display,
            "active": False,
            "revoked": outcome.revoked,
            "device_items": outcome.device_items,
        }
    data = {"publisher": outcome.publisher.display, "active": True, **record_json(outcome.record), "seq": outcome.seq}
    data["device_items"] = outcome.device_items
    data["expired"] = outcome.record.is_expired(now)
    if outcome.payload is not None:
        data["session_id"] = outcome.payload.session_id
        data["project"] = outcome.payload.project
    return data


# --- the agent --------------------------------------------------------------------------


class Waiting(NamedTuple):
    """What the next agent takes up when none is running: kept items and carried sessions, from their files."""

    items: int
    transfers: int


def status_lines(answer: Answer | None, waiting: Waiting, now: float) -> list[str]:
    """What `cclink status` says: the agent's kept items and carried sessions, or that none is running."""
    if answer is None:
        lines = ["No agent is running."]
        parts = [_items(waiting.items)] if waiting.items else []
        parts += [_sessions(waiting.transfers)] if waiting.transfers else []
        if parts:
            lines.append(
                f"  {' and '.join(parts)} will be taken up again by the next cclink command "
                "that uses the network, or by `cclink agent`."
            )
        return lines
    kept = answer.kept or ()
    lines = [f"The agent (pid {answer.pid}) keeps {_items(len(kept))} on the DHT{':' if kept else '.'}"]
    for entry in kept:
        lines.append(f"  {_z32_display(entry)}: {entry.kind}, seq {entry.seq}")
        lines.append(f"    Expires:  in {text.format_duration(entry.expires_at - now)} ({utc(entry.expires_at)})")
        lines.append(f"    Last put: {_last_put(entry, now)}")
        lines.append(f"    Next put: in {text.format_duration(max(0.0, entry.next_put - now))}")
    lines.extend(_transfer_lines(answer.transfers or (), now))
    lines.append(_key_line(answer.unlocked_until, now))
    return lines


def _sessions(count: int) -> str:
    return f"{count} carried session{'' if count == 1 else 's'}"


_STATES = {
    "offering": "offering",
    "fetched": "fetched",
    "revoked": "stopped: the handoff was revoked or replaced elsewhere",
    "timed out": "stopped: nobody fetched it in time",
    "failed": "stopped: its file was not what the handoff promises",
}


def _transfer_lines(transfers: tuple[TransferEntry, ...], now: float) -> list[str]:
    """`cclink status`'s carried sessions: session, size, peers, bytes sent, state."""
    if not transfers:
        return []
    lines = [f"It offers {_sessions(len(transfers))}:"]
    for entry in transfers:
        state = _STATES[entry.state] + ("; the burn-after-read handoff was revoked" if entry.revoked else "")
        lines.append(f"  Session {entry.session_id} ({text.format_bytes(entry.size)} encrypted): {state}")
        sent = f"{entry.peers} peer{'' if entry.peers == 1 else 's'}, {text.format_bytes(entry.uploaded)} sent"
        until = f"; offered for another {text.format_duration(max(0.0, entry.deadline - now))}"
        lines.append(f"    {sent}{until if entry.state == 'offering' else ''}")
    return lines


def transfer_json(entry: TransferEntry) -> Json:
    from cclink.wire import z32

    return {
        "session_id": entry.session_id,
        "publisher": "pk:" + z32.encode(entry.publisher),
        "size": entry.size,
        "peers": entry.peers,
        "uploaded": entry.uploaded,
        "state": entry.state,
        "revoked": entry.revoked,
        "deadline": entry.deadline,
    }


def _key_line(unlocked_until: int | None, now: float) -> str:
    if unlocked_until is None:
        return "Key: locked (`cclink unlock` has the agent hold it for a while)."
    left = text.format_duration(max(0.0, unlocked_until - now))
    return f"Key: unlocked for another {left} (until {utc(unlocked_until)}); `cclink lock` forgets it."


def status_json(answer: Answer | None, waiting: Waiting) -> Json:
    """`cclink status --json`: the kept items and carried sessions, or what the next agent takes up."""
    if answer is None:
        return {
            "running": False,
            "pid": None,
            "kept": [],
            "transfers": [],
            "waiting": waiting.items,
            "waiting_transfers": waiting.transfers,
            "unlocked_until": None,
        }
    kept = [
        {
            "publisher": _z32_display(entry),
            "kind": entry.kind,
            "seq": entry.seq,
            "expires_at": entry.expires_at,
            "nodes": entry.nodes,
            "last_put": entry.last_put,
            "next_put": entry.next_put,
        }
        for entry in answer.kept or ()
    ]
    return {
        "running": True,
        "pid": answer.pid,
        "kept": kept,
        "transfers": [transfer_json(entry) for entry in answer.transfers or ()],
        "waiting": 0,
        "waiting_transfers": 0,
        "unlocked_until": answer.unlocked_until,
    }


def _items(count: int) -> str:
    return f"{count} item{'' if count == 1 else 's'}"


def _z32_display(entry: Entry) -> str:
    from cclink.wire import z32

    return "pk:" + z32.encode(entry.publisher)


def _last_put(entry: Entry, now: float) -> str:
    if entry.last_put is None:
        return "not yet by the agent (the command that handed it over put it)"
    nodes = "no node" if not entry.nodes else f"{entry.nodes} node{'s' if entry.nodes != 1 else ''}"
    return f"{text.format_duration(max(0.0, now - entry.last_put))} ago, stored on {nodes}"
