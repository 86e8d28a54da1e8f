"""Text for people: durations, sizes, progress lines, and escaping what must not steer a terminal.

Pure functions, used by the flows to word their results and by the CLI to show them.
"""

from __future__ import annotations

import re

# What a terminal may act on instead of showing: C0 controls (ESC starts a
# sequence that can set the window title or erase lines), DEL, C1 controls
# (\x9b is CSI on some terminals), bidi overrides and isolates (text shown in
# another order than it is stored), line and paragraph separators, and lone
# surrogates (they cannot even be encoded, so printing one would fail).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
_SHORT_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(character: str) -> str:
    code = ord(character)
    return _SHORT_ESCAPES.get(character) or (f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}")


def printable(text: str) -> str:
    """text safe to show on one line: every character a terminal could act on becomes a visible escape such as \\x1b.

    Backslashes stay as they are, so paths read naturally; a literal `\\x1b`
    and an escaped ESC then look alike, which is harmless.
    """
    return _UNSAFE.sub(lambda match: _escape(match.group()), text)


_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def format_duration(seconds: float) -> str:
    """The largest unit and the next one when non-zero: "1d 2h", "2h", "3m 20s", "45s"."""
    remaining = max(0, round(seconds))
    for index, (name, size) in enumerate(_UNITS):
        if remaining >= size or size == 1:
            text = f"{remaining // size}{name}"
            if size > 1:
                next_name, next_size = _UNITS[index + 1]
                rest = remaining % size // next_size
                if rest:
                    text += f" {rest}{next_name}"
            return text
    raise AssertionError("unreachable: the last unit is one second")


def format_bytes(count: float) -> str:
    """Bytes in the largest binary unit that keeps the number at or above 1: "512 B", "3.4 MiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def progress_bar(fraction: float, width: int = 20) -> str:
    filled = round(max(0.0, min(1.0, fraction)) * width)
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def seeding_status(peers: int, sent: int, rate: float) -> str:
    """`Seeding: 1 peer, 3.4 MiB sent, 1.2 MiB/s` (the rate only while sending)."""
    text = f"Seeding: {peers} peer{'' if peers == 1 else 's'}, {format_bytes(sent)} sent"
    return text + (f", {format_bytes(rate)}/s" if rate > 0 else "")


def transfer_status(label: str, done: int, total: int, rate: float) -> str:
    """`label [####----] 12.0 MiB of 20.0 MiB, 4.1 MiB/s, 2s left`."""
    text = f"{label} {progress_bar(done / total if total else 0)} {format_bytes(done)} of {format_bytes(total)}"
    if rate > 0:
        text += f", {format_bytes(rate)}/s, {format_duration((total - done) / rate)} left"
    return text
