"""How results look: the text lines and JSON documents the commands print.

No prompts and no exit codes here: app.py calls these with a flow's result.
"""

from __future__ import annotations

import datetime
import os

from cclink.cli import console


def print_json(data: dict) -> None:

    console.out(console.safe_json(data))


def utc(timestamp: float) -> str:

    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def home_relative(path: str) -> str:
    home = os.path.expanduser("~")
    if path == home or path.startswith(home + os.sep):
        return "~" + path[len(home) :]
    return path


def audience(record) -> str:
    if record.pin_salt is not None:
        return "anyone with the PIN"
    if record.recipient is not None:
        return record.recipient_key().display
    return "your own key"


def mode_line(outcome) -> str:
    parts = []
    if outcome.mode == "pin":
        parts.append("PIN-protected")
    elif outcome.mode == "share":
        parts.append(f"Shared with {outcome.record.recipient_key().display}")
    if outcome.record.burn:
        parts.append("burn after read")
    if not parts:
        return ""
    text = ", ".join(parts)
    return f" {text[:1].upper()}{text[1:]}."


def record_json(record) -> dict:
    recipient = record.recipient_key()
    return {
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "ttl": record.ttl,
        "burn": record.burn,
        "pin": record.pin_salt is not None,
        "recipient": recipient.display if recipient else None,
    }


def publish_json(outcome) -> dict:
    return {
        "session_id": outcome.session_id,
        "project": outcome.project,
        "publisher": outcome.publisher.display,
        "mode": outcome.mode,
        **record_json(outcome.record),
        "seq": outcome.published.seq,
        "nodes": outcome.published.nodes,
        "pickup_command": outcome.pickup_command,
        "carry": carry_json(outcome.outgoing.info()) if outcome.outgoing else None,
    }


def carry_json(info) -> dict:
    return {
        "size": info.size,
        "sha256": info.sha256.hex(),
        "info_hash": info.info_hash.hex(),
        "hints": list(info.hints),
    }


def pickup_json(outcome) -> dict:
    return {
        "session_id": outcome.payload.session_id,
        "project": outcome.payload.project,
        "hostname": outcome.payload.hostname,
        "publisher": outcome.publisher.display,
        **record_json(outcome.record),
        "revoked": outcome.revoked,
        "session_on_this_machine": outcome.session is not None,
        "resume_directory": str(outcome.project_dir) if outcome.project_dir else None,
        "carry": carry_json(outcome.payload.carry) if outcome.payload.carry else None,
    }


def list_json(outcome, now: float) -> dict:
    data = {"publisher": outcome.publisher.display, **record_json(outcome.record), "seq": outcome.seq}
    data["expired"] = outcome.record.is_expired(now)
    if outcome.payload is not None:
        data["session_id"] = outcome.payload.session_id
        data["project"] = outcome.payload.project
    return data
