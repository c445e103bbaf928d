"""The gateway's ``batch`` message, assembled from queued entries. Pure.

Entries are stored already canonical (``intake.entry_bytes``), so a batch is
the canonical envelope with the entries joined in: byte-identical to
``protocol.encode`` of the same message, at the cost of a string join.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge import protocol


def build(gateway_id: str, boot: str, seq: int, ts_ms: int, entries: Sequence[bytes]) -> bytes:
    """Canonical ``batch`` payload (keys sorted: boot, gw, kind, msgs, seq, ts, v)."""
    return b"".join(
        (
            b'{"boot":"',
            boot.encode(),
            b'","gw":"',
            gateway_id.encode(),
            b'","kind":"batch","msgs":[',
            b",".join(entries),
            b'],"seq":',
            str(seq).encode(),
            b',"ts":',
            str(ts_ms).encode(),
            b',"v":1}',
        )
    )


def envelope_overhead(gateway_id: str, boot: str) -> int:
    """Bytes of a batch besides its entries and commas, for the largest seq and ts."""
    return len(build(gateway_id, boot, protocol.SEQ_MAX, protocol.TS_MAX, []))


def batch_size(overhead: int, entry_sizes_sum: int, count: int) -> int:
    """Size of a batch of ``count`` entries whose lengths sum to ``entry_sizes_sum``."""
    return overhead + entry_sizes_sum + max(0, count - 1)
