"""z-base-32 (the human-oriented base32 of pkarr keys)."""

from __future__ import annotations

from cclink.errors import WireError

ALPHABET = "ybndrfg8ejkmcpqxot1uwisza345h769"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


def encode(data: bytes) -> str:
    """Encode bytes, most significant bit first, zero-padding the last symbol."""
    bits = len(data) * 8
    number = int.from_bytes(data, "big") << (-bits % 5)
    count = -(-bits // 5)
    return "".join(ALPHABET[(number >> (5 * (count - 1 - i))) & 31] for i in range(count))


def decode(text: str) -> bytes:
    """Decode z-base-32 text whose padding bits are zero; raise WireError otherwise."""
    try:
        values = [_INDEX[c] for c in text]
    except KeyError:
        raise WireError("text is not z-base-32") from None
    bits = len(values) * 5
    size, padding = divmod(bits, 8)
    number = 0
    for value in values:
        number = (number << 5) | value
    if padding >= 5 or number & ((1 << padding) - 1):
        raise WireError("z-base-32 text has a malformed ending")
    return (number >> padding).to_bytes(size, "big")
