"""API bearer tokens: made from 32 random bytes, stored only as their SHA-256.

A token is ``lmu_`` followed by 43 URL-safe base64 characters (256 bits from
the OS's CSPRNG). The prefix lets secret scanners and people recognise one.

Why a fast hash is right here: password hashes (bcrypt, scrypt, Argon2) are
salted and slow because passwords are guessable, so a stolen hash table must
make every guess expensive. A 256-bit random token cannot be guessed: even a
trillion SHA-256 per second would need ~10^57 years to find a preimage. So
SHA-256 loses nothing, and being unsalted and deterministic it can be looked
up through a unique index in one step (a salted hash would force a scan).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from typing import Final

PREFIX: Final = "lmu_"
TOKEN_BYTES: Final = 32
# 32 bytes in URL-safe base64 without padding are 43 characters.
_SHAPE: Final = re.compile(r"^lmu_[A-Za-z0-9_-]{43}$")


def new_token() -> str:
    """A fresh token; show it once, store only ``token_hash`` of it."""
    return PREFIX + secrets.token_urlsafe(TOKEN_BYTES)


def token_hash(token: str) -> bytes:
    """The 32-byte SHA-256 stored in ``api_token.token_sha256``."""
    return hashlib.sha256(token.encode("ascii")).digest()


def well_formed(token: str) -> bool:
    """True if ``token`` has the shape of a token (checked before any lookup)."""
    return _SHAPE.match(token) is not None
