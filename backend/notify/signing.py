"""The webhook signature: ``Lumeau-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``.

The MAC covers ``"<t>." + body``: a receiver that checks it knows the body
came from whoever holds the channel's secret and is unchanged, and by
refusing old ``t`` values it refuses a captured request replayed later
(the timestamp cannot be changed without breaking the MAC).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Final

SIGNATURE_HEADER: Final = "Lumeau-Signature"
SECRET_PREFIX: Final = "whsec_"
SECRET_BYTES: Final = 32  # 256 bits from the OS's CSPRNG
DEFAULT_TOLERANCE_S: Final = 300


def new_secret() -> str:
    """A fresh signing secret (``whsec_`` + 43 base64url characters)."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def mac(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``"<timestamp>." + body`` keyed by the secret's UTF-8 bytes."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, timestamp: int, body: bytes) -> str:
    return f"t={timestamp},v1={mac(secret, timestamp, body)}"


def parse_header(value: str) -> tuple[int, list[str]] | None:
    """``(t, [v1 signatures])`` of a header, or None if it is malformed.

    Several ``v1`` entries are accepted so a sender may sign with an old and a
    new secret while a rotation propagates.
    """
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, sep, item = part.strip().partition("=")
        if not sep:
            return None
        if key == "t":
            if not item.isdigit() or len(item) > 12:
                return None
            timestamp = int(item)
        elif key == "v1":
            signatures.append(item)
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify(
    secret: str, header: str, body: bytes, now: float, tolerance_s: int = DEFAULT_TOLERANCE_S
) -> bool:
    """True if ``header`` signs ``body`` with ``secret`` and is at most ``tolerance_s`` old.

    What a receiver runs (the recipe in docs/notifications.md does the same).
    """
    parsed = parse_header(header)
    if parsed is None:
        return False
    timestamp, signatures = parsed
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signatures)
